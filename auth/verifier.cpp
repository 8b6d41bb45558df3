#include "auth/verifier.hpp"

#include <algorithm>
#include <cmath>

#include "auth/credentials.hpp"
#include "auth/key.hpp"
#include "auth/store.hpp"
#include "redis/connection.hpp"
#include "redis/gcra.hpp"
#include "util/time.hpp"

namespace asio = boost::asio;
using Clock = std::chrono::steady_clock;

namespace cascade::auth {
namespace {

std::string raw(const Digest& d) {
  return std::string(reinterpret_cast<const char*>(d.data()), d.size());
}

std::optional<Digest> from_hex(std::string_view hex) {
  if (hex.size() != 64) return std::nullopt;
  Digest d{};
  auto nib = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
  };
  for (std::size_t i = 0; i < 32; ++i) {
    int hi = nib(hex[2 * i]), lo = nib(hex[2 * i + 1]);
    if (hi < 0 || lo < 0) return std::nullopt;
    d[i] = static_cast<unsigned char>(hi * 16 + lo);
  }
  return d;
}

Verdict identified(Verdict v, const ApiKey& key) {
  v.key_id = key.id;
  v.account = key.account;
  return v;
}

}  // namespace

Verifier::Verifier(Store& store, redis::Connection& redis, VerifierConfig config)
    : store_(store), redis_(redis), config_(config) {}

bool Verifier::fresh(Clock::time_point fetched) const {
  return live_ && Clock::now() - fetched < config_.cache_max_age;
}

void Verifier::set_cache_live(bool live) {
  // Whatever happened while the subscription was down was not heard: forget it all.
  api_cache_.clear();
  channel_cache_.clear();
  live_ = live;
}

void Verifier::invalidate(std::string_view message) {
  ++stats_.invalidations;
  auto space = message.find(' ');
  auto kind = message.substr(0, space);
  auto arg = space == std::string_view::npos ? std::string_view{} : message.substr(space + 1);
  if (kind == "apikey") {
    if (auto d = from_hex(arg)) api_cache_.erase(raw(*d));
  } else if (kind == "chkey") {
    if (auto d = from_hex(arg)) channel_cache_.erase(raw(*d));
  } else if (kind == "account") {
    std::erase_if(api_cache_, [&](const auto& e) { return e.second.account.id == arg; });
    std::erase_if(channel_cache_, [&](const auto& e) { return e.second.key.account == arg; });
  } else {
    api_cache_.clear();
    channel_cache_.clear();
  }
}

