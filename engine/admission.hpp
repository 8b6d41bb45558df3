#pragma once
// Admission: the verdicts of SPEC §2 (1–9) and the idempotency key, from a stream entry's
// fields to an admitted job or a refusal. Nothing is sent and no usage is counted here:
// the runner counts from the value this returns.
#include <boost/asio/awaitable.hpp>

#include <string>
#include <variant>
#include <vector>

#include "auth/verifier.hpp"
#include "engine/config.hpp"
#include "engine/job.hpp"
#include "engine/keyspace.hpp"
#include "engine/result.hpp"
#include "engine/writer.hpp"

namespace cascade {
namespace redis {
class Connection;
}

struct Admitted {
  Job job;
  auth::Principal principal;
  std::vector<auth::ChannelKey> keys;  // in the order of job.channels
};

struct Refused {
  Result result;           // rejected (4xx) or duplicate (409)
  std::string key_id;      // the API key, when identified: its usage counts a rejection
  bool dead = false;       // unreadable: also copied to the dead letters
  bool duplicate = false;  // not a rejection: an idempotency duplicate
};

using Admission = std::variant<Admitted, Refused>;

// The services admission uses (owned by the engine's shard).
struct AdmissionContext {
  auth::Verifier& verifier;
  redis::Connection& redis;
  const keyspace::Keys& keys;
  const EngineConfig& config;
};

// SPEC §1: 1–255 printable ASCII characters.
bool valid_idempotency_key(std::string_view key);

// `resume_account`: for a resumed job, the account recorded when it was put back ("" when
// not resumed or unknown); a job is only resumed under the account that owns it.
// Throws redis::Error when Redis cannot answer (nothing was sent: safe to run again).
boost::asio::awaitable<Admission> admit(AdmissionContext ctx, const std::string& id,
                                        const EntryFields& fields,
                                        const std::string& resume_account);

}  // namespace cascade
