#pragma once
// The one owner of Cascade's job-state Redis key names and internal entry fields. The
// engine and cascadectl both build their keys and commands here, so the protocol between
// them (a dead letter put back on the stream, a retry moved back) is written once.
//
// Layout (P = prefix; the auth records are auth/store.hpp's):
//   P:jobs              STREAM  producers' entries (consumer group on it)
//   P:results           STREAM  one entry per finished job (MAXLEN ~)
//   P:result:<id>       STRING  the job's result JSON (final, or provisional "retrying")
//   P:progress:<id>     HASH    channel -> provider id, delivered by an unfinished run
//   P:retry             ZSET    job ids by due time (unix ms)
//   P:retry:<id>        HASH    the entry fields the retry mover puts back on the stream
//   P:resume:<id>       HASH    token attempt account prior [entry]: what a resumed run
//                               may trust (never read from the entry itself)
//   P:idem:<account>:<sha256 hex of the idempotency key>  STRING  the claiming job id
//   P:dead              STREAM  dead letters
//
// Internal entry fields: an entry carrying `cascade-job-id` and `cascade-resume` is a
// resumed job only when the token matches P:resume:<id> (random, written by the engine or
// cascadectl, claimed by exactly one stream entry). Every other `cascade-*` field, and
// these two when the token does not match, is dropped.
#include <string>
#include <string_view>
#include <vector>

#include "redis/reply.hpp"

namespace cascade::keyspace {

inline constexpr std::string_view internal_prefix = "cascade-";
inline constexpr std::string_view job_id_field = "cascade-job-id";
inline constexpr std::string_view resume_field = "cascade-resume";

class Keys {
 public:
  explicit Keys(std::string prefix) : prefix_(std::move(prefix)) {}
  const std::string& prefix() const { return prefix_; }

  std::string jobs() const { return prefix_ + ":jobs"; }
  std::string results() const { return prefix_ + ":results"; }
  std::string dead() const { return prefix_ + ":dead"; }
  std::string retry_due() const { return prefix_ + ":retry"; }
  std::string retry_fields_prefix() const { return prefix_ + ":retry:"; }
  std::string result(std::string_view id) const { return join("result", id); }
  std::string progress(std::string_view id) const { return join("progress", id); }
  std::string retry_fields(std::string_view id) const { return join("retry", id); }
  std::string resume(std::string_view id) const { return join("resume", id); }
  std::string idempotency(std::string_view account, std::string_view key_hex) const {
    return join("idem", account) + ":" + std::string(key_hex);
  }

 private:
  std::string join(std::string_view kind, std::string_view id) const {
    std::string k;
    k.reserve(prefix_.size() + kind.size() + id.size() + 2);
    k.append(prefix_).append(":").append(kind).append(":").append(id);
    return k;
  }
  std::string prefix_;
};

// A fresh resume token (random, from the OS CSPRNG).
std::string new_resume_token();

// What a resumed run trusts about its job: written beside the job when it is put back.
struct ResumeRecord {
  std::string token;
  int attempt = 1;             // the job_attempt the resumed run is
  std::string account;         // the account that owns the job ("" when never known)
  std::string prior_attempts;  // earlier attempts' JSON objects, ','-joined
};

// Commands that (re)write P:resume:<id>, kept for `ttl_s` seconds.
std::vector<redis::Command> write_resume(const Keys& keys, std::string_view id,
                                         const ResumeRecord& record, std::int64_t ttl_s);

// The two internal fields that make an entry resume job `id` with `token`.
void append_resume_fields(redis::Command& xadd, std::string_view id, std::string_view token);

// Claims P:resume:<id> for the stream entry `entry` when `token` matches and no other entry
// claimed it. KEYS[1] = P:resume:<id>; ARGV = token, entry. Returns nil, or
// [attempt, account, prior].
extern const char* const claim_resume_script;

}  // namespace cascade::keyspace
