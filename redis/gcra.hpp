#pragma once
// The generic cell rate algorithm kept in Redis, shared by every worker: one EVALSHA
// per decision, Redis's clock (TIME), so workers' clocks do not matter. API key rate
// limits use it to reject; channel key pacing uses it to reserve a slot and wait.
#include <boost/asio/awaitable.hpp>

#include <cstdint>
#include <string>

#include "util/rate.hpp"

namespace cascade::redis {

class Connection;

enum class GcraMode {
  limit,    // over the limit: take nothing and say how long until allowed
  reserve,  // always take the next slot and say how long until it comes
};

// Microseconds to wait (0: allowed now). `rate` must not be unlimited. Throws
// redis::Error when Redis cannot answer.
boost::asio::awaitable<std::int64_t> gcra(Connection& redis, const std::string& key,
                                          const Rate& rate, GcraMode mode);

}  // namespace cascade::redis
