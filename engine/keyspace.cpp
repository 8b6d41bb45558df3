#include "engine/keyspace.hpp"

#include "auth/key.hpp"

namespace cascade::keyspace {

std::string new_resume_token() {
  // Two record ids: 32 base62 characters from the OS CSPRNG (~190 bits).
  auto a = auth::generate_id("rs");
  auto b = auth::generate_id("x");
  return a + b.substr(2);
}

std::vector<redis::Command> write_resume(const Keys& keys, std::string_view id,
                                         const ResumeRecord& record, std::int64_t ttl_s) {
  auto key = keys.resume(id);
  std::vector<redis::Command> out;
  out.push_back(redis::cmd("DEL", key));
  out.push_back(redis::cmd("HSET", key, "token", record.token, "attempt",
                           std::to_string(record.attempt), "account", record.account, "prior",
                           record.prior_attempts));
  out.push_back(redis::cmd("EXPIRE", key, std::to_string(ttl_s)));
  return out;
}

void append_resume_fields(redis::Command& xadd, std::string_view id, std::string_view token) {
  xadd.emplace_back(job_id_field);
  xadd.emplace_back(id);
  xadd.emplace_back(resume_field);
  xadd.emplace_back(token);
}

const char* const claim_resume_script = R"lua(
local rec = redis.call('HMGET', KEYS[1], 'token', 'entry', 'attempt', 'account', 'prior')
if not rec[1] or rec[1] ~= ARGV[1] then return nil end
if rec[2] and rec[2] ~= ARGV[2] then return nil end
if not rec[2] then redis.call('HSET', KEYS[1], 'entry', ARGV[2]) end
return {rec[3] or '1', rec[4] or '', rec[5] or ''}
)lua";

}  // namespace cascade::keyspace
