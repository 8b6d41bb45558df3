#include "engine/admission.hpp"

#include "auth/key.hpp"
#include "redis/connection.hpp"

namespace asio = boost::asio;

namespace cascade {
namespace {

const std::string* find_field(const EntryFields& fields, std::string_view name) {
  for (const auto& [k, v] : fields)
    if (k == name) return &v;
  return nullptr;
}

std::optional<std::string_view> optional_field(const EntryFields& fields, std::string_view name) {
  if (auto* v = find_field(fields, name)) return std::string_view(*v);
  return std::nullopt;
}

Refused refuse(const std::string& id, const auth::Verdict& v, std::string key_id,
               std::string account) {
  Refused r;
  r.result = Result::rejected(id, v.status, v.error, v.field);
  r.key_id = std::move(key_id);
  r.result.retry_after = v.retry_after;
  r.result.account = std::move(account);
  return r;
}

Refused refuse(const std::string& id, int status, std::string error, std::string field,
               std::string key_id, std::string account) {
  Refused r;
  r.result = Result::rejected(id, status, std::move(error), std::move(field));
  r.key_id = std::move(key_id);
  r.result.account = std::move(account);
  return r;
}

}  // namespace

bool valid_idempotency_key(std::string_view k) {
  if (k.empty() || k.size() > 255) return false;
  for (unsigned char c : k)
    if (c < 0x20 || c > 0x7e) return false;
  return true;
}

asio::awaitable<Admission> admit(AdmissionContext ctx, const std::string& id,
                                 const EntryFields& fields, const std::string& resume_account) {
  auto* body = find_field(fields, "body");
  if (!body) {
    Refused r;
    r.result = Result::rejected(id, 400, "Invalid request: body is missing", "body");
    r.dead = true;
    co_return r;
  }
  auto who = co_await ctx.verifier.authenticate(optional_field(fields, "authorization"),
                                                optional_field(fields, "x-api-key"));
  if (auto* v = std::get_if<auth::Verdict>(&who)) co_return refuse(id, *v, v->key_id, v->account);
  auto& principal = std::get<auth::Principal>(who);
  const auto& key_id = principal.key.id;
  const auto& account = principal.account.id;
  if (!resume_account.empty() && resume_account != account)
    co_return refuse(id, 403, "API key does not authorize this job", {}, key_id, account);
  auto parsed = parse_job(*body, ctx.config.limits);
  if (auto* err = std::get_if<JobError>(&parsed)) {
    auto r = refuse(id, 400, err->message(), err->field, key_id, account);
    // A body that cannot be read at all (not a JSON object, or over the size limit) also
    // goes to the dead letters, where an operator can look at it.
    r.dead = err->unreadable || err->field.empty();
    co_return r;
  }
  auto idempotency_key = optional_field(fields, "idempotency-key");
  if (idempotency_key && !valid_idempotency_key(*idempotency_key))
    co_return refuse(id, 400,
                     "Invalid request: idempotency-key must be 1 to 255 printable characters",
                     "idempotency-key", key_id, account);
  Admitted admitted;
  admitted.job = std::move(std::get<Job>(parsed));
  admitted.principal = std::move(principal);
  std::vector<auth::ChannelToken> tokens;
  tokens.reserve(admitted.job.channels.size());
  for (const auto& use : admitted.job.channels)
    tokens.push_back({use.channel, use.token});
  auto granted = co_await ctx.verifier.authorize_channels(admitted.principal, tokens);
  if (auto* v = std::get_if<auth::Verdict>(&granted))
    co_return refuse(id, *v, admitted.principal.key.id, admitted.principal.account.id);
  admitted.keys = std::move(std::get<std::vector<auth::ChannelKey>>(granted));
  // Idempotency (SPEC §1): the first job of the account with this key claims it for 24 h;
  // a later one (another id) is a duplicate and is not sent. A re-run of the claiming job
  // finds its own id and goes on. Claimed last, so a rejected job does not use it up.
  if (idempotency_key) {
    auto claim_key = ctx.keys.idempotency(admitted.principal.account.id,
                                          auth::to_hex(auth::sha256(*idempotency_key)));
    auto claimed = co_await ctx.redis.exec(redis::cmd(
        "SET", claim_key, id, "NX", "EX", std::to_string(ctx.config.idempotency_ttl.count())));
    if (claimed.is_error()) throw redis::Error("idempotency claim failed: " + claimed.str);
    if (claimed.is_nil()) {
      auto owner = co_await ctx.redis.exec(redis::cmd("GET", claim_key));
      if (!owner.is_nil() && !owner.is_error() && owner.str != id) {
        Refused r;
        r.duplicate = true;
        r.result.status = 409;
        r.result.state = "duplicate";
        r.result.duplicate_of = owner.str;
        r.result.account = admitted.principal.account.id;
        r.result.metadata_json = admitted.job.metadata_json;
        co_return r;
      }
    }
  }
  co_return admitted;
}

}  // namespace cascade
