#include "redis/gcra.hpp"

#include <openssl/sha.h>

#include "redis/connection.hpp"

namespace asio = boost::asio;

namespace cascade::redis {
namespace {

// KEYS[1] state key; ARGV[1] emission interval (µs), ARGV[2] burst tolerance (µs),
// ARGV[3] "1" to reserve even when the slot is in the future. TAT = theoretical arrival
// time of the next free slot (µs). A request may go at max(now, TAT - tolerance).
constexpr std::string_view kScript = R"lua(
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local wait = tat - tolerance - now
if wait < 0 then wait = 0 end
if wait > 0 and ARGV[3] ~= '1' then return wait end
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

}  // namespace

asio::awaitable<std::int64_t> gcra(Connection& redis, const std::string& key, const Rate& rate,
                                   GcraMode mode) {
  static const std::string sha = sha1_hex(kScript);
  auto interval = std::to_string(rate.interval_us());
  auto tolerance = std::to_string(rate.tolerance_us());
  std::string reserve = mode == GcraMode::reserve ? "1" : "0";
  auto reply = co_await redis.exec(cmd("EVALSHA", sha, "1", key, interval, tolerance, reserve));
  // NOSCRIPT after a Redis restart or SCRIPT FLUSH: EVAL runs it and caches it again.
  if (reply.is_error() && reply.str.rfind("NOSCRIPT", 0) == 0)
    reply = co_await redis.exec(
        cmd("EVAL", std::string(kScript), "1", key, interval, tolerance, reserve));
  if (reply.type != Reply::Type::integer) throw Error("rate script failed: " + reply.str);
  co_return reply.integer;
}

}  // namespace cascade::redis
