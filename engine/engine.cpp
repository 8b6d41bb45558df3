// The Engine facade: one shard per event loop (the caller's io_context, plus one owned
// io_context and thread per extra --threads), the metrics listener, start and stop; and the
// shard's own set-up, auth-event subscription, usage flush and drain.
#include "engine/engine.hpp"

#include <spdlog/spdlog.h>
#include <unistd.h>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <algorithm>
#include <atomic>
#include <optional>
#include <thread>

#include "engine/metrics_server.hpp"
#include "engine/shard.hpp"

namespace asio = boost::asio;

namespace cascade {
namespace {

std::string default_consumer() {
  char host[256] = {};
  gethostname(host, sizeof host - 1);
  // Several engines in one process (embedding, tests) must not share a consumer name: the
  // pending scan of one would run the other's in-flight entries.
  static std::atomic<int> engines{0};
  auto n = ++engines;
  // Appended (g++ 12 -O3 reports `"-" + std::string&&` as an overlapping copy, a false
  // -Wrestrict positive).
  std::string name(host);
  name.append("-").append(std::to_string(getpid()));
  if (n > 1) name.append("-").append(std::to_string(n));
  return name;
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

std::function<void(std::exception_ptr)> log_exception(std::string what) {
  return [what](std::exception_ptr e) {
    if (!e) return;
    try {
      std::rethrow_exception(e);
    } catch (const std::exception& ex) {
      spdlog::error("{} stopped: {}", what, ex.what());
    }
  };
}

}  // namespace

Shard::Shard(asio::io_context& io, EngineConfig c, const ChannelRegistry& registry)
    : io(io),
      config(std::move(c)),
      keys(config.prefix),
      redis_cfg(redis_config(config.redis_url)),
      commands(io.get_executor(), redis_cfg),
      reader(io.get_executor(), redis_cfg),
      events(io.get_executor(), redis_cfg),
      store(commands, config.prefix, auth::load_key_ring(config.master_key_file)),
      verifier(store, commands),
      http(io.get_executor(), http_config(config)),
      pacer(commands, config.prefix),
      writer(io.get_executor(), commands, keys, config),
      slot_signal(io),
      drained_signal(io),
      rng(std::random_device{}()) {
  context.http = &http;
  context.api_base_overrides = config.api_base_overrides;
  for (const auto& [type, factory] : registry.factories())
    channels[type] = factory(context);
}

void Shard::start() {
  if (started) return;
  started = true;
  writer.start();
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

asio::awaitable<void> Shard::pause(asio::io_context& io, std::chrono::milliseconds d) {
  asio::steady_timer t(io);
  t.expires_after(d);
  co_await t.async_wait(asio::as_tuple(asio::use_awaitable));
}

std::chrono::milliseconds Shard::jittered(std::chrono::milliseconds d) {
  std::uniform_int_distribution<std::int64_t> pick(d.count() / 2, d.count());
  return std::chrono::milliseconds(pick(rng));
}

void Shard::publish_auth_counters() {
  const auto& v = verifier.stats();
  counters.auth_cache_hits.store(v.cache_hits, std::memory_order_relaxed);
  counters.auth_cache_misses.store(v.cache_misses, std::memory_order_relaxed);
  counters.auth_invalidations.store(v.invalidations, std::memory_order_relaxed);
  counters.auth_cache_live.store(verifier.cache_live(), std::memory_order_relaxed);
}

// Keeps the verifier's cache honest: it is used only while this subscription is live; a
// lost connection flushes it at once (disconnect handler), and a PING every second notices
// a silent one. Resubscribes after every reconnect.
asio::awaitable<void> Shard::watch_auth_events(std::shared_ptr<Shard> self) {
  std::weak_ptr<Shard> weak = self;
  self->events.set_push_handler([weak](const redis::Reply& r) {
    if (auto s = weak.lock()) {
      s->verifier.invalidate(r.elements.back().str);
      s->publish_auth_counters();
    }
  });
  self->events.set_disconnect_handler([weak] {
    if (auto s = weak.lock()) {
      s->verifier.set_cache_live(false);
      s->publish_auth_counters();
    }
  });
  auto backoff = std::chrono::milliseconds(100);
  while (!self->stopping) {
    bool failed = false;
    try {
      auto r = co_await self->events.exec(redis::cmd("SUBSCRIBE", self->store.events_channel()));
      if (r.is_error()) throw redis::Error("SUBSCRIBE failed: " + r.str);
      self->verifier.set_cache_live(true);
      self->publish_auth_counters();
      backoff = std::chrono::milliseconds(100);
      while (!self->stopping) {
        co_await pause(self->io, std::chrono::milliseconds(1000));
        if (self->stopping) break;
        co_await self->events.exec(redis::cmd("PING"), std::chrono::milliseconds(2000));
      }
    } catch (const redis::Error& e) {
      self->verifier.set_cache_live(false);
      self->publish_auth_counters();
      if (!self->stopping) spdlog::warn("auth events subscription lost: {}", e.what());
      failed = true;
    }
    if (failed && !self->stopping) {
      co_await pause(self->io, backoff);
      backoff = std::min(backoff * 2, std::chrono::milliseconds(5000));
    }
  }
}

asio::awaitable<void> Shard::flush_usage(std::shared_ptr<Shard> self) {
  while (!self->stopping) {
    co_await pause(self->io, self->config.usage_flush_interval);
    co_await self->usage.flush(self->commands, self->config.prefix);
  }
}

void Shard::stop(std::function<void()> done) {
  stopping = true;
  slot_signal.cancel();
  // Wake the blocking read: closing its connection fails it at once.
  reader.close();
  asio::co_spawn(io, drain(shared_from_this(), std::move(done)), [](std::exception_ptr) {});
}

asio::awaitable<void> Shard::drain(std::shared_ptr<Shard> self, std::function<void()> done) {
  if (self->in_flight > 0) {
    self->drained_signal.expires_after(self->config.drain_timeout);
    co_await self->drained_signal.async_wait(asio::as_tuple(asio::use_awaitable));
  }
  if (self->in_flight > 0)
    spdlog::warn("drain timeout: {} jobs left pending for reclaim", self->in_flight);
  // Counted usage is written before the connections go.
  try {
    co_await self->usage.flush(self->commands, self->config.prefix);
  } catch (const std::exception&) {
  }
  self->writer.close();
  self->events.close();
  self->http.close_all();
  self->commands.close();
  if (done) done();
}

struct Engine::Impl : std::enable_shared_from_this<Impl> {
  using Guard = asio::executor_work_guard<asio::io_context::executor_type>;

  Impl(asio::io_context& io, EngineConfig c, ChannelRegistry reg) : io(io), config(std::move(c)) {
    if (config.consumer.empty()) config.consumer = default_consumer();
    if (config.concurrency == 0) throw std::invalid_argument("concurrency must be at least 1");
    if (config.threads == 0) throw std::invalid_argument("threads must be at least 1");
    if (config.concurrency < config.threads)
      throw std::invalid_argument("concurrency must be at least the number of threads");
    redis_config(config.redis_url);  // a bad URL fails here, before any thread starts
    // Shard i reads as "<consumer>-<i>" (shard 0 as <consumer>): a worker restarted with the
    // same --consumer and --threads finds each shard's own pending entries.
    for (std::size_t i = 0; i < config.threads; ++i) {
      EngineConfig sc = config;
      sc.concurrency =
          config.concurrency / config.threads + (i < config.concurrency % config.threads ? 1 : 0);
      if (i > 0) sc.consumer = config.consumer + "-" + std::to_string(i);
      asio::io_context* loop = &io;
      if (i > 0) {
        own.push_back(std::make_unique<asio::io_context>(1));
        loop = own.back().get();
        guards.emplace_back(loop->get_executor());
      }
      shards.push_back(std::make_shared<Shard>(*loop, std::move(sc), reg));
    }
  }

  ~Impl() {
    for (auto& g : guards)
      g.reset();
    for (auto& o : own)
      o->stop();
    for (auto& t : threads) {
      if (!t.joinable()) continue;
      // The last reference may go on a shard's own thread: it cannot wait for itself.
      if (t.get_id() == std::this_thread::get_id())
        t.detach();
      else
        t.join();
    }
  }

  asio::io_context& io;
  EngineConfig config;
  std::vector<std::unique_ptr<asio::io_context>> own;  // the loops of shards 1..N-1
  std::vector<Guard> guards;
  std::vector<std::thread> threads;
  std::vector<std::shared_ptr<Shard>> shards;
  std::unique_ptr<MetricsServer> metrics;
  bool started = false;
  std::atomic<bool> stopping{false};

  EngineStats stats() const {
    EngineStats s;
    s.redis_ready = true;
    for (const auto& sh : shards) {
      const auto& c = sh->counters;
      s.jobs += c.jobs;
      s.delivered += c.delivered;
      s.failed += c.failed;
      s.rejected += c.rejected;
      s.duplicates += c.duplicates;
      s.retried += c.retried;
      s.reclaimed += c.reclaimed;
      s.in_flight += c.in_flight;
      s.redis_ready = s.redis_ready && c.redis_ready;
    }
    return s;
  }

  MetricsSnapshot snapshot() const {
    auto st = stats();
    MetricsSnapshot s;
    s.delivered = st.delivered;
    s.failed = st.failed;
    s.rejected = st.rejected;
    s.duplicates = st.duplicates;
    s.reclaimed = st.reclaimed;
    s.retried = st.retried;
    s.in_flight = st.in_flight;
    s.redis_ready = st.redis_ready;
    s.auth_cache_live = true;
    for (const auto& sh : shards) {
      const auto& c = sh->counters;
      s.auth_cache_hits += c.auth_cache_hits;
      s.auth_cache_misses += c.auth_cache_misses;
      s.auth_invalidations += c.auth_invalidations;
      s.auth_cache_live = s.auth_cache_live && c.auth_cache_live;
    }
    s.concurrency = config.concurrency;
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
    shards[0]->start();
    for (std::size_t i = 1; i < shards.size(); ++i) {
      auto shard = shards[i];
      asio::post(shard->io, [shard] { shard->start(); });
      threads.emplace_back([loop = own[i - 1].get()] { loop->run(); });
    }
  }

  void stop(std::function<void()> done) {
    if (stopping.exchange(true)) return;
    // Every shard drains on its own loop; the last one to finish completes the stop on the
    // caller's loop, where the extra loops are let go (their threads end once idle).
    auto left = std::make_shared<std::atomic<std::size_t>>(shards.size());
    auto self = shared_from_this();
    auto finished = [self, left, done = std::move(done)]() mutable {
      if (--*left != 0) return;
      asio::post(self->io, [self, done = std::move(done)] {
        for (auto& g : self->guards)
          g.reset();
        if (self->metrics) self->metrics->close();
        if (done) done();
      });
    };
    for (auto& shard : shards)
      asio::post(shard->io, [shard, finished]() mutable { shard->stop(finished); });
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
  return impl_->stats();
}
const EngineConfig& Engine::config() const {
  return impl_->config;
}
std::uint16_t Engine::metrics_port() const {
  return impl_->metrics ? impl_->metrics->port() : 0;
}

}  // namespace cascade
