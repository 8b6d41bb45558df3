#include "engine/pacer.hpp"

#include <openssl/sha.h>
#include <spdlog/spdlog.h>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <charconv>
#include <cmath>

#include "redis/connection.hpp"

namespace asio = boost::asio;

namespace cascade {
namespace {

// KEYS[1] pace key; ARGV[1] emission interval (µs), ARGV[2] burst tolerance (µs).
// TAT = theoretical arrival time of the next free slot (Redis clock, µs). The caller's
// slot is max(now, TAT - tolerance); TAT moves one interval on. Returns the wait in µs.
constexpr std::string_view kScript = R"lua(
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local wait = tat - tolerance - now
if wait < 0 then wait = 0 end
local next_tat = tat + interval
redis.call('SET', KEYS[1], string.format('%d', next_tat), 'PX',
           math.floor((next_tat - now) / 1000) + 1000)
return wait
)lua";

std::string sha1_hex(std::string_view s) {
  unsigned char digest[SHA_DIGEST_LENGTH];
  SHA1(reinterpret_cast<const unsigned char*>(s.data()), s.size(), digest);
  static constexpr char hex[] = "0123456789abcdef";
  std::string out;
  for (auto b : digest) {
    out.push_back(hex[b >> 4]);
    out.push_back(hex[b & 15]);
  }
  return out;
}

std::optional<double> number(std::string_view s) {
  if (s.empty()) return std::nullopt;
  double v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size() || !std::isfinite(v) || v < 0)
    return std::nullopt;
  return v;
}

}  // namespace

std::optional<PaceRate> parse_rate(std::string_view text) {
  if (text == "0" || text == "unlimited" || text == "none") return PaceRate{};
  std::optional<double> burst;
  if (auto colon = text.find(':'); colon != std::string_view::npos) {
    burst = number(text.substr(colon + 1));
    if (!burst || *burst < 1) return std::nullopt;
    text = text.substr(0, colon);
  }
  double per = 1;
  if (auto slash = text.find('/'); slash != std::string_view::npos) {
    auto unit = text.substr(slash + 1);
    if (unit == "s")
      per = 1;
    else if (unit == "m")
      per = 60;
    else if (unit == "h")
      per = 3600;
    else
      return std::nullopt;
    text = text.substr(0, slash);
  }
  auto n = number(text);
  if (!n) return std::nullopt;
  PaceRate r;
  r.per_second = *n / per;
  if (r.per_second == 0) return PaceRate{};
  r.burst = burst ? *burst : std::max(1.0, std::floor(r.per_second));
  return r;
}

PaceRate channel_rate(std::string_view type, const ChannelSettings* settings) {
  if (settings) {
    if (auto it = settings->find("rate"); it != settings->end()) {
      if (auto r = parse_rate(it->second)) return *r;
      spdlog::warn("ignoring malformed rate setting of a {} channel key", type);
    }
  }
  if (type == "telegram") return PaceRate{30, 30};
  if (type == "waba") return PaceRate{80, 80};
  return PaceRate{};
}

Pacer::Pacer(redis::Connection& redis, std::string prefix)
    : redis_(redis), prefix_(std::move(prefix)), sha_(sha1_hex(kScript)) {}

asio::awaitable<std::chrono::microseconds> Pacer::reserve(const std::string& channel_key_id,
                                                          const PaceRate& rate) {
  using std::chrono::microseconds;
  if (rate.per_second <= 0 || channel_key_id.empty()) co_return microseconds(0);
  auto interval = static_cast<std::int64_t>(std::llround(1e6 / rate.per_second));
  auto tolerance = static_cast<std::int64_t>(std::llround((rate.burst - 1) * 1e6 / rate.per_second));
  auto key = prefix_ + ":pace:" + channel_key_id;
  bool failed = false;
  redis::Reply reply;
  try {
    reply = co_await redis_.exec(redis::cmd("EVALSHA", sha_, "1", key, std::to_string(interval),
                                            std::to_string(tolerance)));
    if (reply.is_error() && reply.str.rfind("NOSCRIPT", 0) == 0)
      reply = co_await redis_.exec(redis::cmd("EVAL", std::string(kScript), "1", key,
                                              std::to_string(interval),
                                              std::to_string(tolerance)));
  } catch (const redis::Error& e) {
    spdlog::warn("pacing unavailable ({}); sending without waiting", e.what());
    failed = true;
  }
  if (failed) co_return microseconds(0);
  if (reply.type != redis::Reply::Type::integer) {
    spdlog::warn("pacing script failed: {}", reply.str);
    co_return microseconds(0);
  }
  co_return microseconds(reply.integer);
}

asio::awaitable<std::chrono::microseconds> Pacer::pace(const std::string& channel_key_id,
                                                       const PaceRate& rate) {
  auto wait = co_await reserve(channel_key_id, rate);
  if (wait.count() > 0) {
    asio::steady_timer t(co_await asio::this_coro::executor);
    t.expires_after(wait);
    co_await t.async_wait(asio::as_tuple(asio::use_awaitable));
  }
  co_return wait;
}

}  // namespace cascade
