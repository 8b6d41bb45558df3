#pragma once
// One configuration struct for the engine; flags and env (cascaded) only fill it.
#include <chrono>
#include <cstddef>
#include <map>
#include <string>
#include <vector>

#include "engine/job.hpp"

namespace cascade {

struct RetryPolicy {
  int max_retries = 2;                  // retries of one channel inside its tier
  std::chrono::milliseconds base{200};  // first backoff (full jitter)
  std::chrono::milliseconds cap{5000};  // largest single backoff
};

struct EngineConfig {
  std::string redis_url = "redis://127.0.0.1:6379/0";
  std::string prefix = "cascade";
  std::size_t concurrency = 1024;         // jobs in flight at most (all threads together)
  // Event loops (SPEC §6 --threads): the caller's io_context runs the first; the engine
  // owns one more io_context and thread per extra loop. Each loop has its own Redis
  // connections, verifier cache, HTTP/SMTP pools and an equal share of `concurrency`.
  std::size_t threads = 1;
  std::string group = "cascade";          // consumer group on <prefix>:jobs
  std::string consumer;                   // default: hostname-pid
  std::chrono::milliseconds block{1000};  // XREADGROUP BLOCK
  std::chrono::seconds result_ttl{24 * 3600};
  std::size_t results_maxlen = 1'000'000;
  // <prefix>:dead is capped too (MAXLEN ~): a flood of unreadable entries cannot fill
  // Redis. Each copied field value is cut at dead_field_max_bytes (marked as cut).
  std::size_t dead_maxlen = 100'000;
  std::size_t dead_field_max_bytes = 8 * 1024;
  std::chrono::milliseconds attempt_timeout{10'000};  // one try on one channel
  std::chrono::milliseconds channel_timeout{30'000};  // all tries of one channel in a tier
  RetryPolicy retry;
  JobLimits limits;
  std::chrono::milliseconds drain_timeout{30'000};
  // How often per-key usage counts are written to Redis.
  std::chrono::milliseconds usage_flush_interval{1000};
  // Crash recovery: entries pending longer than this (a dead worker's) are XAUTOCLAIMed
  // and run again; it must exceed the longest possible job.
  std::chrono::milliseconds reclaim_idle{60'000};
  std::chrono::milliseconds reclaim_interval{0};  // 0: reclaim_idle / 2, at most 10 s
  // Job-level retries (SPEC §3): the delay before job attempt 2, 3, ...; then dead.
  std::vector<std::chrono::milliseconds> job_retry_delays{
      std::chrono::seconds(5), std::chrono::seconds(30), std::chrono::minutes(2),
      std::chrono::minutes(10), std::chrono::hours(1)};
  std::chrono::milliseconds retry_poll{250};        // how often due retries are moved back
  std::chrono::seconds progress_ttl{48 * 3600};     // <prefix>:progress:<id>
  std::chrono::seconds idempotency_ttl{24 * 3600};  // <prefix>:idem:<account>:<sha256>
  // Global provider base overrides by channel type ("telegram" -> "http://127.0.0.1:9000").
  std::map<std::string, std::string, std::less<>> api_base_overrides;
  // Extra trust anchors (PEM file) for the HTTP channels' TLS, besides the system CA store
  // (private CAs, TLS proxies, tests). Empty: the system store only. SMTP keys have their
  // own smtp_ca_file setting.
  std::string ca_file;
  // Connections per provider origin (HttpClientConfig::max_connections_per_host). 0: four
  // times the concurrency. HTTP/1.1 carries one request per connection at a time, so
  // fewer connections than requests in flight would make the pool the bottleneck (64
  // connections to a provider answering in 3 s is 21 sends/s, whatever the concurrency).
  // A job names each channel type once, and one tier may run all four built-in types in
  // parallel, possibly to one origin (a self-hosted gateway, the mock provider): so at
  // most 4 requests per job to an origin, and the default never binds before the engine.
  std::size_t http_max_per_host = 0;
  // The metrics listener (SPEC §6): "HOST:PORT" serving /metrics, /healthz and /readyz over
  // plain HTTP; port 0 picks a free one (Engine::metrics_port()). Empty: off.
  std::string metrics_listen;
  // The master key file (auth/secrets.hpp) that opens the channel keys' sealed provider
  // credentials. Empty: none, and a channel key with a sealed credential cannot send
  // (cascaded refuses to start without one).
  std::string master_key_file;
};

}  // namespace cascade
