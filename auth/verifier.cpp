#include "auth/verifier.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <algorithm>
#include <cmath>
#include <exception>

#include "auth/credentials.hpp"
#include "auth/key.hpp"
#include "auth/store.hpp"
#include "redis/connection.hpp"
#include "redis/gcra.hpp"
#include "util/time.hpp"

namespace asio = boost::asio;
using Clock = std::chrono::steady_clock;

namespace cascade::auth {

// One read in flight. The job that started it (the leader) fills it in and cancels
// `done_signal`, which wakes every job waiting on it; they hold it by shared_ptr, so it
// outlives its entry in the in-flight map (gone once done, or replaced by a newer read
// after an invalidation).
template <class T>
struct Verifier::Lookup {
  Lookup(asio::any_io_executor ex, std::uint64_t generation)
      : generation(generation), done_signal(ex, Clock::time_point::max()) {}
  std::uint64_t generation;  // Verifier::generation_ when the read started
  bool done = false;
  T value{};
  std::exception_ptr error;
  asio::steady_timer done_signal;
};

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

// Ends the reads a leader started, however its coroutine leaves (value, exception, or a
// frame destroyed mid-read): marks them done, takes them out of the in-flight map unless
// a newer read replaced them, and wakes their waiters. A read that never got a value or
// an error gives its waiters an error rather than a false "no such key".
template <class L>
class Leading {
 public:
  using Map = std::unordered_map<std::string, std::shared_ptr<L>>;
  explicit Leading(Map& in_flight) : in_flight_(in_flight) {}
  Leading(const Leading&) = delete;
  Leading& operator=(const Leading&) = delete;
  ~Leading() {
    for (auto& [key, lookup] : started_) {
      if (!settled(*lookup))
        lookup->error = std::make_exception_ptr(redis::Error("auth look-up abandoned"));
      lookup->done = true;
      auto it = in_flight_.find(key);
      if (it != in_flight_.end() && it->second == lookup) in_flight_.erase(it);
      try {
        lookup->done_signal.cancel();
      } catch (...) {
        // Cannot fail in practice; a destructor must not throw.
      }
    }
  }
  void add(std::string key, std::shared_ptr<L> lookup) {
    in_flight_[key] = lookup;
    started_.emplace_back(std::move(key), std::move(lookup));
  }
  void settle(L& lookup) { settled_.push_back(&lookup); }
  bool settled(const L& lookup) const {
    return std::find(settled_.begin(), settled_.end(), &lookup) != settled_.end();
  }

 private:
  Map& in_flight_;
  std::vector<std::pair<std::string, std::shared_ptr<L>>> started_;
  std::vector<const L*> settled_;
};

// Waits until another job's read is done; rethrows its failure.
template <class L>
asio::awaitable<void> wait_for(L& lookup) {
  while (!lookup.done)
    co_await lookup.done_signal.async_wait(asio::as_tuple(asio::use_awaitable));
  if (lookup.error) std::rethrow_exception(lookup.error);
}

}  // namespace

Verifier::Verifier(Store& store, redis::Connection& redis, VerifierConfig config)
    : store_(store),
      redis_(redis),
      config_(config),
      api_cache_(config.cache_max_entries),
      channel_cache_(config.cache_max_entries) {}

bool Verifier::fresh(Clock::time_point fetched, bool found) const {
  auto max_age = found ? config_.cache_max_age : config_.negative_max_age;
  return live_ && Clock::now() - fetched < max_age;
}

void Verifier::drop_all() {
  api_cache_.clear();
  channel_cache_.clear();
}

void Verifier::set_cache_live(bool live) {
  // Whatever happened while the subscription was down was not heard: forget it all, and
  // let no read in flight fill the cache.
  drop_all();
  ++generation_;
  live_ = live;
}

void Verifier::invalidate(std::string_view message) {
  ++stats_.invalidations;
  // Reads in flight may have read what this message says changed.
  ++generation_;
  auto space = message.find(' ');
  auto kind = message.substr(0, space);
  auto arg = space == std::string_view::npos ? std::string_view{} : message.substr(space + 1);
  if (kind == "apikey") {
    if (auto d = from_hex(arg)) api_cache_.erase(raw(*d));
  } else if (kind == "chkey") {
    if (auto d = from_hex(arg)) channel_cache_.erase(raw(*d));
  } else if (kind == "account") {
    api_cache_.erase_if([&](const ApiEntry& e) { return e.found.account.id == arg; });
    channel_cache_.erase_if([&](const ChannelEntry& e) { return e.key && e.key->account == arg; });
  } else {
    drop_all();
  }
}

