#pragma once
// Backoff for retries of one channel inside its tier. Pure.
#include <chrono>
#include <optional>
#include <random>

#include "channels/outcome.hpp"
#include "engine/config.hpp"

namespace cascade {

// How long to wait before try number `next_try` (2 = first retry), or nullopt when the
// outcome must not be retried (permanent, retries exhausted, or the wait would not fit
// before `remaining`). A provider's retry-after is honoured exactly when it fits.
std::optional<std::chrono::milliseconds> retry_delay(const Outcome& outcome, int next_try,
                                                     const RetryPolicy& policy,
                                                     std::chrono::milliseconds remaining,
                                                     std::mt19937_64& rng);

}  // namespace cascade
