#pragma once
// The cascade executor of SPEC §3: tiers in order, each tier's channels in parallel,
// stop at the first tier with a delivery.
#include <boost/asio/awaitable.hpp>

#include <random>
#include <string>
#include <vector>

#include "channels/channel.hpp"
#include "engine/config.hpp"
#include "engine/job.hpp"
#include "engine/result.hpp"

namespace cascade {

// What the executor needs for each of Job::channels (same indexes).
struct ChannelPlan {
  Channel* channel = nullptr;  // nullptr: type not registered (permanent failure)
  const ChannelSettings* settings = nullptr;
  bool paused = false;
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