asio::awaitable<Verifier::ApiFound> Verifier::find_api_key(const std::string& cache_key) {
  auto in_flight = api_in_flight_.find(cache_key);
  if (in_flight != api_in_flight_.end() && in_flight->second->generation == generation_) {
    ++stats_.coalesced;
    auto lookup = in_flight->second;
    co_await wait_for(*lookup);
    co_return lookup->value;
  }
  auto lookup = std::make_shared<ApiLookup>(co_await asio::this_coro::executor, generation_);
  {
    Leading<ApiLookup> leading(api_in_flight_);
    leading.add(cache_key, lookup);
    ++stats_.lookups;
    Digest digest;
    std::copy(cache_key.begin(), cache_key.end(), digest.begin());
    bool cacheable = true;
    try {
      auto record = co_await store_.find_api_key(digest);
      if (record) {
        auto account = co_await store_.find_account(record->account);
        // A key whose account is gone: rejected, but not remembered (no event would
        // drop it).
        cacheable = account.has_value();
        if (account) {
          lookup->value.key = std::move(record);
          lookup->value.account = std::move(*account);
        }
      }
    } catch (...) {
      lookup->error = std::current_exception();
    }
    leading.settle(*lookup);
    // Only what was read while the subscription was live throughout, with no
    // invalidation in between, may be cached: a missed or overtaken event would stick.
    if (!lookup->error && cacheable && live_ && lookup->generation == generation_)
      stats_.evictions += api_cache_.put(cache_key, ApiEntry{lookup->value, Clock::now()});
  }
  if (lookup->error) std::rethrow_exception(lookup->error);
  co_return lookup->value;
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
  auto cache_key = raw(sha256(key));
  ApiFound found;
  auto* hit = api_cache_.find(cache_key);
  if (hit && fresh(hit->fetched, hit->found.key.has_value())) {
    ++stats_.cache_hits;
    found = hit->found;
  } else {
    ++stats_.cache_misses;
    found = co_await find_api_key(cache_key);
  }
  if (!found.key) co_return Verdict::reject(401, "Invalid API key");
  Principal principal;
  principal.key = std::move(*found.key);
  principal.account = std::move(found.account);
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
  // Garbage fails before any Redis I/O, in the order of `uses`.
  for (const auto& use : uses) {
    if (!valid_key_format(use.token, KeyKind::channel))
      co_return reject(403, "Channel key for " + use.channel + " does not belong to this account");
  }
  std::vector<std::optional<ChannelKey>> found(uses.size());
  // Per use not answered by the cache: the read that answers it (ours or another job's).
  std::vector<std::shared_ptr<ChannelLookup>> reads(uses.size());
  std::vector<std::shared_ptr<ChannelLookup>> ours;
  std::vector<std::string> our_keys;
  std::vector<Digest> to_fetch;
  for (std::size_t i = 0; i < uses.size(); ++i) {
    auto digest = sha256(uses[i].token);
    auto cache_key = raw(digest);
    auto* hit = channel_cache_.find(cache_key);
    if (hit && fresh(hit->fetched, hit->key.has_value())) {
      ++stats_.cache_hits;
      found[i] = hit->key;
      continue;
    }
    ++stats_.cache_misses;
    auto in_flight = channel_in_flight_.find(cache_key);
    if (in_flight != channel_in_flight_.end() && in_flight->second->generation == generation_) {
      // Another job's read, or ours when a key is used twice in this job.
      if (std::find(ours.begin(), ours.end(), in_flight->second) == ours.end()) ++stats_.coalesced;
      reads[i] = in_flight->second;
      continue;
    }
    reads[i] = std::make_shared<ChannelLookup>(co_await asio::this_coro::executor, generation_);
    ours.push_back(reads[i]);
    our_keys.push_back(std::move(cache_key));
    to_fetch.push_back(digest);
  }
  if (!ours.empty()) {
    // Our misses in one round trip; waiters are woken when `leading` ends.
    Leading<ChannelLookup> leading(channel_in_flight_);
    for (std::size_t k = 0; k < ours.size(); ++k)
      leading.add(our_keys[k], ours[k]);
    stats_.lookups += ours.size();
    std::vector<std::optional<ChannelKey>> fetched;
    std::exception_ptr error;
    try {
      fetched = co_await store_.find_channel_keys(to_fetch);
      if (fetched.size() != ours.size()) throw redis::Error("channel key look-up: short reply");
    } catch (...) {
      error = std::current_exception();
    }
    for (std::size_t k = 0; k < ours.size(); ++k) {
      if (error) {
        ours[k]->error = error;
      } else {
        ours[k]->value = fetched[k];
        if (live_ && ours[k]->generation == generation_)
          stats_.evictions +=
              channel_cache_.put(our_keys[k], ChannelEntry{std::move(fetched[k]), Clock::now()});
      }
      leading.settle(*ours[k]);
    }
  }
  for (std::size_t i = 0; i < uses.size(); ++i) {
    if (!reads[i]) continue;
    co_await wait_for(*reads[i]);
    found[i] = reads[i]->value;
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
