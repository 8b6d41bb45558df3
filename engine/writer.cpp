#include "engine/writer.hpp"

#include <spdlog/spdlog.h>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/associated_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <algorithm>
#include <deque>
#include <random>

#include "redis/connection.hpp"
#include "util/time.hpp"

namespace asio = boost::asio;

namespace cascade {

namespace {
// A batch this large is already far past the point where the round trip is amortised;
// the cap bounds the size of one write (and of one reply to parse).
constexpr std::size_t kMaxBatch = 2048;
// A dead letter's copy of a field: at most `max` bytes, and a cut one says so (a hostile
// entry of 100 MB must not be kept twice).
std::string bounded(const std::string& value, std::size_t max) {
  if (value.size() <= max) return value;
  auto cut = value.substr(0, max);
  cut += "...[cut: " + std::to_string(value.size() - max) + " more bytes]";
  return cut;
}

}  // namespace

std::vector<redis::Command> end_commands(const keyspace::Keys& keys, const EngineConfig& config,
                                         const std::vector<const JobEnd*>& ends,
                                         std::int64_t now_ms) {
  std::vector<redis::Command> cmds;
  cmds.reserve(ends.size() * 2 + 2);
  const auto result_ttl = std::to_string(config.result_ttl.count());
  const auto maxlen = std::to_string(config.results_maxlen);
  const auto dead_maxlen = std::to_string(config.dead_maxlen);
  for (const auto* e : ends) {
    if (e->kind == JobEnd::Kind::ack_only) continue;
    if (e->kind == JobEnd::Kind::retry) {
      auto retry_key = keys.retry_fields(e->id);
      cmds.push_back(redis::cmd("DEL", retry_key));
      auto hset = redis::cmd("HSET", retry_key);
      hset.reserve(2 + e->fields.size() * 2 + 4);
      for (const auto& [k, v] : e->fields) {
        hset.push_back(k);
        hset.push_back(v);
      }
      keyspace::append_resume_fields(hset, e->id, e->resume.token);
      cmds.push_back(std::move(hset));
      // Kept well past its due time (a long delay must not outlive its fields).
      auto keep_s =
          config.progress_ttl.count() + std::max<std::int64_t>(0, (e->next_due_ms - now_ms) / 1000);
      cmds.push_back(redis::cmd("EXPIRE", retry_key, std::to_string(keep_s)));
      for (auto& c : keyspace::write_resume(keys, e->id, e->resume, keep_s))
        cmds.push_back(std::move(c));
      cmds.push_back(redis::cmd("ZADD", keys.retry_due(), std::to_string(e->next_due_ms), e->id));
      cmds.push_back(redis::cmd("SET", keys.result(e->id), e->json, "EX", result_ttl));
      continue;
    }
    cmds.push_back(redis::cmd("SET", keys.result(e->id), e->json, "EX", result_ttl));
    cmds.push_back(redis::cmd("XADD", keys.results(), "MAXLEN", "~", maxlen, "*", "id", e->id,
                              "status", std::to_string(e->status), "result", e->json));
    if (!e->dead_reason.empty()) {
      auto xadd = redis::cmd("XADD", keys.dead(), "MAXLEN", "~", dead_maxlen, "*", "id", e->id);
      for (const auto& [k, v] : e->fields) {
        xadd.push_back(k.substr(0, 256));
        xadd.push_back(bounded(v, config.dead_field_max_bytes));
      }
      xadd.push_back("reason");
      xadd.push_back(e->dead_reason);
      xadd.push_back("result");
      xadd.push_back(e->json);
      cmds.push_back(std::move(xadd));
    }
    if (e->delete_progress) cmds.push_back(redis::cmd("DEL", keys.progress(e->id)));
  }
  // Acked only after the results above (same connection, so Redis runs them in order): a
  // crash before the ack re-runs the job, and the re-run finds the result and only acks.
  auto xack = redis::cmd("XACK", keys.jobs(), config.group);
  auto xdel = redis::cmd("XDEL", keys.jobs());
  xack.reserve(3 + ends.size());
  xdel.reserve(2 + ends.size());
  for (const auto* e : ends) {
    xack.push_back(e->entry);
    xdel.push_back(e->entry);
  }
  cmds.push_back(std::move(xack));
  cmds.push_back(std::move(xdel));
  // The resume record goes last: until the entry is acked, a reclaimed copy of it must
  // still prove that it is the job it names.
  for (const auto* e : ends)
    if (e->kind == JobEnd::Kind::final && e->delete_resume)
      cmds.push_back(redis::cmd("DEL", keys.resume(e->id)));
  return cmds;
}

struct Writer::Impl : std::enable_shared_from_this<Impl> {
  // The waiting job's completion handler, type-erased by hand (Boost 1.81's
  // any_completion_handler wraps itself without end when copied from an lvalue).
  struct Waker {
    virtual ~Waker() = default;
    virtual void wake() = 0;
  };
  template <class Handler>
  struct HandlerWaker final : Waker {
    explicit HandlerWaker(Handler&& h) : handler(std::move(h)) {}
    // The job resumes from its own executor's queue, not inside the writer.
    void wake() override {
      auto ex = asio::get_associated_executor(handler);
      asio::post(ex, std::move(handler));
    }
    Handler handler;
  };
  struct Pending {
    JobEnd end;
    bool again = false;  // an earlier write of it failed: it may have reached Redis
    std::unique_ptr<Waker> done;
  };

  Impl(asio::any_io_executor ex, redis::Connection& redis, const keyspace::Keys& keys,
       const EngineConfig& config)
      : ex(ex), redis(redis), keys(keys), config(config), wake(ex), rng(std::random_device{}()) {}

