#pragma once
// The public embedding API: a backend builds an EngineConfig, hands the engine its
// io_context, optionally registers extra channel types, and starts/stops it.
// `cascaded` is a thin main over this class.
#include <cstdint>
#include <functional>
#include <memory>

#include "channels/channel.hpp"
#include "engine/config.hpp"

namespace boost::asio {
class io_context;
}

namespace cascade {

struct EngineStats {
  std::uint64_t jobs = 0;  // finished jobs (results written)
  std::uint64_t delivered = 0;
  std::uint64_t failed = 0;
  std::uint64_t rejected = 0;
  std::uint64_t duplicates = 0;  // idempotency-key duplicates (409)
  std::uint64_t retried = 0;     // job attempts that ended in a later retry
  std::uint64_t reclaimed = 0;   // entries claimed from dead workers (XAUTOCLAIM)
  std::size_t in_flight = 0;
  bool redis_ready = false;  // the consumer's last read of <prefix>:jobs succeeded (/readyz)
};

class Engine {
 public:
  // The engine runs on `io`; the caller runs io (one thread: the engine is not
  // thread-safe, like everything on that io_context). With config.threads = N > 1 the
  // engine also owns N-1 event loops on threads of its own; each registered channel
  // factory is then called once per loop (a Channel belongs to one loop).
  Engine(boost::asio::io_context& io, EngineConfig config,
         ChannelRegistry registry = ChannelRegistry::with_builtins());
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  // Creates the consumer group if needed and starts consuming. Returns at once.
  void start();
  // Stops reading, lets in-flight jobs finish (up to config.drain_timeout), then calls
  // `done` on the io_context once every loop has drained and closed its connections. Jobs
  // still unfinished stay pending in Redis. stats() may be called from any thread.
  void stop(std::function<void()> done = {});

  EngineStats stats() const;
  const EngineConfig& config() const;
  // The metrics listener's bound port after start() (0 when config.metrics_listen is empty).
  std::uint16_t metrics_port() const;

 private:
  struct Impl;
  std::shared_ptr<Impl> impl_;
};

}  // namespace cascade
