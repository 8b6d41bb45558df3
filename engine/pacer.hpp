#pragma once
// Per-channel-key throughput limits (SPEC §3): applied by waiting before a send, never by
// failing, and shared by every worker through Redis: redis::gcra in reserve mode, keyed
// <prefix>:pace:<channel key id>, takes the next slot atomically and says how long to wait
// for it: one round trip per send.
#include <boost/asio/awaitable.hpp>

#include <chrono>
#include <optional>
#include <string>
#include <string_view>

#include "channels/channel.hpp"
#include "util/rate.hpp"

namespace cascade {
namespace redis {
class Connection;
}

// The rate of a channel key: its `rate` setting, else the type's default (telegram 30/s
// per bot, waba 80/s per number, others unlimited).
Rate channel_rate(std::string_view type, const ChannelSettings* settings);

class Pacer {
 public:
  Pacer(redis::Connection& redis, std::string prefix);
  // Reserves the next send slot of this channel key and waits for it. Returns the time
  // waited. Fails open: if Redis cannot answer, it logs and does not wait.
  boost::asio::awaitable<std::chrono::microseconds> pace(const std::string& channel_key_id,
                                                         const Rate& rate);
  // The reservation alone (no waiting): the wait the script returned.
  boost::asio::awaitable<std::chrono::microseconds> reserve(const std::string& channel_key_id,
                                                            const Rate& rate);

 private:
  redis::Connection& redis_;
  std::string prefix_;
};

}  // namespace cascade
