#pragma once
// The verdicts of SPEC §2, in their order. Verdicts 1–6 concern the API key and come
// from authenticate(); 7 (the body) is the engine's; 8–9 come from authorize_channels().
//
// Records are cached in-process by key digest, so a steady stream of jobs from the same
// keys needs no Redis round trip for auth (rate-limited keys still need one: the limit is
// shared by all workers). The cache is only used while the invalidation subscription is
// live (set_cache_live): every change to a key or account is published on
// <prefix>:auth-events and drops the affected entries; a lost subscription flushes the
// cache and bypasses it until the subscription is back. Entries also age out; beyond
// cache_max_entries the least recently used go. "No such key" is remembered too, briefly
// (creating a key announces its digest, which drops that), so a flood of well-formed
// unknown keys costs one look-up per key, not per job.
//
// Concurrent misses for the same digest share one look-up ("single flight"): 1,024 jobs
// arriving at once with one uncached key cost one read of it. A look-up that was in
// flight when an invalidation arrived still answers the jobs that were waiting for it
// (as a look-up without any cache would have), but it is not cached and no later job
// joins it. All of this state is per Verifier: one instance serves one io_context
// thread and needs no locks.
#include <boost/asio/awaitable.hpp>

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <variant>
#include <vector>

#include "auth/lru_cache.hpp"
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
  // Per cache (API keys, channel keys); beyond it the least recently used entry goes.
  std::size_t cache_max_entries = 100'000;
  // How long an unknown key stays known as unknown (its creation drops it sooner).
  std::chrono::milliseconds negative_max_age{1'500};
};

struct VerifierStats {
  std::uint64_t cache_hits = 0;
  std::uint64_t cache_misses = 0;  // includes those that joined a look-up in flight
  std::uint64_t invalidations = 0;
  std::uint64_t lookups = 0;    // digests read from Redis
  std::uint64_t coalesced = 0;  // misses answered by another job's look-up in flight
  std::uint64_t evictions = 0;  // entries dropped to keep within cache_max_entries
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
  // Entries held (positive and negative), for tests and metrics.
  std::size_t cached_api_keys() const { return api_cache_.size(); }
  std::size_t cached_channel_keys() const { return channel_cache_.size(); }

 private:
  // What one read of an API key found: nothing (unknown key, or its account is gone),
  // or the record with its account.
  struct ApiFound {
    std::optional<ApiKey> key;
    Account account;
  };
  struct ApiEntry {
    ApiFound found;
    std::chrono::steady_clock::time_point fetched;
  };
  struct ChannelEntry {
    std::optional<ChannelKey> key;  // nullopt: no such key
    std::chrono::steady_clock::time_point fetched;
  };
  template <class T>
  struct Lookup;  // a read in flight, shared by every job that needs it
  using ApiLookup = Lookup<ApiFound>;
  using ChannelLookup = Lookup<std::optional<ChannelKey>>;

  bool fresh(std::chrono::steady_clock::time_point fetched, bool found) const;
  void drop_all();
  boost::asio::awaitable<ApiFound> find_api_key(const std::string& cache_key);

  Store& store_;
  redis::Connection& redis_;
  VerifierConfig config_;
  bool live_ = false;
  // Bumped by every invalidation and every change of liveness: a look-up may fill the
  // cache only if this did not move while it was in flight.
  std::uint64_t generation_ = 0;
  // Keyed by the raw 32-byte SHA-256 of the key text.
  LruCache<ApiEntry> api_cache_;
  LruCache<ChannelEntry> channel_cache_;
  std::unordered_map<std::string, std::shared_ptr<ApiLookup>> api_in_flight_;
  std::unordered_map<std::string, std::shared_ptr<ChannelLookup>> channel_in_flight_;
  std::unordered_map<std::string, Rate> rates_;  // parsed rate strings
  VerifierStats stats_;
};

}  // namespace cascade::auth
