#pragma once
// The cascade executor of SPEC §3: tiers in order, each tier's channels in parallel,
// stop at the first tier with a delivery.
#include <boost/asio/awaitable.hpp>

#include <functional>
#include <random>
#include <string>
#include <vector>

#include "channels/channel.hpp"
#include "engine/config.hpp"
#include "engine/job.hpp"
#include "engine/pacer.hpp"
#include "engine/result.hpp"

namespace cascade {

// What the executor needs for each of Job::channels (same indexes).
struct ChannelPlan {
  Channel* channel = nullptr;  // nullptr: type not registered (permanent failure)
  const ChannelSettings* settings = nullptr;
  bool paused = false;
  // Pacing (SPEC §3): the channel key (chk_...) whose limit applies, and the shared pacer
  // (nullptr: no pacing). The limit is the key's `rate` setting or the type's default.
  std::string channel_key_id;
  Pacer* pacer = nullptr;
  // Crash recovery: delivered by an earlier run of this job (its progress record): reported
  // as delivered (tries 0, that run's provider id) and not sent again.
  bool already_delivered = false;
  std::string delivered_id;
  // Awaited right after this channel delivers while a sibling of its tier is still at work
  // (records the delivery in Redis, so a re-run after a crash does not send it again); not
  // called when the job's result follows at once. Must not throw.
  std::function<boost::asio::awaitable<void>(const Attempt&)> on_delivered;
};

struct CascadeReport {
  std::vector<Attempt> attempts;  // every channel tried, tier by tier
  std::vector<std::string> delivered_via;
  bool delivered = false;
  bool any_retryable = false;  // some failure was transient (job-level retry candidate)
};

boost::asio::awaitable<CascadeReport> run_cascade(const std::string& job_id, const Job& job,
                                                  const std::vector<ChannelPlan>& plan,
                                                  const EngineConfig& config, std::mt19937_64& rng);

}  // namespace cascade