asio::awaitable<std::variant<Principal, Verdict>> Verifier::authenticate(
    std::optional<std::string_view> authorization, std::optional<std::string_view> x_api_key) {
  auto cred = extract_api_key(authorization, x_api_key);
  if (auto* err = std::get_if<CredentialError>(&cred)) {
    if (*err == CredentialError::missing) co_return Verdict::reject(401, "API key is missing");
    co_return Verdict::reject(400, "Invalid request: conflicting credentials");
  }
  const auto& key = std::get<std::string>(cred);
  // Garbage fails here, before any Redis I/O.
  if (!valid_key_format(key, KeyKind::api)) co_return Verdict::reject(401, "Invalid API key");
  auto digest = sha256(key);
  auto cache_key = raw(digest);
  Principal principal;
  auto hit = api_cache_.find(cache_key);
  if (hit != api_cache_.end() && fresh(hit->second.fetched)) {
    ++stats_.cache_hits;
    principal.key = hit->second.key;
    principal.account = hit->second.account;
  } else {
    ++stats_.cache_misses;
    bool was_live = live_;
    auto record = co_await store_.find_api_key(digest);
    if (!record) co_return Verdict::reject(401, "Invalid API key");
    auto account = co_await store_.find_account(record->account);
    if (!account) co_return Verdict::reject(401, "Invalid API key");
    principal.key = std::move(*record);
    principal.account = std::move(*account);
    // Only cache what was read while the subscription was live throughout: an
    // invalidation missed in between would otherwise stick.
    if (was_live && live_ && api_cache_.size() < config_.cache_max_entries)
      api_cache_[cache_key] = ApiEntry{principal.key, principal.account, Clock::now()};
  }
  const auto& rec = principal.key;
  if (rec.status != "active") co_return Verdict::reject(401, "Invalid API key");
  if (rec.expires_ms != 0 && now_unix_ms() >= rec.expires_ms)
    co_return Verdict::reject(401, "Invalid API key");
  if (!rec.has_scope("send"))
    co_return identified(Verdict::reject(403, "API key does not have the send permission"), rec);
  if (principal.account.status != "active")
    co_return identified(Verdict::reject(403, "Account is paused"), rec);
  if (!rec.rate.empty()) {
    auto it = rates_.find(rec.rate);
    if (it == rates_.end()) {
      // A stored rate we cannot read limits nothing rather than rejecting every job;
      // cascadectl validates rates before storing them.
      it = rates_.emplace(rec.rate, parse_rate(rec.rate).value_or(Rate{})).first;
    }
    if (!it->second.unlimited()) {
      auto wait_us = co_await redis::gcra(redis_, store_.prefix() + ":rate:" + rec.id, it->second,
                                          redis::GcraMode::limit);
      if (wait_us > 0) {
        auto secs = static_cast<int>((wait_us + 999'999) / 1'000'000);
        auto v = Verdict::reject(429, "Rate limit exceeded. Please wait " + std::to_string(secs) +
                                          " seconds before trying again.");
        v.retry_after = secs;
        co_return identified(std::move(v), rec);
      }
    }
  }
  co_return principal;
}

asio::awaitable<std::variant<std::vector<ChannelKey>, Verdict>> Verifier::authorize_channels(
    const Principal& principal, const std::vector<ChannelToken>& uses) {
  auto reject = [&](int status, std::string error, std::string field = {}) {
    return identified(Verdict::reject(status, std::move(error), std::move(field)), principal.key);
  };
  std::vector<std::optional<ChannelKey>> found(uses.size());
  std::vector<Digest> to_fetch;
  std::vector<std::size_t> fetch_index;
  for (std::size_t i = 0; i < uses.size(); ++i) {
    if (!valid_key_format(uses[i].token, KeyKind::channel))
      co_return reject(403,
                       "Channel key for " + uses[i].channel + " does not belong to this account");
    auto digest = sha256(uses[i].token);
    auto hit = channel_cache_.find(raw(digest));
    if (hit != channel_cache_.end() && fresh(hit->second.fetched)) {
      ++stats_.cache_hits;
      found[i] = hit->second.key;
    } else {
      ++stats_.cache_misses;
      to_fetch.push_back(digest);
      fetch_index.push_back(i);
    }
  }
  if (!to_fetch.empty()) {
    bool was_live = live_;
    auto fetched = co_await store_.find_channel_keys(to_fetch);
    for (std::size_t k = 0; k < fetched.size(); ++k) {
      found[fetch_index[k]] = fetched[k];
      if (fetched[k] && was_live && live_ && channel_cache_.size() < config_.cache_max_entries)
        channel_cache_[raw(to_fetch[k])] = ChannelEntry{*fetched[k], Clock::now()};
    }
  }
  for (std::size_t i = 0; i < uses.size(); ++i) {
    if (!found[i] || found[i]->account != principal.account.id)
      co_return reject(403,
                       "Channel key for " + uses[i].channel + " does not belong to this account");
  }
  const auto& allowed = principal.key.channels;
  for (std::size_t i = 0; i < uses.size(); ++i) {
    if (!allowed.empty() &&
        std::find(allowed.begin(), allowed.end(), found[i]->id) == allowed.end())
      co_return reject(403, "API key does not authorize this channel key");
  }
  std::vector<ChannelKey> out;
  for (std::size_t i = 0; i < uses.size(); ++i) {
    if (found[i]->type != uses[i].channel) {
      // A key of this account used under the wrong channel name: the producer's mistake,
      // so a 400 that names the field rather than a misleading ownership error.
      co_return reject(400,
                       "Invalid request: keys." + uses[i].channel + ".token is a " +
                           found[i]->type + " channel key",
                       "keys." + uses[i].channel + ".token");
    }
    out.push_back(std::move(*found[i]));
  }
  co_return out;
}

}  // namespace cascade::auth
