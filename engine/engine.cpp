#include "engine/engine.hpp"

#include <spdlog/spdlog.h>
#include <unistd.h>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <algorithm>
#include <atomic>
#include <charconv>
#include <map>
#include <random>
#include <unordered_set>

#include "auth/key.hpp"
#include "auth/store.hpp"
#include "auth/verifier.hpp"
#include "channels/http_client.hpp"
#include "engine/cascade.hpp"
#include "engine/metrics_server.hpp"
#include "engine/result.hpp"
#include "engine/usage.hpp"
#include "redis/connection.hpp"
#include "util/time.hpp"

namespace asio = boost::asio;

namespace cascade {
namespace {

using Fields = std::vector<std::pair<std::string, std::string>>;

const std::string* find_field(const Fields& fields, std::string_view name) {
  for (const auto& [k, v] : fields)
    if (k == name) return &v;
  return nullptr;
}

std::optional<std::string_view> optional_field(const Fields& fields, std::string_view name) {
  if (auto* v = find_field(fields, name)) return std::string_view(*v);
  return std::nullopt;
}

std::string default_consumer() {
  char host[256] = {};
  gethostname(host, sizeof host - 1);
  // Several engines in one process (embedding, tests) must not share a consumer name: the
  // pending scan of one would run the other's in-flight entries.
  static std::atomic<int> engines{0};
  auto n = ++engines;
  return std::string(host) + "-" + std::to_string(getpid()) +
         (n > 1 ? "-" + std::to_string(n) : std::string());
}

// Internal entry fields, set on entries that the retry mover or `cascadectl dlq retry`
// put back on the stream: results, progress and retries stay keyed by the original id.
constexpr std::string_view kJobIdField = "cascade-job-id";
constexpr std::string_view kJobAttemptField = "cascade-job-attempt";
constexpr std::string_view kPriorAttemptsField = "cascade-prior-attempts";

// KEYS[1] = <prefix>:retry (zset: job id by due time, unix ms), KEYS[2] = <prefix>:jobs;
// ARGV[1] = now (ms), ARGV[2] = at most this many, ARGV[3] = "<prefix>:retry:" (the hash of
// the job's entry fields). Moves due jobs back onto the stream; returns how many.
constexpr const char* kMoveDueScript = R"lua(
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
local moved = 0
for _, id in ipairs(due) do
  redis.call('ZREM', KEYS[1], id)
  local fields = redis.call('HGETALL', ARGV[3] .. id)
  if #fields > 0 then
    redis.call('XADD', KEYS[2], '*', unpack(fields))
    redis.call('DEL', ARGV[3] .. id)
    moved = moved + 1
  end
end
return moved
)lua";

// One run of one job: what the engine knows about it beyond its entry's fields.
struct JobRun {
  std::string entry;       // stream entry id (acked and deleted when done)
  std::string id;          // job id: the original entry id, across retries
  int attempt = 1;         // job_attempt
  bool recovered = false;  // reclaimed or own pending: may have run before
  bool resumed = false;    // put back by the retry mover or `dlq retry`
  std::map<std::string, std::string, std::less<>> progress;  // delivered: channel -> provider id
  std::int64_t next_due_ms = 0;
  std::string prior_attempts;  // earlier job attempts' attempts (JSON objects, ','-joined) // state
                               // retrying: unix ms
  std::string dead_reason;
};

// SPEC §1: 1–255 printable ASCII characters.
bool valid_idempotency_key(std::string_view k) {
  if (k.empty() || k.size() > 255) return false;
  for (unsigned char c : k)
    if (c < 0x20 || c > 0x7e) return false;
  return true;
}

redis::Config redis_config(const std::string& url) {
  std::string error;
  auto c = redis::parse_url(url, &error);
  if (!c) throw std::invalid_argument("bad redis URL: " + error);
  return *c;
}

HttpClientConfig http_config(const EngineConfig& config) {
  HttpClientConfig c;
  c.ca_file = config.ca_file;
  c.max_connections_per_host =
      config.http_max_per_host ? config.http_max_per_host : 4 * config.concurrency;
  c.max_idle_per_host = c.max_connections_per_host;
  return c;
}

}  // namespace

