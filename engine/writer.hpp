#pragma once
// The one owner of every end-of-job write: results, the results stream, dead letters,
// job retries, progress clean-up, acks. Jobs that end within one turn of the event loop
// (and while the previous batch is on the wire) share one pipeline with one multi-id XACK
// and one multi-id XDEL: Redis work per job is what bounds a whole fleet on one node.
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "engine/config.hpp"
#include "engine/keyspace.hpp"

namespace cascade {
namespace redis {
class Connection;
}

using EntryFields = std::vector<std::pair<std::string, std::string>>;

// How one stream entry ends: the value a job run returns.
struct JobEnd {
  enum class Kind {
    final,     // the job's result: SET result, XADD results (+ dead letter), ack
    retry,     // a provisional "retrying" result; the job comes back at next_due_ms
    ack_only,  // nothing to write (the job already has its result, or the entry is gone)
  };
  Kind kind = Kind::final;
  std::string entry;  // stream entry id to acknowledge and delete
  std::string id;     // job id (the original entry id, across retries)
  std::string json;   // result JSON (final or provisional)
  int status = 0;
  bool delete_progress = false;  // a progress record was written or loaded for this job
  bool delete_resume = false;    // the run was a resumed one (P:resume:<id> exists)
  // final: copy to P:dead with this reason ("" = not dead); the entry's fields go along.
  std::string dead_reason;
  // final with a dead reason, or retry: the entry's producer fields (no internal ones).
  EntryFields fields;
  // retry: when the job is due again and what its resumed run may trust.
  std::int64_t next_due_ms = 0;
  keyspace::ResumeRecord resume;
};

// The commands that write `ends` (in order), then one XACK and one XDEL of every entry,
// then the clean-ups that must follow the ack. Pure: unit-tested with literal inputs.
std::vector<redis::Command> end_commands(const keyspace::Keys& keys, const EngineConfig& config,
                                         const std::vector<const JobEnd*>& ends,
                                         std::int64_t now_ms);

class Writer {
 public:
  Writer(boost::asio::any_io_executor ex, redis::Connection& redis, const keyspace::Keys& keys,
         const EngineConfig& config);
  ~Writer();
  Writer(const Writer&) = delete;
  Writer& operator=(const Writer&) = delete;

  // Starts the writing loop (once).
  void start();
  // Completes when Redis has taken the write. A Redis outage is ridden out: the batch is
  // written again until Redis takes it (a result that already reached Redis is not
  // written twice: only its ack is repeated).
  boost::asio::awaitable<void> write(JobEnd end);
  // The loop ends once nothing is queued.
  void close();
  // Batches written and entries in them (for tests and metrics).
  std::uint64_t batches() const;
  std::uint64_t written() const;

 private:
  struct Impl;
  std::shared_ptr<Impl> impl_;
};

}  // namespace cascade
