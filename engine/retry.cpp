#include "engine/retry.hpp"

#include <algorithm>

namespace cascade {

std::optional<std::chrono::milliseconds> retry_delay(const Outcome& outcome, int next_try,
                                                     const RetryPolicy& policy,
                                                     std::chrono::milliseconds remaining,
                                                     std::mt19937_64& rng) {
  if (!outcome.retryable()) return std::nullopt;
  if (next_try - 1 > policy.max_retries) return std::nullopt;
  std::chrono::milliseconds wait{0};
  if (outcome.kind == Outcome::Kind::retry_after) {
    wait = outcome.retry_after;
  } else {
    // Full jitter: uniform in [0, min(cap, base * 2^(retry-1))].
    auto exp = policy.base.count() << std::min(next_try - 2, 20);
    auto ceiling = std::min<std::int64_t>(policy.cap.count(), exp);
    std::uniform_int_distribution<std::int64_t> dist(0, std::max<std::int64_t>(ceiling, 0));
    wait = std::chrono::milliseconds(dist(rng));
  }
  if (wait >= remaining) return std::nullopt;
  return wait;
}

}  // namespace cascade
