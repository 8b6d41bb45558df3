#include "redis/gcra.hpp"

#include "redis/connection.hpp"
#include "redis/script.hpp"

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

}  // namespace

asio::awaitable<std::int64_t> gcra(Connection& redis, const std::string& key, const Rate& rate,
                                   GcraMode mode) {
  static const Script script(kScript);
  std::string reserve = mode == GcraMode::reserve ? "1" : "0";
  // Named, not braced temporaries: g++ 12 may destroy a co_await'ed call's temporaries twice.
  std::vector<std::string> keys{key};
  std::vector<std::string> args{std::to_string(rate.interval_us()),
                                std::to_string(rate.tolerance_us()), reserve};
  auto reply = co_await script.run(redis, std::move(keys), std::move(args));
  if (reply.type != Reply::Type::integer) throw Error("rate script failed: " + reply.str);
  co_return reply.integer;
}

}  // namespace cascade::redis
