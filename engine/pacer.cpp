#include "engine/pacer.hpp"

#include <spdlog/spdlog.h>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <charconv>
#include <cmath>

#include "redis/connection.hpp"
#include "redis/gcra.hpp"

namespace asio = boost::asio;

namespace cascade {
Rate channel_rate(std::string_view type, const ChannelSettings* settings) {
  if (settings) {
    if (auto it = settings->find("rate"); it != settings->end()) {
      if (auto r = parse_rate(it->second)) return *r;
      spdlog::warn("ignoring malformed rate setting of a {} channel key", type);
    }
  }
  if (type == "telegram") return Rate{30, 30};
  if (type == "waba") return Rate{80, 80};
  return Rate{};
}

Pacer::Pacer(redis::Connection& redis, std::string prefix)
    : redis_(redis), prefix_(std::move(prefix)) {}

asio::awaitable<std::chrono::microseconds> Pacer::reserve(const std::string& channel_key_id,
                                                          const Rate& rate) {
  using std::chrono::microseconds;
  if (rate.unlimited() || channel_key_id.empty()) co_return microseconds(0);
  std::int64_t wait = 0;
  try {
    wait = co_await redis::gcra(redis_, prefix_ + ":pace:" + channel_key_id, rate,
                                redis::GcraMode::reserve);
  } catch (const redis::Error& e) {
    // Fail open: a pacing outage must not stop delivery.
    spdlog::warn("pacing unavailable ({}); sending without waiting", e.what());
  }
  co_return microseconds(wait);
}

asio::awaitable<std::chrono::microseconds> Pacer::pace(const std::string& channel_key_id,
                                                       const Rate& rate) {
  auto wait = co_await reserve(channel_key_id, rate);
  if (wait.count() > 0) {
    asio::steady_timer t(co_await asio::this_coro::executor);
    t.expires_after(wait);
    co_await t.async_wait(asio::as_tuple(asio::use_awaitable));
  }
  co_return wait;
}

}  // namespace cascade
