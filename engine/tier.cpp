#include "engine/tier.hpp"

#include <map>

namespace cascade {

std::vector<Tier> plan_tiers(const Job& job) {
  std::map<int, Tier> by_number;
  for (std::size_t i = 0; i < job.channels.size(); ++i) {
    auto& t = by_number[job.channels[i].tier()];
    t.number = job.channels[i].tier();
    t.channels.push_back(i);
  }
  std::vector<Tier> out;
  for (auto& [n, t] : by_number)
    out.push_back(std::move(t));
  return out;
}

}  // namespace cascade
