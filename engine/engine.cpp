#include "engine/engine.hpp"

#include <spdlog/spdlog.h>
#include <unistd.h>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <random>

#include "auth/store.hpp"
#include "auth/verifier.hpp"
#include "channels/http_client.hpp"
#include "engine/cascade.hpp"
#include "engine/result.hpp"
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
  return std::string(host) + "-" + std::to_string(getpid());
}

redis::Config redis_config(const std::string& url) {
  std::string error;
  auto c = redis::parse_url(url, &error);
  if (!c) throw std::invalid_argument("bad redis URL: " + error);
  return *c;
}

}  // namespace

struct Engine::Impl : std::enable_shared_from_this<Impl> {
  Impl(asio::io_context& io, EngineConfig c, ChannelRegistry reg)
      : io(io),
        config(std::move(c)),
        redis_cfg(redis_config(config.redis_url)),
        commands(io.get_executor(), redis_cfg),
        reader(io.get_executor(), redis_cfg),
        store(commands, config.prefix),
        verifier(store),
        http(io.get_executor()),
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
  auth::Store store;
  auth::Verifier verifier;
  HttpClient http;
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

  void start() {
    if (started) return;
    started = true;
    asio::co_spawn(io, consume(shared_from_this()), [](std::exception_ptr e) {
      if (!e) return;
      try {
        std::rethrow_exception(e);
      } catch (const std::exception& ex) {
        spdlog::critical("consumer stopped: {}", ex.what());
      }
    });
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

  static asio::awaitable<void> consume(std::shared_ptr<Impl> self) {
    auto backoff = std::chrono::milliseconds(100);
    bool group_ready = false;
    bool failed = false;
    while (!self->stopping) {
      try {
        if (!group_ready) {
          co_await self->ensure_group();
          group_ready = true;
          spdlog::info("consuming {} as {}/{} on redis {}", self->jobs_key, self->config.group,
                       self->config.consumer, self->redis_cfg.describe());
        }
        self->stats.redis_ready = true;
        // Back-pressure: ask for no more entries than there are free slots.
        while (self->stats.in_flight >= self->config.concurrency && !self->stopping) {
          self->slot_signal.expires_at(asio::steady_timer::time_point::max());
          co_await self->slot_signal.async_wait(asio::as_tuple(asio::use_awaitable));
        }
        if (self->stopping) break;
        auto free_slots = self->config.concurrency - self->stats.in_flight;
        auto reply = co_await self->reader.exec(
            redis::cmd("XREADGROUP", "GROUP", self->config.group, self->config.consumer, "COUNT",
                       std::to_string(free_slots), "BLOCK",
                       std::to_string(self->config.block.count()), "STREAMS", self->jobs_key, ">"),
            self->config.block + self->redis_cfg.request_timeout);
        if (reply.is_error()) {
          // NOGROUP after a FLUSHALL or a deleted stream: create it again.
          if (reply.str.rfind("NOGROUP", 0) == 0) {
            group_ready = false;
            continue;
          }
          throw redis::Error("XREADGROUP failed: " + reply.str);
        }
        backoff = std::chrono::milliseconds(100);
        self->dispatch(reply);
      } catch (const redis::Error& e) {
        if (self->stopping) break;
        self->stats.redis_ready = false;
        spdlog::warn("redis unavailable ({}); retrying in {} ms", e.what(), backoff.count());
        failed = true;
      }
      if (failed) {
        // co_await is not allowed inside a catch handler: back off here.
        failed = false;
        co_await pause(self->io, backoff);
        backoff = std::min(backoff * 2, std::chrono::milliseconds(5000));
      }
    }
  }

  // reply: [[stream, [[id, [k, v, ...]], ...]]]
  void dispatch(const redis::Reply& reply) {
    if (!reply.is_array()) return;  // nil: BLOCK timed out
    for (const auto& stream : reply.elements) {
      if (stream.elements.size() < 2) continue;
      for (const auto& entry : stream.elements[1].elements) {
        if (entry.elements.size() < 2) continue;
        Fields fields;
        const auto& kv = entry.elements[1].elements;
        for (std::size_t i = 0; i + 1 < kv.size(); i += 2)
          fields.emplace_back(kv[i].str, kv[i + 1].str);
        ++stats.in_flight;
        asio::co_spawn(io, run_job(shared_from_this(), entry.elements[0].str, std::move(fields)),
                       [self = shared_from_this()](std::exception_ptr e) {
                         if (e) {
                           try {
                             std::rethrow_exception(e);
                           } catch (const std::exception& ex) {
                             spdlog::error("job coroutine failed: {}", ex.what());
                           }
                         }
                         self->job_finished();
                       });
      }
    }
  }

  void job_finished() {
    --stats.in_flight;
    slot_signal.cancel();
    if (stopping && stats.in_flight == 0) drained_signal.cancel();
  }

  static asio::awaitable<void> run_job(std::shared_ptr<Impl> self, std::string id, Fields fields) {
    bool dead = false;
    Result result;
    try {
      result = co_await self->handle(id, fields, dead);
    } catch (const redis::Error& e) {
      // Redis failed mid-job: leave the entry pending (not acked) so it is re-run.
      spdlog::warn("job {} left pending: {}", id, e.what());
      co_return;
    }
    result.id = id;
    result.finished_at = iso8601_utc(std::chrono::system_clock::now());
    try {
      co_await self->finish(id, fields, result, dead);
    } catch (const redis::Error& e) {
      spdlog::warn("job {} result not written, left pending: {}", id, e.what());
      co_return;
    }
    ++self->stats.jobs;
    if (result.state == "delivered")
      ++self->stats.delivered;
    else if (result.state == "failed")
      ++self->stats.failed;
    else
      ++self->stats.rejected;
    spdlog::debug("job {} {} {}", id, result.status, result.state);
  }

  asio::awaitable<Result> handle(const std::string& id, const Fields& fields, bool& dead) {
    auto* body = find_field(fields, "body");
    if (!body) {
      dead = true;
      co_return Result::rejected(id, 400, "Invalid request: body is missing", "body");
    }
    auto who = co_await verifier.authenticate(optional_field(fields, "authorization"),
                                              optional_field(fields, "x-api-key"));
    if (auto* v = std::get_if<auth::Verdict>(&who)) {
      auto r = Result::rejected(id, v->status, v->error, v->field);
      r.retry_after = v->retry_after;
      co_return r;
    }
    auto& principal = std::get<auth::Principal>(who);
    auto parsed = parse_job(*body, config.limits);
    if (auto* err = std::get_if<JobError>(&parsed)) {
      // A body that cannot be read at all (not a JSON object, or over the size limit)
      // also goes to the dead letters, where an operator can look at it.
      dead = err->unreadable || err->field.empty();
      auto r = Result::rejected(id, 400, err->message(), err->field);
      r.account = principal.account.id;
      co_return r;
    }
    auto& job = std::get<Job>(parsed);
    std::vector<auth::ChannelToken> tokens;
    for (const auto& use : job.channels)
      tokens.push_back({use.channel, use.token});
    auto granted = co_await verifier.authorize_channels(principal, tokens);
    if (auto* v = std::get_if<auth::Verdict>(&granted)) {
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
    }
    auto report = co_await run_cascade(id, job, plan, config, rng);
    Result r;
    r.account = principal.account.id;
    r.metadata_json = job.metadata_json;
    r.attempts = std::move(report.attempts);
    r.delivered_via = std::move(report.delivered_via);
    if (report.delivered) {
      r.status = 200;
      r.state = "delivered";
    } else {
      r.status = 502;
      r.state = "failed";
    }
    co_return r;
  }

  // Result first, then ack and delete, in one pipelined round trip: a crash before this
  // re-runs the job; after it, the job is done.
  asio::awaitable<void> finish(const std::string& id, const Fields& fields, const Result& result,
                               bool dead) {
    auto json = result.to_json();
    auto status = std::to_string(result.status);
    std::vector<redis::Command> cmds;
    cmds.push_back(redis::cmd("SET", config.prefix + ":result:" + id, json, "EX",
                              std::to_string(config.result_ttl.count())));
    cmds.push_back(redis::cmd("XADD", config.prefix + ":results", "MAXLEN", "~",
                              std::to_string(config.results_maxlen), "*", "id", id, "status",
                              status, "result", json));
    if (dead) {
      redis::Command xadd = redis::cmd("XADD", config.prefix + ":dead", "*", "id", id);
      for (const auto& [k, v] : fields) {
        xadd.push_back(k);
        xadd.push_back(v);
      }
      xadd.push_back("result");
      xadd.push_back(json);
      cmds.push_back(std::move(xadd));
    }
    cmds.push_back(redis::cmd("XACK", jobs_key, config.group, id));
    cmds.push_back(redis::cmd("XDEL", jobs_key, id));
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
    self->http.close_all();
    self->commands.close();
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

}  // namespace cascade
