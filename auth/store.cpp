#include "auth/store.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <charconv>

#include "redis/connection.hpp"
#include "redis/script.hpp"
#include "util/time.hpp"

namespace asio = boost::asio;

namespace cascade::auth {

bool ApiKey::has_scope(std::string_view scope) const {
  return std::any_of(scopes.begin(), scopes.end(),
                     [&](const std::string& s) { return s == scope || s == "admin"; });
}

namespace {

std::string join(const std::vector<std::string>& v) {
  std::string out;
  for (const auto& s : v) {
    if (!out.empty()) out += ',';
    out += s;
  }
  return out;
}

std::vector<std::string> split(std::string_view s) {
  std::vector<std::string> out;
  while (!s.empty()) {
    auto comma = s.find(',');
    auto part = s.substr(0, comma);
    if (!part.empty()) out.emplace_back(part);
    if (comma == std::string_view::npos) break;
    s.remove_prefix(comma + 1);
  }
  return out;
}

std::int64_t to_int(std::string_view s) {
  std::int64_t v = 0;
  std::from_chars(s.data(), s.data() + s.size(), v);
  return v;
}

using Fields = std::vector<std::pair<std::string, std::string>>;

Fields fields_of(const redis::Reply& r) {
  if (r.is_error()) throw redis::Error("redis: " + r.str);
  Fields out;
  for (std::size_t i = 0; i + 1 < r.elements.size(); i += 2)
    out.emplace_back(r.elements[i].str, r.elements[i + 1].str);
  return out;
}

std::optional<Account> account_from(std::string id, const Fields& f) {
  if (f.empty()) return std::nullopt;
  Account a;
  a.id = std::move(id);
  for (const auto& [k, v] : f) {
    if (k == "name")
      a.name = v;
    else if (k == "status")
      a.status = v;
    else if (k == "created")
      a.created_ms = to_int(v);
  }
  return a;
}

std::optional<ApiKey> api_key_from(const Fields& f) {
  if (f.empty()) return std::nullopt;
  ApiKey k;
  for (const auto& [n, v] : f) {
    if (n == "id")
      k.id = v;
    else if (n == "account")
      k.account = v;
    else if (n == "name")
      k.name = v;
    else if (n == "scopes")
      k.scopes = split(v);
    else if (n == "channels")
      k.channels = split(v);
    else if (n == "status")
      k.status = v;
    else if (n == "created")
      k.created_ms = to_int(v);
    else if (n == "expires")
      k.expires_ms = to_int(v);
    else if (n == "rate")
      k.rate = v;
  }
  return k;
}

std::optional<ChannelKey> channel_key_from(const Fields& f) {
  if (f.empty()) return std::nullopt;
  ChannelKey k;
  for (const auto& [n, v] : f) {
    if (n == "id")
      k.id = v;
    else if (n == "account")
      k.account = v;
    else if (n == "type")
      k.type = v;
    else if (n == "name")
      k.name = v;
    else if (n == "status")
      k.status = v;
    else if (n == "created")
      k.created_ms = to_int(v);
    else if (n.starts_with("s."))
      k.settings.emplace(n.substr(2), v);
  }
  return k;
}

void check(const redis::Reply& r) {
  if (r.is_error()) throw redis::Error("redis: " + r.str);
}

// A glob pattern (SCAN MATCH) that matches `s` literally.
std::string glob_escape(std::string_view s) {
  std::string out;
  for (char c : s) {
    if (c == '*' || c == '?' || c == '[' || c == ']' || c == '\\') out += '\\';
    out += c;
  }
  return out;
}

// Every secret ever issued for an API key id has its own record (P:apikey:<digest>) and
// its digest in P:apikey-digests:<id>. A status change must reach all of them at once:
// revoking only the digest P:apikey-id:<id> points to would leave a rotated key's old
// secret working through its grace period. Both scripts also take the digests of keys
// from before that set existed (ARGV tail), found by a scan, and add them to it.

// KEYS[1] P:apikey-id:<id>, KEYS[2] P:apikey-digests:<id>; ARGV[1] prefix, ARGV[2] events
// channel, ARGV[3..] older digests. Marks every record revoked and announces each digest.
const redis::Script kRevokeApiKey(R"lua(
local current = redis.call('GET', KEYS[1])
if not current then return redis.error_reply('CASCADE_NO_KEY') end
for i = 3, #ARGV do redis.call('SADD', KEYS[2], ARGV[i]) end
redis.call('SADD', KEYS[2], current)
local revoked = 0
for _, hex in ipairs(redis.call('SMEMBERS', KEYS[2])) do
  local record = ARGV[1] .. ':apikey:' .. hex
  if redis.call('EXISTS', record) == 1 then
    redis.call('HSET', record, 'status', 'revoked')
    revoked = revoked + 1
  end
  redis.call('PUBLISH', ARGV[2], 'apikey ' .. hex)
end
return revoked
)lua");

// KEYS as above; ARGV[1] prefix, ARGV[2] events channel, ARGV[3] new digest, ARGV[4] grace
// (ms), ARGV[5] now (unix ms), ARGV[6..] older digests. Refuses a revoked or expired key
// (so nothing revoked comes back); every earlier secret still active stops at now + grace
// (at once with no grace: revoked), so after a rotation only the new secret outlives the
// grace period. The new record copies the current one. Replies with the new record.
const redis::Script kRotateApiKey(R"lua(
local prefix, events = ARGV[1], ARGV[2]
local new_hex, grace, now = ARGV[3], tonumber(ARGV[4]), tonumber(ARGV[5])
local current = redis.call('GET', KEYS[1])
if not current then return redis.error_reply('CASCADE_NO_KEY') end
local fields = redis.call('HGETALL', prefix .. ':apikey:' .. current)
local f = {}
for i = 1, #fields, 2 do f[fields[i]] = fields[i + 1] end
if f['status'] ~= 'active' then return redis.error_reply('CASCADE_REVOKED') end
local expires = tonumber(f['expires'] or '0') or 0
if expires ~= 0 and now >= expires then return redis.error_reply('CASCADE_EXPIRED') end
for i = 6, #ARGV do redis.call('SADD', KEYS[2], ARGV[i]) end
redis.call('SADD', KEYS[2], current)
local cutoff = now + grace
for _, hex in ipairs(redis.call('SMEMBERS', KEYS[2])) do
  local old = prefix .. ':apikey:' .. hex
  if redis.call('HGET', old, 'status') == 'active' then
    if grace <= 0 then
      redis.call('HSET', old, 'status', 'revoked')
    else
      local e = tonumber(redis.call('HGET', old, 'expires') or '0') or 0
      if e == 0 or e > cutoff then
        redis.call('HSET', old, 'expires', string.format('%d', cutoff))
      end
      redis.call('HSET', old, 'rotated', '1')
    end
    redis.call('PUBLISH', events, 'apikey ' .. hex)
  end
end
local copy = {}
for i = 1, #fields, 2 do
  local name = fields[i]
  if name ~= 'status' and name ~= 'rotated' and name ~= 'rotated_at' then
    copy[#copy + 1] = name
    copy[#copy + 1] = fields[i + 1]
  end
end
local new_record = prefix .. ':apikey:' .. new_hex
redis.call('HSET', new_record, 'status', 'active', 'rotated_at', ARGV[5], unpack(copy))
redis.call('SET', KEYS[1], new_hex)
redis.call('SADD', KEYS[2], new_hex)
redis.call('PUBLISH', events, 'apikey ' .. new_hex)
return redis.call('HGETALL', new_record)
)lua");

// KEYS[1] P:chkey:<hex>; ARGV triples (field, value as read, new value). Replaces each
// field only if it still holds the value read: a concurrent delete or rekey wins, and a
// deleted record is never re-created as a fragment. Replies with the number replaced.
const redis::Script kResealSettings(R"lua(
local n = 0
for i = 1, #ARGV, 3 do
  if redis.call('HGET', KEYS[1], ARGV[i]) == ARGV[i + 1] then
    redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 2])
    n = n + 1
  end
end
return n
)lua");

bool has_code(const redis::Reply& r, std::string_view code) {
  return r.is_error() && r.str.find(code) != std::string::npos;
}

}  // namespace

Store::Store(redis::Connection& redis, std::string prefix, std::shared_ptr<const KeyRing> keys)
    : redis_(redis), prefix_(std::move(prefix)), keys_(std::move(keys)) {}

void Store::open_secrets(ChannelKey& k) const {
  for (auto it = k.settings.begin(); it != k.settings.end();) {
    if (!is_secret_setting(it->first)) {
      ++it;
      continue;
    }
    if (!is_sealed(it->second)) {
      // Stored before sealing existed: usable, but said once per process.
      static std::atomic<bool> warned{false};
      if (!warned.exchange(true))
        spdlog::warn(
            "channel key {} keeps its {} in plaintext in Redis (and maybe others do too): "
            "run `cascadectl channel rekey --all` to seal them",
            k.id, it->first);
      ++it;
      continue;
    }
    auto plain = keys_ ? keys_->open(it->second, secret_aad(k.id, it->first)) : std::nullopt;
    if (plain) {
      it->second = std::move(*plain);
      ++it;
      continue;
    }
    // Never sent on as it is: the channel then fails as misconfigured.
    spdlog::error(
        "channel key {}: setting {} does not open with the master key file ({}); the "
        "channel will fail until the key that sealed it is in the file",
        k.id, it->first, keys_ ? "no key matches, or it was altered" : "none given");
    it = k.settings.erase(it);
  }
}

std::string Store::events_channel() const {
  return prefix_ + ":auth-events";
}

std::string Store::key(std::string_view a, std::string_view b) const {
  std::string k = prefix_;
  k += ':';
  k += a;
  k += ':';
  k += b;
  return k;
}

asio::awaitable<Account> Store::create_account(std::string name) {
  Account a;
  a.id = generate_id("acc");
  a.name = std::move(name);
  a.status = "active";
  a.created_ms = now_unix_ms();
  auto replies = co_await redis_.exec_batch(
      redis::batch(redis::cmd("HSET", key("account", a.id), "name", a.name, "status", a.status,
                              "created", std::to_string(a.created_ms)),
                   redis::cmd("SADD", prefix_ + ":accounts", a.id)));
  for (auto& r : replies)
    check(r);
  co_return a;
}

asio::awaitable<std::optional<Account>> Store::find_account(std::string id) {
  auto r = co_await redis_.exec(redis::cmd("HGETALL", key("account", id)));
  co_return account_from(std::move(id), fields_of(r));
}

asio::awaitable<void> Store::set_account_status(std::string id, std::string status) {
  auto exists = co_await redis_.exec(redis::cmd("EXISTS", key("account", id)));
  if (exists.integer != 1) throw StoreError("no account " + id);
  for (auto& r : co_await redis_.exec_batch(
           redis::batch(redis::cmd("HSET", key("account", id), "status", status),
                        redis::cmd("PUBLISH", events_channel(), "account " + id))))
    check(r);
}

asio::awaitable<NewApiKey> Store::create_api_key(ApiKey record) {
  if (!co_await find_account(record.account)) throw StoreError("no account " + record.account);
  for (const auto& ch : record.channels) {
    auto digest = co_await redis_.exec(redis::cmd("GET", key("chkey-id", ch)));
    if (digest.is_nil()) throw StoreError("no channel key " + ch);
    auto owner = co_await redis_.exec(redis::cmd("HGET", key("chkey", digest.str), "account"));
    if (owner.str != record.account)
      throw StoreError("channel key " + ch + " belongs to another account");
  }
  NewApiKey out;
  out.key = generate_key(KeyKind::api);
  record.id = generate_id("key");
  record.status = "active";
  record.created_ms = now_unix_ms();
  auto hex = to_hex(sha256(out.key));
  auto replies = co_await redis_.exec_batch(redis::batch(
      redis::cmd("HSET", key("apikey", hex), "id", record.id, "account", record.account, "name",
                 record.name, "scopes", join(record.scopes), "channels", join(record.channels),
                 "status", record.status, "created", std::to_string(record.created_ms), "expires",
                 std::to_string(record.expires_ms), "rate", record.rate),
      redis::cmd("SET", key("apikey-id", record.id), hex),
      redis::cmd("SADD", key("apikey-digests", record.id), hex),
      redis::cmd("SADD", key("account", record.account) + ":apikeys", record.id),
      // Verifiers remember unknown digests for a moment: this one exists now.
      redis::cmd("PUBLISH", events_channel(), "apikey " + hex)));
  for (auto& r : replies)
    check(r);
  out.record = std::move(record);
  co_return out;
}

asio::awaitable<std::vector<ApiKey>> Store::list_api_keys(std::string account) {
  auto ids = co_await redis_.exec(redis::cmd("SMEMBERS", key("account", account) + ":apikeys"));
  check(ids);
  std::vector<ApiKey> out;
  for (const auto& id : ids.elements) {
    auto hex = co_await redis_.exec(redis::cmd("GET", key("apikey-id", id.str)));
    if (hex.is_nil()) continue;
    auto k = api_key_from(
        fields_of(co_await redis_.exec(redis::cmd("HGETALL", key("apikey", hex.str)))));
    if (k) out.push_back(std::move(*k));
  }
  std::sort(out.begin(), out.end(),
            [](const ApiKey& a, const ApiKey& b) { return a.created_ms < b.created_ms; });
  co_return out;
}

asio::awaitable<std::vector<std::string>> Store::unindexed_api_key_digests(std::string id) {
  auto exists = co_await redis_.exec_batch(redis::batch(
      redis::cmd("EXISTS", key("apikey-digests", id)), redis::cmd("EXISTS", key("apikey-id", id))));
  for (const auto& r : exists)
    check(r);
  // Indexed, or no such key (the script says so).
  if (exists[0].integer == 1 || exists[1].integer == 0) co_return std::vector<std::string>{};
  // A key from before the index: find its records (a rotated key has several) by their
  // id field. One pass over the API key records, once per such key.
  std::vector<std::string> found;
  auto digests = co_await all_digests("apikey");
  for (std::size_t from = 0; from < digests.size(); from += 1000) {
    std::vector<redis::Command> gets;
    for (std::size_t i = from; i < std::min(digests.size(), from + 1000); ++i)
      gets.push_back(redis::cmd("HGET", key("apikey", digests[i]), "id"));
    auto ids = co_await redis_.exec_batch(std::move(gets));
    for (std::size_t i = 0; i < ids.size(); ++i)
      if (ids[i].str == id) found.push_back(digests[from + i]);
  }
  co_return found;
}

asio::awaitable<std::vector<std::string>> Store::all_digests(std::string_view kind) {
  std::vector<std::string> out;
  auto pattern = glob_escape(prefix_) + ":" + std::string(kind) + ":*";
  auto hex_at = prefix_.size() + kind.size() + 2;
  std::string cursor = "0";
  do {
    auto page = co_await redis_.exec(redis::cmd("SCAN", cursor, "MATCH", pattern, "COUNT", "1000"));
    check(page);
    if (page.elements.size() != 2) throw redis::Error("redis: unexpected SCAN reply");
    cursor = page.elements[0].str;
    for (const auto& name : page.elements[1].elements)
      if (name.str.size() == hex_at + 64) out.push_back(name.str.substr(hex_at));
  } while (cursor != "0");
  co_return out;
}

asio::awaitable<void> Store::revoke_api_key(std::string id) {
  auto args = redis::cmd(prefix_, events_channel());
  for (auto& hex : co_await unindexed_api_key_digests(id))
    args.push_back(std::move(hex));
  auto keys = redis::cmd(key("apikey-id", id), key("apikey-digests", id));
  auto r = co_await kRevokeApiKey.run(redis_, std::move(keys), std::move(args));
  if (has_code(r, "CASCADE_NO_KEY")) throw StoreError("no API key " + id);
  check(r);
}

asio::awaitable<NewApiKey> Store::rotate_api_key(std::string id, std::chrono::milliseconds grace) {
  NewApiKey out;
  out.key = generate_key(KeyKind::api);
  auto grace_ms = std::max<std::int64_t>(grace.count(), 0);
  auto args = redis::cmd(prefix_, events_channel(), to_hex(sha256(out.key)),
                         std::to_string(grace_ms), std::to_string(now_unix_ms()));
  for (auto& hex : co_await unindexed_api_key_digests(id))
    args.push_back(std::move(hex));
  auto keys = redis::cmd(key("apikey-id", id), key("apikey-digests", id));
  auto r = co_await kRotateApiKey.run(redis_, std::move(keys), std::move(args));
  if (has_code(r, "CASCADE_NO_KEY")) throw StoreError("no API key " + id);
  if (has_code(r, "CASCADE_REVOKED")) throw StoreError("API key " + id + " is revoked");
  if (has_code(r, "CASCADE_EXPIRED")) throw StoreError("API key " + id + " has expired");
  auto record = api_key_from(fields_of(r));
  if (!record) throw redis::Error("redis: rotation returned no record");
  out.record = std::move(*record);
  co_return out;
}

asio::awaitable<std::map<std::string, std::int64_t>> Store::usage(std::string id) {
  auto r = co_await redis_.exec(redis::cmd("HGETALL", key("usage", id)));
  std::map<std::string, std::int64_t> out;
  for (const auto& [k, v] : fields_of(r))
    out[k] = to_int(v);
  co_return out;
}

asio::awaitable<NewChannelKey> Store::create_channel_key(ChannelKey record) {
  if (!co_await find_account(record.account)) throw StoreError("no account " + record.account);
  NewChannelKey out;
  out.key = generate_key(KeyKind::channel);
  record.id = generate_id("chk");
  record.status = "active";
  record.created_ms = now_unix_ms();
  auto hex = to_hex(sha256(out.key));
  bool has_secret = std::any_of(record.settings.begin(), record.settings.end(),
                                [](const auto& s) { return is_secret_setting(s.first); });
  if (has_secret && !keys_)
    throw StoreError(std::string("a master key is needed to store provider credentials: ") +
                     kMasterKeyHowTo);
  redis::Command hset = redis::cmd(
      "HSET", key("chkey", hex), "id", record.id, "account", record.account, "type", record.type,
      "name", record.name, "status", record.status, "created", std::to_string(record.created_ms));
  for (const auto& [k, v] : record.settings) {
    hset.push_back("s." + k);
    hset.push_back(is_secret_setting(k) ? keys_->seal(v, secret_aad(record.id, k)) : v);
  }
  auto replies = co_await redis_.exec_batch(
      redis::batch(std::move(hset), redis::cmd("SET", key("chkey-id", record.id), hex),
                   redis::cmd("SADD", key("account", record.account) + ":chkeys", record.id),
                   // Verifiers remember unknown digests for a moment: this one exists now.
                   redis::cmd("PUBLISH", events_channel(), "chkey " + hex)));
  for (auto& r : replies)
    check(r);
  out.record = std::move(record);
  co_return out;
}

asio::awaitable<std::vector<ChannelKey>> Store::list_channel_keys(std::string account) {
  auto ids = co_await redis_.exec(redis::cmd("SMEMBERS", key("account", account) + ":chkeys"));
  check(ids);
  std::vector<ChannelKey> out;
  for (const auto& id : ids.elements) {
    auto hex = co_await redis_.exec(redis::cmd("GET", key("chkey-id", id.str)));
    if (hex.is_nil()) continue;
    auto k = channel_key_from(
        fields_of(co_await redis_.exec(redis::cmd("HGETALL", key("chkey", hex.str)))));
    if (k) out.push_back(std::move(*k));
  }
  std::sort(out.begin(), out.end(),
            [](const ChannelKey& a, const ChannelKey& b) { return a.created_ms < b.created_ms; });
  co_return out;
}

asio::awaitable<void> Store::set_channel_status(std::string id, std::string status) {
  auto hex = co_await redis_.exec(redis::cmd("GET", key("chkey-id", id)));
  if (hex.is_nil()) throw StoreError("no channel key " + id);
  for (auto& r : co_await redis_.exec_batch(
           redis::batch(redis::cmd("HSET", key("chkey", hex.str), "status", status),
                        redis::cmd("PUBLISH", events_channel(), "chkey " + hex.str))))
    check(r);
}

asio::awaitable<void> Store::delete_channel_key(std::string id) {
  auto hex = co_await redis_.exec(redis::cmd("GET", key("chkey-id", id)));
  if (hex.is_nil()) throw StoreError("no channel key " + id);
  auto owner = co_await redis_.exec(redis::cmd("HGET", key("chkey", hex.str), "account"));
  auto replies = co_await redis_.exec_batch(
      redis::batch(redis::cmd("DEL", key("chkey", hex.str)), redis::cmd("DEL", key("chkey-id", id)),
                   redis::cmd("SREM", key("account", owner.str) + ":chkeys", id),
                   redis::cmd("PUBLISH", events_channel(), "chkey " + hex.str)));
  for (auto& r : replies)
    check(r);
}

asio::awaitable<std::size_t> Store::rekey_record(std::string hex) {
  auto name = key("chkey", hex);
  auto fields = fields_of(co_await redis_.exec(redis::cmd("HGETALL", name)));
  std::string id;
  for (const auto& [n, v] : fields)
    if (n == "id") id = v;
  if (id.empty()) co_return 0;  // deleted meanwhile
  auto args = redis::cmd();
  for (const auto& [n, v] : fields) {
    if (!n.starts_with("s.") || !is_secret_setting(n.substr(2))) continue;
    if (keys_->sealed_under_current(v)) continue;
    auto aad = secret_aad(id, n.substr(2));
    auto plain = is_sealed(v) ? keys_->open(v, aad) : std::optional<std::string>(v);
    if (!plain)
      throw StoreError("channel key " + id + ": " + n.substr(2) +
                       " does not open with any key of the master key file");
    args.push_back(n);
    args.push_back(v);
    args.push_back(keys_->seal(*plain, aad));
  }
  if (args.empty()) co_return 0;
  auto r = co_await kResealSettings.run(redis_, redis::cmd(name), std::move(args));
  check(r);
  co_return static_cast<std::size_t>(r.integer);
}

asio::awaitable<std::size_t> Store::rekey_channel_keys(std::string id) {
  if (!keys_) throw StoreError(std::string("rekey needs the master key file: ") + kMasterKeyHowTo);
  if (!id.empty()) {
    auto hex = co_await redis_.exec(redis::cmd("GET", key("chkey-id", id)));
    if (hex.is_nil()) throw StoreError("no channel key " + id);
    check(hex);
    co_return co_await rekey_record(hex.str);
  }
  std::size_t resealed = 0;
  for (const auto& hex : co_await all_digests("chkey"))
    resealed += co_await rekey_record(hex);
  co_return resealed;
}

asio::awaitable<std::optional<ApiKey>> Store::find_api_key(const Digest& digest) {
  auto r = co_await redis_.exec(redis::cmd("HGETALL", key("apikey", to_hex(digest))));
  co_return api_key_from(fields_of(r));
}

asio::awaitable<std::vector<std::optional<ChannelKey>>> Store::find_channel_keys(
    const std::vector<Digest>& digests) {
  std::vector<redis::Command> cmds;
  for (const auto& d : digests)
    cmds.push_back(redis::cmd("HGETALL", key("chkey", to_hex(d))));
  auto replies = co_await redis_.exec_batch(std::move(cmds));
  std::vector<std::optional<ChannelKey>> out;
  for (const auto& r : replies) {
    out.push_back(channel_key_from(fields_of(r)));
    if (out.back()) open_secrets(*out.back());
  }
  co_return out;
}

}  // namespace cascade::auth