  asio::any_io_executor ex;
  redis::Connection& redis;
  const keyspace::Keys& keys;
  const EngineConfig& config;
  asio::steady_timer wake;
  std::deque<std::unique_ptr<Pending>> queue;
  bool started = false;
  bool closing = false;
  std::uint64_t batches = 0;
  std::uint64_t written = 0;
  std::mt19937_64 rng;

  void complete(std::unique_ptr<Pending>& p) { p->done->wake(); }

  // Writes one batch; false when Redis did not take it (an outage or an error reply).
  asio::awaitable<bool> flush(std::vector<std::unique_ptr<Pending>>& batch) {
    // After a failure, a result that did reach Redis is not written again (no second
    // results entry, no second retry): only its ack is repeated.
    std::vector<Pending*> check;
    for (auto& p : batch)
      if (p->again && p->end.kind != JobEnd::Kind::ack_only) check.push_back(p.get());
    if (!check.empty()) {
      std::vector<redis::Command> gets;
      for (auto* p : check)
        gets.push_back(redis::cmd("GET", keys.result(p->end.id)));
      auto current = co_await redis.exec_batch(std::move(gets));
      for (std::size_t i = 0; i < check.size(); ++i)
        if (!current[i].is_nil() && !current[i].is_error() && current[i].str == check[i]->end.json)
          check[i]->end.kind = JobEnd::Kind::ack_only;
    }
    std::vector<const JobEnd*> ends;
    ends.reserve(batch.size());
    for (auto& p : batch)
      ends.push_back(&p->end);
    auto replies = co_await redis.exec_batch(end_commands(keys, config, ends, now_unix_ms()));
    for (const auto& r : replies)
      if (r.is_error()) {
        spdlog::warn("writing {} job results failed: {}", batch.size(), r.str);
        co_return false;
      }
    co_return true;
  }

  static asio::awaitable<void> run(std::shared_ptr<Impl> self) {
    auto backoff = std::chrono::milliseconds(100);
    bool warned = false;
    for (;;) {
      if (self->queue.empty()) {
        if (self->closing) break;
        self->wake.expires_at(asio::steady_timer::time_point::max());
        co_await self->wake.async_wait(asio::as_tuple(asio::use_awaitable));
        continue;
      }
      // Jobs that end in this same turn of the event loop join the batch.
      co_await asio::post(self->ex, asio::use_awaitable);
      std::vector<std::unique_ptr<Pending>> batch;
      auto n = std::min(self->queue.size(), kMaxBatch);
      batch.reserve(n);
      for (std::size_t i = 0; i < n; ++i) {
        batch.push_back(std::move(self->queue.front()));
        self->queue.pop_front();
      }
      bool ok = false;
      try {
        ok = co_await self->flush(batch);
      } catch (const redis::Error& e) {
        // Once per outage at warn: every batch fails many times while Redis is away.
        if (!warned)
          spdlog::warn("writing job results failed ({}); retrying until Redis takes them",
                       e.what());
        warned = true;
      }
      if (ok) {
        if (warned) spdlog::info("job results written again after a Redis failure");
        warned = false;
        backoff = std::chrono::milliseconds(100);
        ++self->batches;
        self->written += batch.size();
        for (auto& p : batch)
          self->complete(p);
        continue;
      }
      // Back at the front, in order, to be written again once Redis is back.
      for (auto it = batch.rbegin(); it != batch.rend(); ++it) {
        (*it)->again = true;
        self->queue.push_front(std::move(*it));
      }
      std::uniform_int_distribution<std::int64_t> pick(backoff.count() / 2, backoff.count());
      asio::steady_timer t(self->ex);
      t.expires_after(std::chrono::milliseconds(pick(self->rng)));
      co_await t.async_wait(asio::as_tuple(asio::use_awaitable));
      backoff = std::min(backoff * 2, std::chrono::milliseconds(5000));
    }
  }
};

Writer::Writer(asio::any_io_executor ex, redis::Connection& redis, const keyspace::Keys& keys,
               const EngineConfig& config)
    : impl_(std::make_shared<Impl>(ex, redis, keys, config)) {}

// Nothing here touches the loop: the writer may be destroyed while its io_context shuts
// down (its coroutine frames are destroyed then), when no timer may be cancelled.
Writer::~Writer() = default;

void Writer::start() {
  if (impl_->started) return;
  impl_->started = true;
  asio::co_spawn(impl_->ex, Impl::run(impl_), [](std::exception_ptr e) {
    if (!e) return;
    try {
      std::rethrow_exception(e);
    } catch (const std::exception& ex) {
      spdlog::critical("result writer stopped: {}", ex.what());
    }
  });
}

asio::awaitable<void> Writer::write(JobEnd end) {
  auto p = std::make_unique<Impl::Pending>();
  p->end = std::move(end);
  // Captures plain pointers only: g++ 12 may destroy a co_await'ed call's temporary
  // arguments twice, and a lambda holding a shared_ptr would then release it twice.
  Impl* impl = impl_.get();
  auto* pending = &p;
  auto initiate = [impl, pending](auto handler) {
    (*pending)->done = std::make_unique<Impl::HandlerWaker<decltype(handler)>>(std::move(handler));
    impl->queue.push_back(std::move(*pending));
    impl->wake.cancel();
  };
  co_await asio::async_initiate<decltype(asio::use_awaitable), void()>(initiate,
                                                                       asio::use_awaitable);
}

void Writer::close() {
  impl_->closing = true;
  impl_->wake.cancel();
}

std::uint64_t Writer::batches() const {
  return impl_->batches;
}
std::uint64_t Writer::written() const {
  return impl_->written;
}

}  // namespace cascade
