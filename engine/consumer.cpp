// The consumer side of a shard: reading with back-pressure, own pending entries,
// reclaiming dead workers' entries, the heartbeat that keeps running entries ours, and
// the retry mover.
#include <spdlog/spdlog.h>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <algorithm>

#include "engine/shard.hpp"
#include "redis/script.hpp"
#include "util/time.hpp"

namespace asio = boost::asio;

namespace cascade {
namespace {

// KEYS[1] = <prefix>:retry (zset: job id by due time, unix ms), KEYS[2] = <prefix>:jobs;
// ARGV[1] = now (ms), ARGV[2] = at most this many, ARGV[3] = "<prefix>:retry:" (the hash of
// the job's entry fields). Moves due jobs back onto the stream; returns how many.
constexpr const char* kMoveDueScript = R"lua(
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
local moved = 0
for _, id in ipairs(due) do
  redis.call('ZREM', KEYS[1], id)
  local fields = redis.call('HGETALL', ARGV[3] .. id)
  if #fields > 0 then
    redis.call('XADD', KEYS[2], '*', unpack(fields))
    redis.call('DEL', ARGV[3] .. id)
    moved = moved + 1
  end
end
return moved
)lua";

}  // namespace

asio::awaitable<void> Shard::ensure_group() {
  auto r = co_await commands.exec(
      redis::cmd("XGROUP", "CREATE", keys.jobs(), config.group, "0", "MKSTREAM"));
  if (r.is_error() && r.str.rfind("BUSYGROUP", 0) != 0)
    throw redis::Error("XGROUP CREATE failed: " + r.str);
}

asio::awaitable<void> Shard::consume(std::shared_ptr<Shard> self) {
  auto backoff = std::chrono::milliseconds(100);
  bool group_ready = false;
  bool failed = false;
  // This consumer's own pending entries run first: at start (a restarted worker with a
  // fixed --consumer name), and after every Redis failure (a read whose reply was lost
  // leaves entries pending here). Entries running in this process are skipped.
  bool scan_pending = true;
  std::string pending_cursor = "0";
  const auto jobs_key = self->keys.jobs();
  while (!self->stopping) {
    try {
      if (!group_ready) {
        co_await self->ensure_group();
        group_ready = true;
        spdlog::info("consuming {} as {}/{} on redis {}", jobs_key, self->config.group,
                     self->config.consumer, self->redis_cfg.describe());
      }
      // Back-pressure: ask for no more entries than there are free slots.
      while (self->in_flight >= self->config.concurrency && !self->stopping) {
        self->slot_signal.expires_at(asio::steady_timer::time_point::max());
        co_await self->slot_signal.async_wait(asio::as_tuple(asio::use_awaitable));
      }
      if (self->stopping) break;
      auto free_slots = self->config.concurrency - self->in_flight;
      // Built in a named variable: g++ 12 destroys a conditional's temporary twice when
      // it is an argument of a co_await'ed call.
      redis::Command read = redis::cmd("XREADGROUP", "GROUP", self->config.group,
                                       self->config.consumer, "COUNT", std::to_string(free_slots));
      if (!scan_pending) {
        read.push_back("BLOCK");
        read.push_back(std::to_string(self->config.block.count()));
      }
      read.push_back("STREAMS");
      read.push_back(jobs_key);
      read.push_back(scan_pending ? pending_cursor : std::string(">"));
      auto reply = co_await self->reader.exec(std::move(read),
                                              self->config.block + self->redis_cfg.request_timeout);
      if (reply.is_error()) {
        // NOGROUP after a FLUSHALL or a deleted stream: create it again.
        if (reply.str.rfind("NOGROUP", 0) == 0) {
          group_ready = false;
          continue;
        }
        throw redis::Error("XREADGROUP failed: " + reply.str);
      }
      backoff = std::chrono::milliseconds(100);
      // Ready once a read succeeded (not while a retry is under way: /readyz).
      self->counters.redis_ready = true;
      auto last = self->dispatch(reply, scan_pending);
      if (scan_pending) {
        if (last.empty()) {
          scan_pending = false;
          pending_cursor = "0";
        } else {
          pending_cursor = last;
        }
      }
    } catch (const redis::Error& e) {
      if (self->stopping) break;
      self->counters.redis_ready = false;
      spdlog::warn("redis unavailable ({}); retrying in ~{} ms", e.what(), backoff.count());
      failed = true;
    }
    if (failed) {
      // co_await is not allowed inside a catch handler: back off here.
      failed = false;
      scan_pending = true;
      pending_cursor = "0";
      co_await pause(self->io, self->jittered(backoff));
      backoff = std::min(backoff * 2, std::chrono::milliseconds(5000));
    }
  }
}

