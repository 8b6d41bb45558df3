#pragma once
// The tier planner of SPEC §3. Pure.
#include <vector>

#include "engine/job.hpp"

namespace cascade {

struct Tier {
  int number = 0;                     // 0 = primaries, k = fallback_sequence k
  std::vector<std::size_t> channels;  // indexes into Job::channels, body order
};

// Tiers in ascending order of number; empty tiers are omitted.
std::vector<Tier> plan_tiers(const Job& job);

}  // namespace cascade
