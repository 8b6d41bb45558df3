#include "auth/rate.hpp"

#include <charconv>
#include <cmath>
#include <cstdio>

#include "redis/connection.hpp"

namespace asio = boost::asio;

namespace cascade::auth {
namespace {

// GCRA (virtual scheduling). TAT = theoretical arrival time of the next request. A request
// is allowed when TAT - now <= (burst - 1) * interval; it then pushes TAT by one interval.
// Redis's own clock (TIME) is used so that workers' clocks do not matter.
constexpr const char* kGcra = R"lua(
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local allow_at = tat - (burst - 1) * interval
if now < allow_at then
  return math.ceil(allow_at - now)
end
local new_tat = tat + interval
redis.call('SET', KEYS[1], string.format('%.3f', new_tat), 'PX', math.ceil(new_tat - now) + 1000)
return 0
)lua";

std::string format_ms(double ms) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.6f", ms);
  return buf;
}

}  // namespace

std::optional<RateLimit> parse_rate(std::string_view text, std::string* error) {
  auto fail = [&](const char* why) -> std::optional<RateLimit> {
    if (error) *error = why;
    return std::nullopt;
  };
  RateLimit r;
  auto slash = text.find('/');
  if (slash == std::string_view::npos)
    return fail("rate must look like 100/s, 100/s:200 or 6000/m");
  std::int64_t n = 0;
  auto num = text.substr(0, slash);
  auto [p, ec] = std::from_chars(num.data(), num.data() + num.size(), n);
  if (ec != std::errc() || p != num.data() + num.size() || n <= 0 || n > 1'000'000)
    return fail("rate count must be a whole number from 1 to 1000000");
  auto rest = text.substr(slash + 1);
  auto colon = rest.find(':');
  auto unit = rest.substr(0, colon);
  if (unit == "s")
    r.per_second = static_cast<double>(n);
  else if (unit == "m")
    r.per_second = static_cast<double>(n) / 60.0;
  else
    return fail("rate unit must be s or m");
  // Default burst: one window's worth (N/s allows N at once, N/m allows N at once).
  r.burst = static_cast<int>(n);
  if (colon != std::string_view::npos) {
    auto b = rest.substr(colon + 1);
    int burst = 0;
    auto [q, ec2] = std::from_chars(b.data(), b.data() + b.size(), burst);
    if (ec2 != std::errc() || q != b.data() + b.size() || burst <= 0 || burst > 1'000'000)
      return fail("burst must be a whole number from 1 to 1000000");
    r.burst = burst;
  }
  return r;
}

asio::awaitable<std::int64_t> rate_check(redis::Connection& redis, const std::string& key,
                                         const RateLimit& limit) {
  // Each worker's connection caches the script sha; NOSCRIPT (after a Redis restart or
  // SCRIPT FLUSH) falls back to EVAL, which also loads it again.
  static thread_local std::string sha;
  auto burst = std::to_string(limit.burst);
  auto interval_s = format_ms(limit.interval_ms());
  if (sha.empty()) {
    auto loaded = co_await redis.exec(redis::cmd("SCRIPT", "LOAD", kGcra));
    if (loaded.is_error()) throw redis::Error("SCRIPT LOAD failed: " + loaded.str);
    sha = loaded.str;
  }
  auto r = co_await redis.exec(redis::cmd("EVALSHA", sha, "1", key, interval_s, burst));
  if (r.is_error() && r.str.rfind("NOSCRIPT", 0) == 0)
    r = co_await redis.exec(redis::cmd("EVAL", kGcra, "1", key, interval_s, burst));
  if (r.is_error()) throw redis::Error("rate limit script failed: " + r.str);
  co_return r.integer;
}

}  // namespace cascade::auth