struct Engine::Impl : std::enable_shared_from_this<Impl> {
  Impl(asio::io_context& io, EngineConfig c, ChannelRegistry reg)
      : io(io),
        config(std::move(c)),
        redis_cfg(redis_config(config.redis_url)),
        commands(io.get_executor(), redis_cfg),
        reader(io.get_executor(), redis_cfg),
        events(io.get_executor(), redis_cfg),
        store(commands, config.prefix),
        verifier(store, commands),
        http(io.get_executor(), http_config(config)),
        pacer(commands, config.prefix),
        registry(std::move(reg)),
        slot_signal(io),
        drained_signal(io),
        rng(std::random_device{}()) {
    if (config.consumer.empty()) config.consumer = default_consumer();
    if (config.concurrency == 0) throw std::invalid_argument("concurrency must be at least 1");
    jobs_key = config.prefix + ":jobs";
    context.http = &http;
    context.api_base_overrides = config.api_base_overrides;
    for (const auto& [type, factory] : registry.factories())
      channels[type] = factory(context);
  }

  asio::io_context& io;
  EngineConfig config;
  redis::Config redis_cfg;
  redis::Connection commands;  // multiplexed: results, acks, auth look-ups
  redis::Connection reader;    // dedicated: blocking XREADGROUP
  redis::Connection events;    // dedicated: SUBSCRIBE <prefix>:auth-events
  auth::Store store;
  auth::Verifier verifier;
  UsageCounters usage;
  HttpClient http;
  Pacer pacer;  // per-channel-key throughput limits, shared through Redis
  ChannelRegistry registry;
  ChannelContext context;
  std::map<std::string, std::unique_ptr<Channel>, std::less<>> channels;
  std::string jobs_key;

  asio::steady_timer slot_signal;     // cancelled when a job finishes
  asio::steady_timer drained_signal;  // cancelled when the last job finishes while stopping
  bool stopping = false;
  bool started = false;
  EngineStats stats;
  std::mt19937_64 rng;
  std::unordered_set<std::string> running;  // entry ids of the jobs in flight here
  std::unique_ptr<MetricsServer> metrics;   // when config.metrics_listen is set

  MetricsSnapshot snapshot() const {
    MetricsSnapshot s;
    s.delivered = stats.delivered;
    s.failed = stats.failed;
    s.rejected = stats.rejected;
    s.duplicates = stats.duplicates;
    s.reclaimed = stats.reclaimed;
    s.retried = stats.retried;
    s.auth_cache_hits = verifier.stats().cache_hits;
    s.auth_cache_misses = verifier.stats().cache_misses;
    s.auth_invalidations = verifier.stats().invalidations;
    s.in_flight = stats.in_flight;
    s.concurrency = config.concurrency;
    s.redis_ready = stats.redis_ready;
    s.auth_cache_live = verifier.cache_live();
    s.stopping = stopping;
    return s;
  }

  void start() {
    if (started) return;
    if (!config.metrics_listen.empty() && !metrics) {
      // First: a bad address or a port in use fails start() before anything runs.
      std::weak_ptr<Impl> weak = weak_from_this();
      auto server = std::make_unique<MetricsServer>(io, [weak] {
        MetricsSnapshot gone;
        gone.stopping = true;
        auto self = weak.lock();
        return self ? self->snapshot() : gone;
      });
      server->listen(config.metrics_listen);
      metrics = std::move(server);
    }
    started = true;
    asio::co_spawn(io, consume(shared_from_this()), [](std::exception_ptr e) {
      if (!e) return;
      try {
        std::rethrow_exception(e);
      } catch (const std::exception& ex) {
        spdlog::critical("consumer stopped: {}", ex.what());
      }
    });
    asio::co_spawn(io, watch_auth_events(shared_from_this()), log_exception("auth events"));
    asio::co_spawn(io, flush_usage(shared_from_this()), log_exception("usage flush"));
    asio::co_spawn(io, reclaim_loop(shared_from_this()), log_exception("reclaimer"));
    asio::co_spawn(io, retry_mover(shared_from_this()), log_exception("retry mover"));
    asio::co_spawn(io, heartbeat(shared_from_this()), log_exception("heartbeat"));
  }

  static std::function<void(std::exception_ptr)> log_exception(std::string what) {
    return [what](std::exception_ptr e) {
      if (!e) return;
      try {
        std::rethrow_exception(e);
      } catch (const std::exception& ex) {
        spdlog::error("{} stopped: {}", what, ex.what());
      }
    };
  }

