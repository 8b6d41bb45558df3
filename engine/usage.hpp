#pragma once
// Per-API-key usage (SPEC §2): jobs accepted, delivered, failed, rejected and the last
// use, aggregated in-process and flushed to <prefix>:usage:<key id> periodically, so the
// hot path does no Redis write for it.
#include <boost/asio/awaitable.hpp>

#include <cstdint>
#include <string>
#include <unordered_map>

namespace cascade::redis {
class Connection;
}

namespace cascade {

class UsageCounters {
 public:
  enum class Kind { accepted, delivered, failed, rejected };
  void add(const std::string& key_id, Kind kind);
  bool empty() const { return pending_.empty(); }
  // Writes and clears what was counted (one pipelined round trip). On a Redis error the
  // counts are kept for the next flush.
  boost::asio::awaitable<void> flush(redis::Connection& redis, const std::string& prefix);

 private:
  struct Counts {
    std::int64_t accepted = 0, delivered = 0, failed = 0, rejected = 0, last_used = 0;
  };
  std::unordered_map<std::string, Counts> pending_;
};

}  // namespace cascade
