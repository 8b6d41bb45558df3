#pragma once
// Per-channel-key throughput limits (SPEC §3): applied by waiting before a send, never by
// failing, and shared by every worker through Redis. A GCRA (virtual scheduling) script
// keyed <prefix>:pace:<channel key id> reserves the next slot atomically and returns how
// long to wait for it: one round trip per send.
#include <boost/asio/awaitable.hpp>

#include <chrono>
#include <optional>
#include <string>
#include <string_view>

#include "channels/channel.hpp"

namespace cascade {
namespace redis {
class Connection;
}

struct PaceRate {
  double per_second = 0;  // 0: unlimited
  double burst = 1;       // sends allowed back to back (at least 1)
};

// Parses a `rate` setting: "N/s", "N/m", "N" (per second), each with an optional ":burst",
// or "0" / "unlimited". nullopt when malformed. The default burst is one second's worth.
std::optional<PaceRate> parse_rate(std::string_view text);

// The rate of a channel key: its `rate` setting, else the type's default (telegram 30/s
// per bot, waba 80/s per number, others unlimited).
PaceRate channel_rate(std::string_view type, const ChannelSettings* settings);

class Pacer {
 public:
  Pacer(redis::Connection& redis, std::string prefix);
  // Reserves the next send slot of this channel key and waits for it. Returns the time
  // waited. Fails open: if Redis cannot answer, it logs and does not wait.
  boost::asio::awaitable<std::chrono::microseconds> pace(const std::string& channel_key_id,
                                                        const PaceRate& rate);
  // The reservation alone (no waiting): the wait the script returned.
  boost::asio::awaitable<std::chrono::microseconds> reserve(const std::string& channel_key_id,
                                                           const PaceRate& rate);

 private:
  redis::Connection& redis_;
  std::string prefix_;
  std::string sha_;
};

}  // namespace cascade
