#include "auth/store.hpp"

#include <algorithm>
#include <charconv>

#include "redis/connection.hpp"
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

}  // namespace

Store::Store(redis::Connection& redis, std::string prefix)
    : redis_(redis), prefix_(std::move(prefix)) {}

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
      redis::cmd("SADD", key("account", record.account) + ":apikeys", record.id)));
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

asio::awaitable<void> Store::revoke_api_key(std::string id) {
  auto hex = co_await redis_.exec(redis::cmd("GET", key("apikey-id", id)));
  if (hex.is_nil()) throw StoreError("no API key " + id);
  for (auto& r : co_await redis_.exec_batch(
           redis::batch(redis::cmd("HSET", key("apikey", hex.str), "status", "revoked"),
                        redis::cmd("PUBLISH", events_channel(), "apikey " + hex.str))))
    check(r);
}

asio::awaitable<NewApiKey> Store::rotate_api_key(std::string id, std::chrono::milliseconds grace) {
  auto hex = co_await redis_.exec(redis::cmd("GET", key("apikey-id", id)));
  if (hex.is_nil()) throw StoreError("no API key " + id);
  auto old =
      api_key_from(fields_of(co_await redis_.exec(redis::cmd("HGETALL", key("apikey", hex.str)))));
  if (!old || old->status != "active") throw StoreError("API key " + id + " is revoked");
  auto now = now_unix_ms();
  if (old->expires_ms != 0 && now >= old->expires_ms)
    throw StoreError("API key " + id + " has expired");
  NewApiKey out;
  out.key = generate_key(KeyKind::api);
  out.record = *old;
  auto new_hex = to_hex(sha256(out.key));
  // The old key keeps working until the grace period ends (never past its own expiry);
  // with no grace it is revoked at once. Both records share the key id, so usage and
  // listing stay continuous.
  auto old_update =
      grace.count() <= 0
          ? redis::cmd("HSET", key("apikey", hex.str), "status", "revoked")
          : redis::cmd("HSET", key("apikey", hex.str), "expires",
                       std::to_string(old->expires_ms == 0
                                          ? now + grace.count()
                                          : std::min(old->expires_ms, now + grace.count())),
                       "rotated", "1");
  auto replies = co_await redis_.exec_batch(redis::batch(
      redis::cmd("HSET", key("apikey", new_hex), "id", old->id, "account", old->account, "name",
                 old->name, "scopes", join(old->scopes), "channels", join(old->channels), "status",
                 "active", "created", std::to_string(old->created_ms), "expires",
                 std::to_string(old->expires_ms), "rate", old->rate, "rotated_at",
                 std::to_string(now)),
      std::move(old_update), redis::cmd("SET", key("apikey-id", id), new_hex),
      redis::cmd("PUBLISH", events_channel(), "apikey " + hex.str)));
  for (auto& r : replies)
    check(r);
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
  redis::Command hset = redis::cmd(
      "HSET", key("chkey", hex), "id", record.id, "account", record.account, "type", record.type,
      "name", record.name, "status", record.status, "created", std::to_string(record.created_ms));
  for (const auto& [k, v] : record.settings) {
    hset.push_back("s." + k);
    hset.push_back(v);
  }
  auto replies = co_await redis_.exec_batch(
      redis::batch(std::move(hset), redis::cmd("SET", key("chkey-id", record.id), hex),
                   redis::cmd("SADD", key("account", record.account) + ":chkeys", record.id)));
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
  for (const auto& r : replies)
    out.push_back(channel_key_from(fields_of(r)));
  co_return out;
}

}  // namespace cascade::auth
