#include "engine/usage.hpp"

#include <algorithm>

#include "redis/connection.hpp"
#include "util/time.hpp"

namespace asio = boost::asio;

namespace cascade {

void UsageCounters::add(const std::string& key_id, Kind kind) {
  if (key_id.empty()) return;
  auto& c = pending_[key_id];
  switch (kind) {
    case Kind::accepted:
      ++c.accepted;
      break;
    case Kind::delivered:
      ++c.delivered;
      break;
    case Kind::failed:
      ++c.failed;
      break;
    case Kind::rejected:
      ++c.rejected;
      break;
  }
  c.last_used = now_unix_ms();
}

namespace {

// Not a coroutine: g++ 12 rejects braced lists of string literals inside coroutines.
template <class Map>
std::vector<redis::Command> flush_commands(const Map& taken, const std::string& prefix) {
  // last_used only moves forward, whichever worker flushes last.
  static constexpr const char* kMaxLastUsed =
      "local v = tonumber(redis.call('HGET', KEYS[1], 'last_used') or 0) "
      "if tonumber(ARGV[1]) > v then redis.call('HSET', KEYS[1], 'last_used', ARGV[1]) end";
  std::vector<redis::Command> cmds;
  for (const auto& [id, c] : taken) {
    auto key = prefix + ":usage:" + id;
    for (auto [field, n] : {std::pair{"accepted", c.accepted}, std::pair{"delivered", c.delivered},
                            std::pair{"failed", c.failed}, std::pair{"rejected", c.rejected}}) {
      if (n) cmds.push_back(redis::cmd("HINCRBY", key, field, std::to_string(n)));
    }
    cmds.push_back(redis::cmd("EVAL", kMaxLastUsed, "1", key, std::to_string(c.last_used)));
  }
  return cmds;
}

}  // namespace

asio::awaitable<void> UsageCounters::flush(redis::Connection& redis, const std::string& prefix) {
  if (pending_.empty()) co_return;
  auto taken = std::move(pending_);
  pending_.clear();
  auto cmds = flush_commands(taken, prefix);
  bool failed = false;
  try {
    co_await redis.exec_batch(std::move(cmds));
  } catch (const redis::Error&) {
    failed = true;
  }
  if (failed) {
    // Put the counts back (merged with anything counted meanwhile) for the next flush.
    for (const auto& [id, c] : taken) {
      auto& p = pending_[id];
      p.accepted += c.accepted;
      p.delivered += c.delivered;
      p.failed += c.failed;
      p.rejected += c.rejected;
      p.last_used = std::max(p.last_used, c.last_used);
    }
  }
}

}  // namespace cascade
