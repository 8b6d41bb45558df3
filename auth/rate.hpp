#pragma once
// Per-API-key rate limits: "N/s[:burst]" or "N/m[:burst]", enforced across all workers by
// a GCRA kept in Redis (one EVALSHA per job for keys that have a limit).
#include <boost/asio/awaitable.hpp>

#include <chrono>
#include <optional>
#include <string>
#include <string_view>

namespace cascade::redis {
class Connection;
}

namespace cascade::auth {

struct RateLimit {
  double per_second = 0;  // sustained rate
  int burst = 1;          // requests allowed at once
  // Emission interval: the time one request "costs".
  double interval_ms() const { return 1000.0 / per_second; }
};

// Parses "100/s", "100/s:200", "6000/m", "6000/m:50". nullopt (and *error) when malformed.
std::optional<RateLimit> parse_rate(std::string_view text, std::string* error = nullptr);

// 0 when allowed, else the milliseconds to wait. Throws redis::Error.
boost::asio::awaitable<std::int64_t> rate_check(redis::Connection& redis, const std::string& key,
                                                const RateLimit& limit);

}  // namespace cascade::auth
