#pragma once
// The metrics listener of SPEC §6: GET /metrics (Prometheus text format 0.0.4), /healthz
// and /readyz over plain HTTP/1.1 on the engine's io_context. Beast stays in the .cpp.
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

namespace boost::asio {
class io_context;
}

namespace cascade {

// What one scrape shows: counters and gauges only, no per-key or per-account labels.
struct MetricsSnapshot {
  std::uint64_t delivered = 0;
  std::uint64_t failed = 0;
  std::uint64_t rejected = 0;
  std::uint64_t duplicates = 0;
  std::uint64_t reclaimed = 0;
  std::uint64_t retried = 0;
  std::uint64_t auth_cache_hits = 0;
  std::uint64_t auth_cache_misses = 0;
  std::uint64_t auth_invalidations = 0;
  std::size_t in_flight = 0;
  std::size_t concurrency = 0;
  bool redis_ready = false;
  bool auth_cache_live = false;
  bool stopping = false;
};

// The exposition text of `s` (every family with # HELP and # TYPE).
std::string render_metrics(const MetricsSnapshot& s);

// "HOST:PORT" or "[V6]:PORT" (port 0: any free port). Throws std::invalid_argument with
// the reason when it is not one.
struct ListenAddress {
  std::string host;
  std::uint16_t port = 0;
};
ListenAddress parse_listen_address(std::string_view text);

class MetricsServer {
 public:
  using Source = std::function<MetricsSnapshot()>;
  MetricsServer(boost::asio::io_context& io, Source source);
  ~MetricsServer();
  MetricsServer(const MetricsServer&) = delete;
  MetricsServer& operator=(const MetricsServer&) = delete;

  // Binds and starts accepting. Throws std::runtime_error (bad address, port in use).
  void listen(std::string_view address);
  // The bound port (the actual one when 0 was asked), 0 before listen().
  std::uint16_t port() const;
  // Closes the acceptor and every open connection.
  void close();

 private:
  struct State;
  std::shared_ptr<State> state_;
};

}  // namespace cascade
