#include "engine/cascade.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/deferred.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/experimental/parallel_group.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <spdlog/spdlog.h>

#include "engine/retry.hpp"
#include "engine/tier.hpp"

namespace asio = boost::asio;
using namespace asio::experimental::awaitable_operators;
using Clock = std::chrono::steady_clock;

namespace cascade {
namespace {

double ms_since(Clock::time_point start) {
  return std::chrono::duration<double, std::milli>(Clock::now() - start).count();
}

// SPEC §3 / issue 4.3: the `on_unknown` setting, `retry` (default) or `fail`. Email
// defaults to `fail`: SPEC §5 says an SMTP message whose final "." got no reply is not sent
// again on the same channel.
bool unknown_outcome_retried(std::string_view type, const ChannelSettings* settings) {
  if (settings) {
    if (auto it = settings->find("on_unknown"); it != settings->end()) return it->second != "fail";
  }
  return type != "email";
}

// All tries of one channel inside its tier, bounded by config.channel_timeout.
// `running`: the channels of this tier still at work, this one included.
asio::awaitable<Attempt> attempt_channel(const std::string& job_id, const Job& job,
                                         std::size_t index, const ChannelPlan& plan,
                                         const EngineConfig& config, std::mt19937_64& rng,
                                         int& running) {
  const auto& use = job.channels[index];
  Attempt a;
  a.channel = use.channel;
  a.tier = use.tier();
  auto start = Clock::now();
  if (plan.already_delivered || plan.paused || !plan.channel) {
    --running;
    if (plan.already_delivered) {
      a.ok = true;
      a.provider_id = plan.delivered_id;
    } else {
      a.error =
          plan.paused ? "channel paused" : "channel type " + use.channel + " is not available";
      a.ms = ms_since(start);
    }
    co_return a;
  }
  auto ex = co_await asio::this_coro::executor;
  auto channel_deadline = start + config.channel_timeout;
  SendRequest req;
  req.job_id = job_id;
  req.channel_key_id = plan.channel_key_id;
  req.settings = plan.settings;
  req.recipient = job.recipient_for(use.channel);
  req.message = &job.message;
  const auto rate = channel_rate(use.channel, plan.settings);
  const bool retry_unknown = unknown_outcome_retried(use.channel, plan.settings);
  for (int attempt_no = 1;; ++attempt_no) {
    // Throughput limit of the channel key: wait for its slot (time not charged to the
    // channel's deadline: pacing never fails a send).
    if (plan.pacer) channel_deadline += co_await plan.pacer->pace(plan.channel_key_id, rate);
    req.deadline = std::min(Clock::now() + config.attempt_timeout, channel_deadline);
    a.tries = attempt_no;
    // The built-in adapters honour the deadline themselves (no timer per send); for
    // other channels (embedders' own types) a timer is a backstop that cancels the send if
    // it fires. Its wait returns the error as a value: a cancelled timer must not throw.
    Outcome o;
    if (plan.channel->honours_deadline()) {
      o = co_await plan.channel->send(req);
    } else {
      asio::steady_timer backstop(ex);
      backstop.expires_at(req.deadline + std::chrono::seconds(1));
      auto raced = co_await (plan.channel->send(req) ||
                             backstop.async_wait(asio::as_tuple(asio::use_awaitable)));
      o = raced.index() == 0 ? std::get<0>(std::move(raced))
                             : Outcome::transient("channel did not answer before its deadline",
                                                  Outcome::Cause::network);
    }
    if (o.ok()) {
      a.ok = true;
      a.provider_id = std::move(o.provider_id);
      a.error.clear();
      a.retryable = false;
      a.unknown = false;
      break;
    }
    a.error = std::move(o.error);
    a.retryable = o.retryable();
    a.unknown = o.unknown;
    // The request was written but no reply came: the provider may have delivered. Sent
    // again only when the channel key accepts duplicates (on_unknown=retry).
    if (o.unknown && !retry_unknown) {
      a.retryable = false;
      break;
    }
    auto remaining =
        std::chrono::duration_cast<std::chrono::milliseconds>(channel_deadline - Clock::now());
    auto delay = retry_delay(o, attempt_no + 1, config.retry, remaining, rng);
    if (!delay) break;
    asio::steady_timer t(ex);
    t.expires_after(*delay);
    co_await t.async_wait(asio::use_awaitable);
  }
  a.ms = ms_since(start);
  // A delivery is recorded (progress) only while a sibling is still at work: when this was
  // the tier's last channel, the job's result follows at once and is the record (the crash
  // window between delivery and record is the same either way).
  if (--running > 0 && a.ok && plan.on_delivered) co_await plan.on_delivered(a);
  co_return a;
}

}  // namespace

asio::awaitable<CascadeReport> run_cascade(const std::string& job_id, const Job& job,
                                           const std::vector<ChannelPlan>& plan,
                                           const EngineConfig& config, std::mt19937_64& rng) {
  CascadeReport report;
  auto ex = co_await asio::this_coro::executor;
  for (const auto& tier : plan_tiers(job)) {
    int running = static_cast<int>(tier.channels.size());
    std::vector<Attempt> attempts;
    std::vector<std::exception_ptr> errors;
    if (tier.channels.size() == 1) {
      // One channel (the common tier): awaited directly, without a parallel group's
      // spawned coroutine and handlers.
      auto i = tier.channels[0];
      attempts.resize(1);
      errors.resize(1);
      try {
        attempts[0] = co_await attempt_channel(job_id, job, i, plan[i], config, rng, running);
      } catch (...) {
        errors[0] = std::current_exception();
      }
    } else {
      using Op = decltype(asio::co_spawn(
          ex, attempt_channel(job_id, job, 0, plan[0], config, rng, running), asio::deferred));
      std::vector<Op> ops;
      ops.reserve(tier.channels.size());
      for (auto i : tier.channels)
        ops.push_back(asio::co_spawn(
            ex, attempt_channel(job_id, job, i, plan[i], config, rng, running), asio::deferred));
      auto [order, errs, done] =
          co_await asio::experimental::make_parallel_group(std::move(ops))
              .async_wait(asio::experimental::wait_for_all(), asio::use_awaitable);
      (void)order;
      attempts = std::move(done);
      errors = std::move(errs);
    }
    for (std::size_t k = 0; k < attempts.size(); ++k) {
      Attempt a = std::move(attempts[k]);
      if (errors[k]) {
        // A channel implementation threw: a bug, but it fails this channel only.
        a = Attempt{};
        a.channel = job.channels[tier.channels[k]].channel;
        a.tier = tier.number;
        // Its text stays out of the result: embedders' exceptions may carry anything.
        a.error = "internal error in channel";
        try {
          std::rethrow_exception(errors[k]);
        } catch (const std::exception& e) {
          spdlog::error("job {} channel {} threw: {}", job_id, a.channel, e.what());
        } catch (...) {
          spdlog::error("job {} channel {} threw a non-exception", job_id, a.channel);
        }
      }
      if (a.ok) {
        report.delivered = true;
        report.delivered_via.push_back(a.channel);
      } else if (a.retryable) {
        report.any_retryable = true;
      }
      report.attempts.push_back(std::move(a));
    }
    if (report.delivered) break;
  }
  co_return report;
}

}  // namespace cascade