// Crash recovery: entries pending longer than reclaim_idle (their worker died) are claimed
// with XAUTOCLAIM and run here, within the free slots.
asio::awaitable<void> Shard::reclaim_loop(std::shared_ptr<Shard> self) {
  auto every = self->config.reclaim_interval;
  if (every.count() <= 0)
    every = std::clamp(std::chrono::milliseconds(self->config.reclaim_idle / 2),
                       std::chrono::milliseconds(50), std::chrono::milliseconds(10'000));
  std::string cursor = "0-0";
  while (!self->stopping) {
    co_await pause(self->io, self->jittered(every));
    bool failed = false;
    try {
      while (!self->stopping && self->in_flight < self->config.concurrency) {
        auto free_slots = self->config.concurrency - self->in_flight;
        auto r = co_await self->commands.exec(
            redis::cmd("XAUTOCLAIM", self->keys.jobs(), self->config.group, self->config.consumer,
                       std::to_string(self->config.reclaim_idle.count()), cursor, "COUNT",
                       std::to_string(free_slots)));
        if (r.is_error() || !r.is_array() || r.elements.size() < 2) break;  // NOGROUP: consumer
        cursor = r.elements[0].str;
        auto before = self->in_flight;
        self->dispatch_entries(r.elements[1], true);
        if (self->in_flight > before) {
          spdlog::info("reclaimed {} jobs left pending by other workers", self->in_flight - before);
          self->counters.reclaimed += self->in_flight - before;
        }
        if (cursor == "0-0" || cursor.empty()) {
          cursor = "0-0";
          break;
        }
      }
    } catch (const redis::Error&) {
      failed = true;  // the consumer logs Redis outages
    }
    if (failed) cursor = "0-0";
  }
}

// Jobs may legitimately run longer than reclaim_idle (pacing waits, job retries inside a
// slow provider): every reclaim_idle / 4 the worker re-claims its own running entries
// (XCLAIM ... JUSTID, which resets their idle time), so only a dead worker's entries ever
// reach reclaim_idle. MIN-IDLE of half the period keeps it from taking back an entry
// another worker has just claimed.
asio::awaitable<void> Shard::heartbeat(std::shared_ptr<Shard> self) {
  auto every = std::max(std::chrono::milliseconds(self->config.reclaim_idle / 4),
                        std::chrono::milliseconds(10));
  while (!self->stopping) {
    co_await pause(self->io, every);
    if (self->stopping || self->running.empty()) continue;
    auto c = redis::cmd("XCLAIM", self->keys.jobs(), self->config.group, self->config.consumer,
                        std::to_string(every.count() / 2));
    c.insert(c.end(), self->running.begin(), self->running.end());
    c.push_back("JUSTID");
    try {
      co_await self->commands.exec(std::move(c));
    } catch (const redis::Error&) {
      // the consumer logs Redis outages
    }
  }
}

// Moves due job retries from <prefix>:retry back onto the jobs stream. Atomic in Redis
// (one script), so two workers never both move one job.
asio::awaitable<void> Shard::retry_mover(std::shared_ptr<Shard> self) {
  while (!self->stopping) {
    co_await pause(self->io, self->config.retry_poll);
    if (self->stopping) break;
    try {
      for (;;) {
        static const redis::Script move_due(kMoveDueScript);
        std::vector<std::string> keys{self->keys.retry_due(), self->keys.jobs()};
        std::vector<std::string> args{std::to_string(now_unix_ms()), "100",
                                      self->keys.retry_fields_prefix()};
        auto r = co_await move_due.run(self->commands, std::move(keys), std::move(args));
        if (r.is_error()) {
          spdlog::warn("moving due retries failed: {}", r.str);
          break;
        }
        if (r.integer > 0) spdlog::debug("moved {} due job retries", r.integer);
        if (r.integer < 100) break;
      }
    } catch (const redis::Error&) {
      // the consumer logs Redis outages
    }
  }
}

// reply: [[stream, [[id, [k, v, ...]], ...]]]. Returns the last entry id seen.
std::string Shard::dispatch(redis::Reply& reply, bool recovered) {
  std::string last;
  if (!reply.is_array()) return last;  // nil: BLOCK timed out
  for (auto& stream : reply.elements) {
    if (stream.elements.size() < 2) continue;
    auto l = dispatch_entries(stream.elements[1], recovered);
    if (!l.empty()) last = std::move(l);
  }
  return last;
}

// entries: [[id, [k, v, ...] | nil], ...]. Returns the last entry id seen.
std::string Shard::dispatch_entries(redis::Reply& entries, bool recovered) {
  std::string last;
  for (auto& entry : entries.elements) {
    if (entry.elements.empty()) continue;
    const auto& id = entry.elements[0].str;
    last = id;
    if (running.count(id)) continue;  // already running here (a long job)
    // No fields: pending, but deleted from the stream (an entry always has a field). The
    // run only acknowledges it, through the writer like every other end of an entry.
    EntryFields fields;
    if (entry.elements.size() >= 2 && entry.elements[1].is_array()) {
      // Moved out of the reply: the body is not copied once more per job.
      auto& kv = entry.elements[1].elements;
      fields.reserve(kv.size() / 2);
      for (std::size_t i = 0; i + 1 < kv.size(); i += 2)
        fields.emplace_back(std::move(kv[i].str), std::move(kv[i + 1].str));
    }
    running.insert(id);
    ++in_flight;
    counters.in_flight = in_flight;
    asio::co_spawn(io, run_job(shared_from_this(), id, std::move(fields), recovered),
                   [self = shared_from_this(), id](std::exception_ptr e) {
                     if (e) {
                       try {
                         std::rethrow_exception(e);
                       } catch (const std::exception& ex) {
                         spdlog::error("job coroutine failed: {}", ex.what());
                       }
                     }
                     self->job_finished(id);
                   });
  }
  return last;
}

void Shard::job_finished(const std::string& entry) {
  running.erase(entry);
  --in_flight;
  counters.in_flight = in_flight;
  publish_auth_counters();
  slot_signal.cancel();
  if (stopping && in_flight == 0) drained_signal.cancel();
}

}  // namespace cascade