  // Keeps the verifier's cache honest: it is used only while this subscription is live;
  // a lost connection flushes it at once (disconnect handler), and a PING every second
  // notices a silent one. Resubscribes after every reconnect.
  static asio::awaitable<void> watch_auth_events(std::shared_ptr<Impl> self) {
    std::weak_ptr<Impl> weak = self;
    self->events.set_push_handler([weak](const redis::Reply& r) {
      if (auto s = weak.lock()) s->verifier.invalidate(r.elements.back().str);
    });
    self->events.set_disconnect_handler([weak] {
      if (auto s = weak.lock()) s->verifier.set_cache_live(false);
    });
    auto backoff = std::chrono::milliseconds(100);
    while (!self->stopping) {
      bool failed = false;
      try {
        auto r = co_await self->events.exec(redis::cmd("SUBSCRIBE", self->store.events_channel()));
        if (r.is_error()) throw redis::Error("SUBSCRIBE failed: " + r.str);
        self->verifier.set_cache_live(true);
        backoff = std::chrono::milliseconds(100);
        while (!self->stopping) {
          co_await pause(self->io, std::chrono::milliseconds(1000));
          if (self->stopping) break;
          co_await self->events.exec(redis::cmd("PING"), std::chrono::milliseconds(2000));
        }
      } catch (const redis::Error& e) {
        self->verifier.set_cache_live(false);
        if (!self->stopping) spdlog::warn("auth events subscription lost: {}", e.what());
        failed = true;
      }
      if (failed && !self->stopping) {
        co_await pause(self->io, backoff);
        backoff = std::min(backoff * 2, std::chrono::milliseconds(5000));
      }
    }
  }

  static asio::awaitable<void> flush_usage(std::shared_ptr<Impl> self) {
    while (!self->stopping) {
      co_await pause(self->io, self->config.usage_flush_interval);
      co_await self->usage.flush(self->commands, self->config.prefix);
    }
  }

  asio::awaitable<void> ensure_group() {
    auto r = co_await commands.exec(
        redis::cmd("XGROUP", "CREATE", jobs_key, config.group, "0", "MKSTREAM"));
    if (r.is_error() && r.str.rfind("BUSYGROUP", 0) != 0)
      throw redis::Error("XGROUP CREATE failed: " + r.str);
  }

  static asio::awaitable<void> pause(asio::io_context& io, std::chrono::milliseconds d) {
    asio::steady_timer t(io);
    t.expires_after(d);
    co_await t.async_wait(asio::as_tuple(asio::use_awaitable));
  }

  // Backoff with jitter: a uniform draw in [d/2, d].
  std::chrono::milliseconds jittered(std::chrono::milliseconds d) {
    std::uniform_int_distribution<std::int64_t> pick(d.count() / 2, d.count());
    return std::chrono::milliseconds(pick(rng));
  }

  static asio::awaitable<void> consume(std::shared_ptr<Impl> self) {
    auto backoff = std::chrono::milliseconds(100);
    bool group_ready = false;
    bool failed = false;
    // This consumer's own pending entries run first: at start (a restarted worker with a
    // fixed --consumer name), and after every Redis failure (a read whose reply was lost
    // leaves entries pending here). Entries running in this process are skipped.
    bool scan_pending = true;
    std::string pending_cursor = "0";
    while (!self->stopping) {
      try {
        if (!group_ready) {
          co_await self->ensure_group();
          group_ready = true;
          spdlog::info("consuming {} as {}/{} on redis {}", self->jobs_key, self->config.group,
                       self->config.consumer, self->redis_cfg.describe());
        }
        // Back-pressure: ask for no more entries than there are free slots.
        while (self->stats.in_flight >= self->config.concurrency && !self->stopping) {
          self->slot_signal.expires_at(asio::steady_timer::time_point::max());
          co_await self->slot_signal.async_wait(asio::as_tuple(asio::use_awaitable));
        }
        if (self->stopping) break;
        auto free_slots = self->config.concurrency - self->stats.in_flight;
        // Built in a named variable: g++ 12 destroys a conditional's temporary twice when
        // it is an argument of a co_await'ed call.
        redis::Command read =
            redis::cmd("XREADGROUP", "GROUP", self->config.group, self->config.consumer, "COUNT",
                       std::to_string(free_slots));
        if (!scan_pending) {
          read.push_back("BLOCK");
          read.push_back(std::to_string(self->config.block.count()));
        }
        read.push_back("STREAMS");
        read.push_back(self->jobs_key);
        read.push_back(scan_pending ? pending_cursor : std::string(">"));
        auto reply = co_await self->reader.exec(
            std::move(read), self->config.block + self->redis_cfg.request_timeout);
        if (reply.is_error()) {
          // NOGROUP after a FLUSHALL or a deleted stream: create it again.
          if (reply.str.rfind("NOGROUP", 0) == 0) {
            group_ready = false;
            continue;
          }
          throw redis::Error("XREADGROUP failed: " + reply.str);
        }
        backoff = std::chrono::milliseconds(100);
        // Ready once a read succeeded (not while a retry is under way: /readyz).
        self->stats.redis_ready = true;
        auto last = self->dispatch(reply, scan_pending);
        if (scan_pending) {
          if (last.empty()) {
            scan_pending = false;
            pending_cursor = "0";
          } else {
            pending_cursor = last;
          }
        }
      } catch (const redis::Error& e) {
        if (self->stopping) break;
        self->stats.redis_ready = false;
        spdlog::warn("redis unavailable ({}); retrying in ~{} ms", e.what(), backoff.count());
        failed = true;
      }
      if (failed) {
        // co_await is not allowed inside a catch handler: back off here.
        failed = false;
        scan_pending = true;
        pending_cursor = "0";
        co_await pause(self->io, self->jittered(backoff));
        backoff = std::min(backoff * 2, std::chrono::milliseconds(5000));
      }
    }
  }

