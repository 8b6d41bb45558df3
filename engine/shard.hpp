#pragma once
// One event loop's worth of engine (internal): its Redis connections, verifier and cache,
// HTTP/SMTP pools, pacer, writer and its share of --concurrency. `Engine` runs one shard
// per thread; nothing on the hot path is shared between shards.
//
// The path of one entry, file by file:
//   consumer.cpp   read (back-pressure, own pending, reclaim, heartbeat, retry mover)
//   runner.cpp     claim a resume, recover, admit, cascade -> a JobEnd value
//   admission.cpp  verdicts 1–9 and the idempotency key
//   cascade.cpp    tiers in order, each tier's channels in parallel
//   writer.cpp     every end-of-job write, batched across jobs
#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <unordered_set>

#include "auth/store.hpp"
#include "auth/verifier.hpp"
#include "channels/channel.hpp"
#include "channels/http_client.hpp"
#include "engine/config.hpp"
#include "engine/keyspace.hpp"
#include "engine/pacer.hpp"
#include "engine/usage.hpp"
#include "engine/writer.hpp"
#include "redis/connection.hpp"

namespace cascade {

// Counters a shard updates on its own thread and anyone may read (metrics, stats()).
struct ShardCounters {
  std::atomic<std::uint64_t> jobs{0}, delivered{0}, failed{0}, rejected{0}, duplicates{0},
      retried{0}, reclaimed{0};
  std::atomic<std::uint64_t> auth_cache_hits{0}, auth_cache_misses{0}, auth_invalidations{0};
  std::atomic<std::size_t> in_flight{0};
  std::atomic<bool> redis_ready{false};
  std::atomic<bool> auth_cache_live{false};
};

struct Shard : std::enable_shared_from_this<Shard> {
  // `config` is this shard's: its share of the concurrency, its consumer name.
  Shard(boost::asio::io_context& io, EngineConfig config, const ChannelRegistry& registry);

  void start();
  // Stops reading, lets in-flight jobs finish (up to the drain timeout), closes the
  // connections, then calls `done` on this shard's io_context.
  void stop(std::function<void()> done);

  boost::asio::io_context& io;
  EngineConfig config;
  keyspace::Keys keys;
  redis::Config redis_cfg;
  redis::Connection commands;  // multiplexed: results, acks, auth look-ups
  redis::Connection reader;    // dedicated: blocking XREADGROUP
  redis::Connection events;    // dedicated: SUBSCRIBE <prefix>:auth-events
  auth::Store store;
  auth::Verifier verifier;
  UsageCounters usage;
  HttpClient http;
  Pacer pacer;
  ChannelContext context;
  std::map<std::string, std::unique_ptr<Channel>, std::less<>> channels;
  Writer writer;

  boost::asio::steady_timer slot_signal;     // cancelled when a job finishes
  boost::asio::steady_timer drained_signal;  // cancelled when the last job finishes while stopping
  bool stopping = false;
  bool started = false;
  ShardCounters counters;
  std::size_t in_flight = 0;
  std::mt19937_64 rng;
  std::unordered_set<std::string> running;  // entry ids of the jobs in flight here

  // consumer.cpp
  static boost::asio::awaitable<void> consume(std::shared_ptr<Shard> self);
  static boost::asio::awaitable<void> reclaim_loop(std::shared_ptr<Shard> self);
  static boost::asio::awaitable<void> heartbeat(std::shared_ptr<Shard> self);
  static boost::asio::awaitable<void> retry_mover(std::shared_ptr<Shard> self);
  boost::asio::awaitable<void> ensure_group();
  // reply of XREADGROUP / entries of XAUTOCLAIM: starts a job per entry; returns the last
  // entry id seen.
  // The entries' fields are moved out of the reply.
  std::string dispatch(redis::Reply& reply, bool recovered);
  std::string dispatch_entries(redis::Reply& entries, bool recovered);
  void job_finished(const std::string& entry);

  // runner.cpp: one entry from pick-up to its written end.
  static boost::asio::awaitable<void> run_job(std::shared_ptr<Shard> self, std::string entry,
                                              EntryFields raw, bool recovered);

  // engine.cpp
  static boost::asio::awaitable<void> watch_auth_events(std::shared_ptr<Shard> self);
  static boost::asio::awaitable<void> flush_usage(std::shared_ptr<Shard> self);
  static boost::asio::awaitable<void> drain(std::shared_ptr<Shard> self,
                                            std::function<void()> done);
  static boost::asio::awaitable<void> pause(boost::asio::io_context& io,
                                            std::chrono::milliseconds d);
  // Backoff with jitter: a uniform draw in [d/2, d].
  std::chrono::milliseconds jittered(std::chrono::milliseconds d);
  void publish_auth_counters();
};

}  // namespace cascade
