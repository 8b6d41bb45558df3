#pragma once
// The verdicts of SPEC §2, in their order. Verdicts 1–6 concern the API key and come
// from authenticate(); 7 (the body) is the engine's; 8–9 come from authorize_channels().
//
// Records are cached in-process by key digest, so a steady stream of jobs from the same
// keys needs no Redis round trip for auth (rate-limited keys still need one: the limit is
// shared by all workers). The cache is only used while the invalidation subscription is
// live (set_cache_live): every change to a key or account is published on
// <prefix>:auth-events and drops the affected entries; a lost subscription flushes the
// cache and bypasses it until the subscription is back. Entries also age out.
#include <boost/asio/awaitable.hpp>

#include <chrono>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <variant>
#include <vector>

#include "auth/records.hpp"
#include "util/rate.hpp"

namespace cascade::redis {
class Connection;
}

namespace cascade::auth {

class Store;

struct Verdict {
  int status = 0;       // HTTP-like status of the rejection
  std::string error;    // exact SPEC text
  std::string field;    // for 400s on a body field
  int retry_after = 0;  // for 429
  std::string key_id;   // the API key, when it was identified (for usage counts)
  std::string account;  // its account, when known

  static Verdict reject(int status, std::string error, std::string field = {}) {
    Verdict v;
    v.status = status;
    v.error = std::move(error);
    v.field = std::move(field);
    return v;
  }
};

struct Principal {
  ApiKey key;
  Account account;
};

struct ChannelToken {
  std::string channel;  // whatsapp | waba | telegram | email
  std::string token;    // ck_... (secret)
};

struct VerifierConfig {
  std::chrono::milliseconds cache_max_age{30'000};  // bound even with a live subscription
  std::size_t cache_max_entries = 100'000;
};

struct VerifierStats {
  std::uint64_t cache_hits = 0;
  std::uint64_t cache_misses = 0;
  std::uint64_t invalidations = 0;
};

class Verifier {
 public:
  Verifier(Store& store, redis::Connection& redis, VerifierConfig config = {});

  boost::asio::awaitable<std::variant<Principal, Verdict>> authenticate(
      std::optional<std::string_view> authorization, std::optional<std::string_view> x_api_key);

  // The channel key records, in the order of `uses`, or the first rejection.
  boost::asio::awaitable<std::variant<std::vector<ChannelKey>, Verdict>> authorize_channels(
      const Principal& principal, const std::vector<ChannelToken>& uses);

  // The subscription to <prefix>:auth-events is live (true) or lost (false: flush and
  // bypass the cache until it is live again).
  void set_cache_live(bool live);
  // One message from <prefix>:auth-events ("apikey <hex>", "chkey <hex>",
  // "account <id>", "flush").
  void invalidate(std::string_view message);
  const VerifierStats& stats() const { return stats_; }
  // The cache is in use (the invalidation subscription is live).
  bool cache_live() const { return live_; }

 private:
  struct ApiEntry {
    ApiKey key;
    Account account;
    std::chrono::steady_clock::time_point fetched;
  };
  struct ChannelEntry {
    ChannelKey key;
    std::chrono::steady_clock::time_point fetched;
  };
  bool fresh(std::chrono::steady_clock::time_point fetched) const;

  Store& store_;
  redis::Connection& redis_;
  VerifierConfig config_;
  bool live_ = false;
  // Keyed by the raw 32-byte SHA-256 of the key text.
  std::unordered_map<std::string, ApiEntry> api_cache_;
  std::unordered_map<std::string, ChannelEntry> channel_cache_;
  std::unordered_map<std::string, Rate> rates_;  // parsed rate strings
  VerifierStats stats_;
};

}  // namespace cascade::auth