  // Crash recovery: entries pending longer than reclaim_idle (their worker died) are
  // claimed with XAUTOCLAIM and run here, within the free slots.
  static asio::awaitable<void> reclaim_loop(std::shared_ptr<Impl> self) {
    auto every = self->config.reclaim_interval;
    if (every.count() <= 0)
      every = std::clamp(std::chrono::milliseconds(self->config.reclaim_idle / 2),
                         std::chrono::milliseconds(50), std::chrono::milliseconds(10'000));
    std::string cursor = "0-0";
    while (!self->stopping) {
      co_await pause(self->io, self->jittered(every));
      bool failed = false;
      try {
        while (!self->stopping && self->stats.in_flight < self->config.concurrency) {
          auto free_slots = self->config.concurrency - self->stats.in_flight;
          auto r = co_await self->commands.exec(
              redis::cmd("XAUTOCLAIM", self->jobs_key, self->config.group, self->config.consumer,
                         std::to_string(self->config.reclaim_idle.count()), cursor, "COUNT",
                         std::to_string(free_slots)));
          if (r.is_error() || !r.is_array() || r.elements.size() < 2) break;  // NOGROUP: consumer
          cursor = r.elements[0].str;
          auto before = self->stats.in_flight;
          self->dispatch_entries(r.elements[1], true);
          if (self->stats.in_flight > before) {
            spdlog::info("reclaimed {} jobs left pending by other workers",
                         self->stats.in_flight - before);
            self->stats.reclaimed += self->stats.in_flight - before;
          }
          if (cursor == "0-0" || cursor.empty()) {
            cursor = "0-0";
            break;
          }
        }
      } catch (const redis::Error&) {
        failed = true;  // the consumer logs Redis outages
      }
      if (failed) cursor = "0-0";
    }
  }

  // Jobs may legitimately run longer than reclaim_idle (pacing waits, job retries inside a
  // slow provider): every reclaim_idle / 4 the worker re-claims its own running entries
  // (XCLAIM ... JUSTID, which resets their idle time), so only a dead worker's entries ever
  // reach reclaim_idle. MIN-IDLE of half the period keeps it from taking back an entry
  // another worker has just claimed.
  static asio::awaitable<void> heartbeat(std::shared_ptr<Impl> self) {
    auto every = std::max(std::chrono::milliseconds(self->config.reclaim_idle / 4),
                          std::chrono::milliseconds(10));
    while (!self->stopping) {
      co_await pause(self->io, every);
      if (self->stopping || self->running.empty()) continue;
      auto c = redis::cmd("XCLAIM", self->jobs_key, self->config.group, self->config.consumer,
                          std::to_string(every.count() / 2));
      c.insert(c.end(), self->running.begin(), self->running.end());
      c.push_back("JUSTID");
      try {
        co_await self->commands.exec(std::move(c));
      } catch (const redis::Error&) {
        // the consumer logs Redis outages
      }
    }
  }

  // Moves due job retries from <prefix>:retry back onto the jobs stream. Atomic in Redis
  // (one script), so two workers never both move one job.
  static asio::awaitable<void> retry_mover(std::shared_ptr<Impl> self) {
    while (!self->stopping) {
      co_await pause(self->io, self->config.retry_poll);
      if (self->stopping) break;
      try {
        for (;;) {
          auto r = co_await self->commands.exec(redis::cmd(
              "EVAL", kMoveDueScript, "2", self->config.prefix + ":retry", self->jobs_key,
              std::to_string(now_unix_ms()), "100", self->config.prefix + ":retry:"));
          if (r.is_error()) {
            spdlog::warn("moving due retries failed: {}", r.str);
            break;
          }
          if (r.integer > 0) spdlog::debug("moved {} due job retries", r.integer);
          if (r.integer < 100) break;
        }
      } catch (const redis::Error&) {
        // the consumer logs Redis outages
      }
    }
  }

  // reply: [[stream, [[id, [k, v, ...]], ...]]]. Returns the last entry id seen.
  std::string dispatch(const redis::Reply& reply, bool recovered) {
    std::string last;
    if (!reply.is_array()) return last;  // nil: BLOCK timed out
    for (const auto& stream : reply.elements) {
      if (stream.elements.size() < 2) continue;
      auto l = dispatch_entries(stream.elements[1], recovered);
      if (!l.empty()) last = std::move(l);
    }
    return last;
  }

  static asio::awaitable<void> ack_only(std::shared_ptr<Impl> self, redis::Command c) {
    co_await self->commands.exec(std::move(c));
  }

  // entries: [[id, [k, v, ...] | nil], ...]. Returns the last entry id seen.
  std::string dispatch_entries(const redis::Reply& entries, bool recovered) {
    std::string last;
    std::vector<std::string> gone;
    for (const auto& entry : entries.elements) {
      if (entry.elements.empty()) continue;
      const auto& id = entry.elements[0].str;
      last = id;
      if (entry.elements.size() < 2 || !entry.elements[1].is_array()) {
        gone.push_back(id);  // pending, but deleted from the stream: nothing to run
        continue;
      }
      if (running.count(id)) continue;  // already running here (a long job)
      Fields fields;
      const auto& kv = entry.elements[1].elements;
      for (std::size_t i = 0; i + 1 < kv.size(); i += 2)
        fields.emplace_back(kv[i].str, kv[i + 1].str);
      running.insert(id);
      ++stats.in_flight;
      asio::co_spawn(io, run_job(shared_from_this(), id, std::move(fields), recovered),
                     [self = shared_from_this(), id](std::exception_ptr e) {
                       if (e) {
                         try {
                           std::rethrow_exception(e);
                         } catch (const std::exception& ex) {
                           spdlog::error("job coroutine failed: {}", ex.what());
                         }
                       }
                       self->job_finished(id);
                     });
    }
    if (!gone.empty()) {
      auto ack = redis::cmd("XACK", jobs_key, config.group);
      ack.insert(ack.end(), gone.begin(), gone.end());
      asio::co_spawn(io, ack_only(shared_from_this(), std::move(ack)), [](std::exception_ptr) {});
    }
    return last;
  }

  void job_finished(const std::string& entry) {
    running.erase(entry);
    --stats.in_flight;
    slot_signal.cancel();
    if (stopping && stats.in_flight == 0) drained_signal.cancel();
  }

  static asio::awaitable<void> run_job(std::shared_ptr<Impl> self, std::string entry, Fields raw,
                                       bool recovered) {
    JobRun run;
    run.entry = entry;
    run.id = entry;
    run.recovered = recovered;
    Fields fields;
    for (auto& [k, v] : raw) {
      if (k == kJobIdField) {
        if (!v.empty()) {
          run.id = v;
          run.resumed = true;
        }
      } else if (k == kPriorAttemptsField) {
        run.prior_attempts = std::move(v);
      } else if (k == kJobAttemptField) {
        int n = 0;
        auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
        if (ec == std::errc() && n >= 1) run.attempt = n;
      } else {
        fields.emplace_back(std::move(k), std::move(v));
      }
    }
    bool dead = false;
    Result result;
    auto backoff = std::chrono::milliseconds(100);
    for (;;) {
      bool failed = false;
      bool done = false;
      try {
        if (run.recovered || run.resumed) done = co_await self->recover(run);
        if (!done) result = co_await self->handle(run.id, fields, dead, run);
      } catch (const redis::Error& e) {
        // Only before anything was sent (deliveries are recorded without throwing): safe
        // to run again once Redis is back.
        spdlog::warn("job {}: redis unavailable before sending ({})", run.id, e.what());
        failed = true;
      }
      if (done) co_return;
      if (!failed) break;
      if (self->stopping) {
        spdlog::warn("job {} left pending for reclaim", run.id);
        co_return;
      }
      co_await pause(self->io, self->jittered(backoff));
      backoff = std::min(backoff * 2, std::chrono::milliseconds(5000));
    }
    result.id = run.id;
    result.job_attempt = run.attempt;
    if (run.attempt > 1 || result.state == "retrying")
      for (auto& a : result.attempts)
        a.job_attempt = run.attempt;
    if (run.resumed) result.prior_attempts_json = run.prior_attempts;
    result.finished_at = iso8601_utc(std::chrono::system_clock::now());
    // The result is written until Redis takes it (or the drain timeout ends the process):
    // the cascade is never run again for it and the result is not lost.
    backoff = std::chrono::milliseconds(100);
    for (bool again = false;; again = true) {
      bool failed = false;
      try {
        co_await self->finish(run, fields, result, dead, again);
      } catch (const redis::Error& e) {
        // Once per job at warn: an outage fails every in-flight job's write many times.
        if (!again)
          spdlog::warn("job {}: writing the result failed ({}); retrying until it succeeds", run.id,
                       e.what());
        failed = true;
      }
      if (!failed) break;
      co_await pause(self->io, self->jittered(backoff));
      backoff = std::min(backoff * 2, std::chrono::milliseconds(5000));
    }
    if (result.state == "retrying") {
      ++self->stats.retried;
      spdlog::debug("job {} attempt {} failed transiently; next at {}", run.id, run.attempt,
                    result.next_attempt_at);
      co_return;
    }
    ++self->stats.jobs;
    if (result.state == "delivered")
      ++self->stats.delivered;
    else if (result.state == "failed")
      ++self->stats.failed;
    else if (result.state == "duplicate")
      ++self->stats.duplicates;
    else
      ++self->stats.rejected;
    spdlog::debug("job {} {} {}", run.id, result.status, result.state);
  }

  // A job that may have run before (reclaimed, own pending, or re-added by a retry): true
  // when it already has its final result (then it is only acked and deleted); otherwise
  // loads its delivery progress into `run`.
  asio::awaitable<bool> recover(JobRun& run) {
    auto replies = co_await commands.exec_batch(
        redis::batch(redis::cmd("GET", config.prefix + ":result:" + run.id),
                     redis::cmd("HGETALL", config.prefix + ":progress:" + run.id)));
    const auto& prev = replies.at(0);
    bool has_result = !prev.is_nil() && !prev.is_error();
    bool final_result = has_result && prev.str.find("\"state\":\"retrying\"") == std::string::npos;
    // `cascade-job-id` is honoured only for a job waiting for its retry (the mover and
    // `dlq retry` leave a provisional "retrying" result), or for a reclaimed entry whose
    // job finished just before a crash: a producer cannot write over another job's result.
    if (run.resumed && !(has_result && !final_result) && !(run.recovered && final_result)) {
      spdlog::warn("entry {} names job {}, which is not waiting for a retry: run as job {}",
                   run.entry, run.id, run.entry);
      run.id = run.entry;
      run.attempt = 1;
      run.resumed = false;
      run.prior_attempts.clear();
      if (!run.recovered) co_return false;
      co_return co_await recover(run);
    }
    if (final_result) {
      auto acks = co_await commands.exec_batch(
          redis::batch(redis::cmd("XACK", jobs_key, config.group, run.entry),
                       redis::cmd("XDEL", jobs_key, run.entry)));
      for (const auto& r : acks)
        if (r.is_error()) throw redis::Error("ack failed: " + r.str);
      spdlog::info("job {} already has its result: acked", run.id);
      co_return true;
    }
    const auto& p = replies.at(1);
    for (std::size_t i = 0; i + 1 < p.elements.size(); i += 2)
      run.progress[p.elements[i].str] = p.elements[i + 1].str;
    co_return false;
  }

  // Per-job delivery progress, written right after a channel delivers (before the ack):
  // a re-run after a crash does not send that channel again.
  asio::awaitable<void> record_delivery(std::string id, std::string channel,
                                        std::string provider_id) {
    // If Redis is down the delivery goes unrecorded (logged): the job's result, written
    // until Redis takes it, still ends the job; only a crash before that would re-send.
    auto key = config.prefix + ":progress:" + id;
    try {
      co_await commands.exec_batch(
          redis::batch(redis::cmd("HSET", key, channel, provider_id),
                       redis::cmd("EXPIRE", key, std::to_string(config.progress_ttl.count()))));
    } catch (const redis::Error& e) {
      spdlog::warn("job {}: delivery on {} not recorded ({})", id, channel, e.what());
    }
  }

  asio::awaitable<Result> handle(const std::string& id, const Fields& fields, bool& dead,
                                 JobRun& run) {
    auto* body = find_field(fields, "body");
    if (!body) {
      dead = true;
      co_return Result::rejected(id, 400, "Invalid request: body is missing", "body");
    }
    auto who = co_await verifier.authenticate(optional_field(fields, "authorization"),
                                              optional_field(fields, "x-api-key"));
    if (auto* v = std::get_if<auth::Verdict>(&who)) {
      usage.add(v->key_id, UsageCounters::Kind::rejected);
      auto r = Result::rejected(id, v->status, v->error, v->field);
      r.retry_after = v->retry_after;
      r.account = v->account;
      co_return r;
    }
    auto& principal = std::get<auth::Principal>(who);
    auto parsed = parse_job(*body, config.limits);
    if (auto* err = std::get_if<JobError>(&parsed)) {
      // A body that cannot be read at all (not a JSON object, or over the size limit)
      // also goes to the dead letters, where an operator can look at it.
      dead = err->unreadable || err->field.empty();
      usage.add(principal.key.id, UsageCounters::Kind::rejected);
      auto r = Result::rejected(id, 400, err->message(), err->field);
      r.account = principal.account.id;
      co_return r;
    }
    auto& job = std::get<Job>(parsed);
    auto idempotency_key = optional_field(fields, "idempotency-key");
    if (idempotency_key && !valid_idempotency_key(*idempotency_key)) {
      auto r = Result::rejected(
          id, 400, "Invalid request: idempotency-key must be 1 to 255 printable characters",
          "idempotency-key");
      r.account = principal.account.id;
      co_return r;
    }
    std::vector<auth::ChannelToken> tokens;
    for (const auto& use : job.channels)
      tokens.push_back({use.channel, use.token});
    auto granted = co_await verifier.authorize_channels(principal, tokens);
    if (auto* v = std::get_if<auth::Verdict>(&granted)) {
      usage.add(principal.key.id, UsageCounters::Kind::rejected);
      auto r = Result::rejected(id, v->status, v->error, v->field);
      r.account = principal.account.id;
      co_return r;
    }
    auto& keys = std::get<std::vector<auth::ChannelKey>>(granted);
    std::vector<ChannelPlan> plan(job.channels.size());
    for (std::size_t i = 0; i < job.channels.size(); ++i) {
      auto it = channels.find(keys[i].type);
      plan[i].channel = it == channels.end() ? nullptr : it->second.get();
      plan[i].settings = &keys[i].settings;
      plan[i].paused = keys[i].status != "active";
      plan[i].channel_key_id = keys[i].id;
      plan[i].pacer = &pacer;
      if (auto p = run.progress.find(job.channels[i].channel); p != run.progress.end()) {
        plan[i].already_delivered = true;
        plan[i].delivered_id = p->second;
      }
      plan[i].on_delivered = [this, id](const Attempt& a) {
        return record_delivery(id, a.channel, a.provider_id);
      };
    }
    // Idempotency (SPEC §1): the first job of the account with this key claims it for 24 h;
    // a later one (another id) is a duplicate and is not sent. A re-run of the claiming
    // job finds its own id and goes on.
    if (idempotency_key) {
      auto claim_key = config.prefix + ":idem:" + principal.account.id + ":" +
                       auth::to_hex(auth::sha256(*idempotency_key));
      auto claimed = co_await commands.exec(redis::cmd(
          "SET", claim_key, id, "NX", "EX", std::to_string(config.idempotency_ttl.count())));
      if (claimed.is_error()) throw redis::Error("idempotency claim failed: " + claimed.str);
      if (claimed.is_nil()) {
        auto owner = co_await commands.exec(redis::cmd("GET", claim_key));
        if (!owner.is_nil() && !owner.is_error() && owner.str != id) {
          Result r;
          r.status = 409;
          r.state = "duplicate";
          r.duplicate_of = owner.str;
          r.account = principal.account.id;
          r.metadata_json = job.metadata_json;
          co_return r;
        }
      }
    }
    // Usage counts jobs, not job attempts: accepted once, delivered/failed when it ends.
    if (!run.resumed) usage.add(principal.key.id, UsageCounters::Kind::accepted);
    auto report = co_await run_cascade(id, job, plan, config, rng);
    Result r;
    r.account = principal.account.id;
    r.metadata_json = job.metadata_json;
    r.attempts = std::move(report.attempts);
    r.delivered_via = std::move(report.delivered_via);
    if (report.delivered) {
      usage.add(principal.key.id, UsageCounters::Kind::delivered);
      r.status = 200;
      r.state = "delivered";
    } else if (report.any_retryable &&
               static_cast<std::size_t>(run.attempt) <= config.job_retry_delays.size()) {
      // SPEC §3: a transient failure everywhere: the whole job is tried again later.
      auto delay = config.job_retry_delays[static_cast<std::size_t>(run.attempt) - 1];
      run.next_due_ms = now_unix_ms() + delay.count();
      r.status = 202;
      r.state = "retrying";
      r.next_attempt_at = iso8601_utc(std::chrono::system_clock::now() + delay);
    } else {
      usage.add(principal.key.id, UsageCounters::Kind::failed);
      r.status = 502;
      r.state = "failed";
      if (report.any_retryable) {
        dead = true;
        run.dead_reason = "retries exhausted after " + std::to_string(run.attempt) + " attempts";
      }
    }
    co_return r;
  }

  // Result first, then ack and delete, in one pipelined round trip: a crash before this
  // re-runs the job; after it, the job is done. A job to be retried later is stored in
  // <prefix>:retry (due time) and <prefix>:retry:<id> (its fields) instead. `again`: an
  // earlier write failed; if its exact result reached Redis, only the ack is repeated
  // (no second results entry, no second retry).
  asio::awaitable<void> finish(const JobRun& run, const Fields& fields, const Result& result,
                               bool dead, bool again) {
    const auto& id = run.id;
    auto json = result.to_json();
    auto result_key = config.prefix + ":result:" + id;
    bool written = false;
    if (again) {
      auto current = co_await commands.exec(redis::cmd("GET", result_key));
      written = !current.is_nil() && current.str == json;
    }
    std::vector<redis::Command> cmds;
    if (!written && result.state == "retrying") {
      auto retry_key = config.prefix + ":retry:" + id;
      cmds.push_back(redis::cmd("DEL", retry_key));
      auto hset = redis::cmd("HSET", retry_key);
      for (const auto& [k, v] : fields) {
        hset.push_back(k);
        hset.push_back(v);
      }
      hset.push_back(std::string(kJobIdField));
      hset.push_back(id);
      hset.push_back(std::string(kJobAttemptField));
      hset.push_back(std::to_string(run.attempt + 1));
      hset.push_back(std::string(kPriorAttemptsField));
      hset.push_back(result.attempts_json());
      cmds.push_back(std::move(hset));
      // Kept well past its due time (a long delay must not outlive its fields).
      auto keep_s = config.progress_ttl.count() + (run.next_due_ms - now_unix_ms()) / 1000;
      cmds.push_back(redis::cmd("EXPIRE", retry_key, std::to_string(keep_s)));
      cmds.push_back(
          redis::cmd("ZADD", config.prefix + ":retry", std::to_string(run.next_due_ms), id));
      cmds.push_back(
          redis::cmd("SET", result_key, json, "EX", std::to_string(config.result_ttl.count())));
    } else if (!written) {
      auto status = std::to_string(result.status);
      cmds.push_back(
          redis::cmd("SET", result_key, json, "EX", std::to_string(config.result_ttl.count())));
      cmds.push_back(redis::cmd("XADD", config.prefix + ":results", "MAXLEN", "~",
                                std::to_string(config.results_maxlen), "*", "id", id, "status",
                                status, "result", json));
      if (dead) {
        redis::Command xadd = redis::cmd("XADD", config.prefix + ":dead", "*", "id", id);
        for (const auto& [k, v] : fields) {
          xadd.push_back(k);
          xadd.push_back(v);
        }
        xadd.push_back("reason");
        xadd.push_back(run.dead_reason.empty() ? std::string("unreadable entry") : run.dead_reason);
        xadd.push_back("result");
        xadd.push_back(json);
        cmds.push_back(std::move(xadd));
      }
      if (!result.delivered_via.empty())
        cmds.push_back(redis::cmd("DEL", config.prefix + ":progress:" + id));
    }
    cmds.push_back(redis::cmd("XACK", jobs_key, config.group, run.entry));
    cmds.push_back(redis::cmd("XDEL", jobs_key, run.entry));
    auto replies = co_await commands.exec_batch(std::move(cmds));
    for (const auto& r : replies)
      if (r.is_error()) throw redis::Error("writing result failed: " + r.str);
  }

  void stop(std::function<void()> done) {
    stopping = true;
    slot_signal.cancel();
    // Wake the blocking read: closing its connection fails it at once.
    reader.close();
    asio::co_spawn(io, drain(shared_from_this(), std::move(done)), [](std::exception_ptr) {});
  }

  static asio::awaitable<void> drain(std::shared_ptr<Impl> self, std::function<void()> done) {
    if (self->stats.in_flight > 0) {
      self->drained_signal.expires_after(self->config.drain_timeout);
      co_await self->drained_signal.async_wait(asio::as_tuple(asio::use_awaitable));
    }
    if (self->stats.in_flight > 0)
      spdlog::warn("drain timeout: {} jobs left pending for reclaim", self->stats.in_flight);
    // Counted usage is written before the connections go.
    try {
      co_await self->usage.flush(self->commands, self->config.prefix);
    } catch (const std::exception&) {
    }
    self->events.close();
    self->http.close_all();
    self->commands.close();
    if (self->metrics) self->metrics->close();
    if (done) done();
  }
};

Engine::Engine(asio::io_context& io, EngineConfig config, ChannelRegistry registry)
    : impl_(std::make_shared<Impl>(io, std::move(config), std::move(registry))) {}

Engine::~Engine() = default;

void Engine::start() {
  impl_->start();
}
void Engine::stop(std::function<void()> done) {
  impl_->stop(std::move(done));
}
EngineStats Engine::stats() const {
  return impl_->stats;
}
const EngineConfig& Engine::config() const {
  return impl_->config;
}
std::uint16_t Engine::metrics_port() const {
  return impl_->metrics ? impl_->metrics->port() : 0;
}

}  // namespace cascade
