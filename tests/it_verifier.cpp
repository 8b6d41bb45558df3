// The verifier's look-ups against a real redis-server, counted by Redis itself (INFO
// commandstats): concurrent misses for one key share one read, an invalidation that
// overtakes a read keeps it out of the cache, the cache evicts its least recently used
// entry when full, and unknown keys are remembered briefly.
#include <gtest/gtest.h>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <thread>

#include "auth/key.hpp"
#include "auth/store.hpp"
#include "auth/verifier.hpp"
#include "redis/connection.hpp"
#include "redis/sync.hpp"
#include "support/harness.hpp"
#include "support/process.hpp"
#include "support/redis_server.hpp"

using namespace cascade;
using namespace std::chrono_literals;
namespace asio = boost::asio;
using Clock = std::chrono::steady_clock;

namespace {

constexpr const char* kPrefix = "v";

std::int64_t redis_calls(test::SyncRedis& r, const std::string& command) {
  auto info = r.exec(redis::cmd("INFO", "commandstats")).str;
  auto at = info.find("cmdstat_" + command + ":calls=");
  if (at == std::string::npos) return 0;
  return std::stoll(info.substr(at + command.size() + 15));
}

std::string hex_of(const std::string& key) {
  return auth::to_hex(auth::sha256(key));
}

// One job's verdicts: authenticate, then the channel keys; 200 when both pass.
asio::awaitable<int> verdict(auth::Verifier& v, std::string key,
                             std::vector<auth::ChannelToken> uses) {
  auto who = co_await v.authenticate(std::nullopt, std::string_view(key));
  if (auto* rejected = std::get_if<auth::Verdict>(&who)) co_return rejected->status;
  if (uses.empty()) co_return 200;
  auto granted = co_await v.authorize_channels(std::get<auth::Principal>(who), uses);
  if (auto* rejected = std::get_if<auth::Verdict>(&granted)) co_return rejected->status;
  co_return 200;
}

class VerifierLookups : public ::testing::Test {
 protected:
  void SetUp() override {
    admin = std::make_unique<test::Admin>(redis.url(), kPrefix);
    account = admin->create_account("acme");
    api_key = admin->create_api_key(account, {"send"});
    tg_key = admin->create_channel_key(account, "telegram", {{"bot_token", "1:t"}});
    wa_key = admin->create_channel_key(account, "whatsapp", {{"gateway_key", "g"}});
    producer = std::make_unique<test::SyncRedis>(redis.url());
    make_verifier({});
  }

  void make_verifier(auth::VerifierConfig config,
                     std::chrono::milliseconds request_timeout = 5000ms) {
    verifier.reset();
    store.reset();
    conn.reset();
    auto cfg = *redis::parse_url(redis.url());
    cfg.request_timeout = request_timeout;
    conn = std::make_unique<redis::Connection>(io.get_executor(), cfg);
    store = std::make_unique<auth::Store>(*conn, kPrefix,
                                          auth::load_key_ring(test::master_key_file()));
    verifier = std::make_unique<auth::Verifier>(*store, *conn, config);
    // Connected before anything is counted or paused.
    redis::run_sync(io, conn->exec(redis::cmd("PING")));
  }

  // Starts one job's verdicts on the io_context; its status lands in results[slot].
  void spawn(const std::string& key, std::vector<auth::ChannelToken> uses = {}) {
    auto slot = results.size();
    results.push_back(0);
    asio::co_spawn(io, verdict(*verifier, key, std::move(uses)),
                   [this, slot](std::exception_ptr e, int status) {
                     results[slot] = e ? -1 : status;
                     ++finished;
                   });
  }
  // Runs the io_context until every spawned job has its verdict.
  void run_all() {
    io.restart();
    while (finished < results.size() && io.run_one() > 0) {
    }
  }
  int one(const std::string& key, std::vector<auth::ChannelToken> uses = {}) {
    spawn(key, std::move(uses));
    run_all();
    return results.back();
  }
  std::int64_t hgetalls() { return redis_calls(*producer, "hgetall"); }

  std::vector<auth::ChannelToken> both_channels() {
    return {{"telegram", tg_key}, {"whatsapp", wa_key}};
  }

  test::RedisServer redis;
  std::unique_ptr<test::Admin> admin;
  std::unique_ptr<test::SyncRedis> producer;
  asio::io_context io;
  std::unique_ptr<redis::Connection> conn;
  std::unique_ptr<auth::Store> store;
  std::unique_ptr<auth::Verifier> verifier;
  std::vector<int> results;
  std::size_t finished = 0;
  std::string account, api_key, tg_key, wa_key;
};

}  // namespace

// 1,024 jobs arrive at once with the same uncached API key and two channel keys: one read
// of the key, one of its account and one of each channel key — with or without a live
// cache. Then several keys at once: one read per distinct key.
TEST_F(VerifierLookups, ConcurrentMissesShareOneLookup) {
  for (bool live : {false, true}) {
    make_verifier({});
    verifier->set_cache_live(live);
    results.clear();
    finished = 0;
    auto before = hgetalls();
    for (int i = 0; i < 1024; ++i)
      spawn(api_key, both_channels());
    run_all();
    for (auto status : results)
      ASSERT_EQ(status, 200);
    EXPECT_EQ(hgetalls() - before, 4) << "key, account, 2 channel keys; live " << live;
    EXPECT_EQ(verifier->stats().lookups, 3u);
    EXPECT_EQ(verifier->stats().coalesced, 1023u + 2 * 1023u);
  }
  // Warm now: another burst costs nothing.
  auto before = hgetalls();
  for (int i = 0; i < 1024; ++i)
    spawn(api_key, both_channels());
  run_all();
  EXPECT_EQ(hgetalls() - before, 0);

  // Four distinct keys, 256 jobs each, interleaved, on a cold verifier.
  make_verifier({});
  verifier->set_cache_live(true);
  std::vector<std::string> keys = {api_key};
  for (int i = 0; i < 3; ++i)
    keys.push_back(admin->create_api_key(account, {"send"}));
  results.clear();
  finished = 0;
  before = hgetalls();
  for (int i = 0; i < 1024; ++i)
    spawn(keys[i % 4], both_channels());
  run_all();
  for (auto status : results)
    ASSERT_EQ(status, 200);
  EXPECT_EQ(hgetalls() - before, 4 * 2 + 2) << "each key and its account once, each channel once";
}

// A read in flight when an invalidation arrives: the jobs already waiting for it get its
// answer, but it does not enter the cache, and a job arriving after the invalidation does
// not join it (it reads again). Redis is paused so that the read is surely in flight.
TEST_F(VerifierLookups, InvalidationDuringLookupKeepsItOutOfTheCache) {
  verifier->set_cache_live(true);
  auto hex = hex_of(api_key);
  auto record = std::string(kPrefix) + ":apikey:" + hex;

  // The read of A, joined by W; the invalidation lands while Redis sits on it.
  producer->exec(redis::cmd("CLIENT", "PAUSE", "300", "ALL"));
  spawn(api_key);  // A: leads the read
  spawn(api_key);  // W: joins it
  asio::steady_timer later(io, 100ms);
  bool invalidated = false;
  later.async_wait([&](boost::system::error_code) {
    EXPECT_EQ(verifier->stats().lookups, 1u);
    verifier->invalidate("apikey " + hex);
    invalidated = true;
    spawn(api_key);  // B: after the invalidation, reads again
  });
  io.restart();
  while ((!invalidated || finished < results.size()) && io.run_one() > 0) {
  }
  EXPECT_EQ(results, (std::vector<int>{200, 200, 200}));
  EXPECT_EQ(verifier->stats().coalesced, 1u) << "W joined A; B did not";
  EXPECT_EQ(verifier->stats().lookups, 2u);

  // B began after the invalidation, so B's read may be cached; A's must not be. Start
  // over without B: A and W, the invalidation, then a change nobody announces.
  make_verifier({});
  verifier->set_cache_live(true);
  results.clear();
  finished = 0;
  producer->exec(redis::cmd("CLIENT", "PAUSE", "300", "ALL"));
  spawn(api_key);
  spawn(api_key);
  later.expires_after(100ms);
  later.async_wait([&](boost::system::error_code) { verifier->invalidate("apikey " + hex); });
  run_all();
  EXPECT_EQ(results, (std::vector<int>{200, 200})) << "waiters use the read they waited for";
  producer->exec(redis::cmd("HSET", record, "status", "revoked"));  // not announced
  EXPECT_EQ(one(api_key), 401) << "the overtaken read was cached";
  EXPECT_EQ(verifier->stats().lookups, 2u);

  // The same for channel keys and for a flush of everything.
  producer->exec(redis::cmd("HSET", record, "status", "active"));
  verifier->invalidate("flush");
  ASSERT_EQ(one(api_key), 200);
  results.clear();
  finished = 0;
  producer->exec(redis::cmd("CLIENT", "PAUSE", "300", "ALL"));
  spawn(api_key, both_channels());
  later.expires_after(100ms);
  later.async_wait([&](boost::system::error_code) { verifier->invalidate("flush"); });
  run_all();
  EXPECT_EQ(results, (std::vector<int>{200}));
  auto tg_record = std::string(kPrefix) + ":chkey:" + hex_of(tg_key);
  producer->exec(redis::cmd("HSET", tg_record, "account", "acc_someone_else"));  // not announced
  EXPECT_EQ(one(api_key, both_channels()), 403);
}

// The cache is bounded and keeps the most recently used entries: a full cache still
// admits new keys (it used to stop admitting), evicting the least recently used.
TEST_F(VerifierLookups, FullCacheEvictsLeastRecentlyUsed) {
  auth::VerifierConfig config;
  config.cache_max_entries = 2;
  make_verifier(config);
  verifier->set_cache_live(true);
  auto k1 = api_key;
  auto k2 = admin->create_api_key(account, {"send"});
  auto k3 = admin->create_api_key(account, {"send"});
  auto reads = [&](const std::string& key) {
    auto before = verifier->stats().lookups;
    EXPECT_EQ(one(key), 200);
    return verifier->stats().lookups - before;
  };
  EXPECT_EQ(reads(k1), 1u);
  EXPECT_EQ(reads(k2), 1u);
  EXPECT_EQ(reads(k1), 0u) << "k1 is now the most recently used";
  EXPECT_EQ(reads(k3), 1u) << "admitted, evicting k2";
  EXPECT_EQ(verifier->stats().evictions, 1u);
  EXPECT_EQ(verifier->cached_api_keys(), 2u);
  EXPECT_EQ(reads(k1), 0u);
  EXPECT_EQ(reads(k3), 0u);
  EXPECT_EQ(reads(k2), 1u) << "k2 was evicted";
  EXPECT_EQ(reads(k2), 0u);
  EXPECT_EQ(reads(k1), 1u) << "k1 was the least recently used";

  // Channel keys likewise.
  auto before = verifier->stats().lookups;
  auto extra = admin->create_channel_key(account, "telegram", {{"bot_token", "2:t"}});
  EXPECT_EQ(one(k1, both_channels()), 200);
  EXPECT_EQ(one(k1, {{"telegram", extra}}), 200);  // evicts the telegram key
  EXPECT_EQ(verifier->cached_channel_keys(), 2u);
  EXPECT_EQ(one(k1, {{"whatsapp", wa_key}}), 200);
  EXPECT_EQ(verifier->stats().lookups - before, 3u) << "whatsapp stayed cached";
  EXPECT_EQ(one(k1, {{"telegram", tg_key}}), 200);
  EXPECT_EQ(verifier->stats().lookups - before, 4u) << "telegram was evicted";
}

// A flood of well-formed unknown keys costs one read per key for the negative cache's
// age, not one per job; the key's announcement (its creation) and a flush drop it sooner.
TEST_F(VerifierLookups, UnknownKeysAreRememberedBriefly) {
  auth::VerifierConfig config;
  config.negative_max_age = 400ms;
  make_verifier(config);
  verifier->set_cache_live(true);
  auto unknown = auth::generate_key(auth::KeyKind::api);
  auto before = hgetalls();
  for (int i = 0; i < 256; ++i)
    spawn(unknown);
  run_all();
  for (int i = 0; i < 100; ++i)
    EXPECT_EQ(one(unknown), 401);
  for (auto status : results)
    EXPECT_EQ(status, 401);
  EXPECT_EQ(hgetalls() - before, 1) << "one read for 356 jobs";

  std::this_thread::sleep_for(450ms);
  EXPECT_EQ(one(unknown), 401);
  EXPECT_EQ(hgetalls() - before, 2) << "remembered only briefly";

  verifier->invalidate("apikey " + hex_of(unknown));
  EXPECT_EQ(one(unknown), 401);
  EXPECT_EQ(hgetalls() - before, 3) << "the key's announcement drops it";
  verifier->invalidate("flush");
  EXPECT_EQ(one(unknown), 401);
  EXPECT_EQ(hgetalls() - before, 4) << "a flush drops it";

  // Unknown channel keys of a valid API key likewise (one read, then remembered).
  auto unknown_ck = auth::generate_key(auth::KeyKind::channel);
  ASSERT_EQ(one(api_key), 200);
  before = hgetalls();
  for (int i = 0; i < 50; ++i)
    EXPECT_EQ(one(api_key, {{"telegram", unknown_ck}}), 403);
  EXPECT_EQ(hgetalls() - before, 1);
}

// Creating or rotating a key announces its new digest on <prefix>:auth-events, so a
// verifier that remembered it as unknown forgets that at once (SPEC §2's second).
TEST_F(VerifierLookups, CreatingAKeyAnnouncesItsDigest) {
  redis::Connection events(io.get_executor(), *redis::parse_url(redis.url()));
  std::vector<std::string> heard;
  events.set_push_handler([&](const redis::Reply& r) {
    heard.push_back(r.elements.back().str);
    verifier->invalidate(r.elements.back().str);
  });
  ASSERT_FALSE(redis::run_sync(io, events.exec(redis::cmd("SUBSCRIBE", store->events_channel())))
                   .is_error());
  verifier->set_cache_live(true);
  auto wait_heard = [&](const std::string& message) {
    auto deadline = Clock::now() + 2s;
    while (std::find(heard.begin(), heard.end(), message) == heard.end() &&
           Clock::now() < deadline) {
      io.restart();
      io.run_for(10ms);
    }
    return std::find(heard.begin(), heard.end(), message) != heard.end();
  };
  auth::ApiKey rec;
  rec.account = account;
  rec.name = "new";
  rec.scopes = {"send"};
  auto made = redis::run_sync(io, store->create_api_key(rec));
  EXPECT_TRUE(wait_heard("apikey " + hex_of(made.key)));
  auto rotated = redis::run_sync(io, store->rotate_api_key(made.record.id, 1h));
  EXPECT_TRUE(wait_heard("apikey " + hex_of(rotated.key)));
  auth::ChannelKey ck;
  ck.account = account;
  ck.type = "telegram";
  ck.name = "new";
  ck.settings = {{"bot_token", "3:t"}};
  auto made_ck = redis::run_sync(io, store->create_channel_key(ck));
  EXPECT_TRUE(wait_heard("chkey " + hex_of(made_ck.key)));

  // A digest remembered as unknown, then announced (as its creation does): valid at once.
  // The record is put back by hand here, since a created key's text is new by nature.
  auto record = std::string(kPrefix) + ":apikey:" + hex_of(made.key);
  auto saved = producer->exec(redis::cmd("DUMP", record));
  producer->exec(redis::cmd("DEL", record));
  EXPECT_EQ(one(made.key), 401);
  producer->exec(redis::cmd("RESTORE", record, "0", saved.str));
  EXPECT_EQ(one(made.key), 401) << "remembered as unknown";
  heard.clear();
  producer->exec(redis::cmd("PUBLISH", store->events_channel(), "apikey " + hex_of(made.key)));
  ASSERT_TRUE(wait_heard("apikey " + hex_of(made.key)));
  EXPECT_EQ(one(made.key), 200);
}

// A shared read that fails (Redis does not answer in time) fails every job that waited for
// it — the engine re-runs them — rather than telling any of them the key is unknown; and
// nothing of it is cached: the next job reads again and passes.
TEST_F(VerifierLookups, FailedSharedLookupFailsEveryWaiter) {
  make_verifier({}, 200ms);
  verifier->set_cache_live(true);
  producer->exec(redis::cmd("CLIENT", "PAUSE", "600", "ALL"));
  for (int i = 0; i < 64; ++i)
    spawn(api_key, both_channels());
  run_all();
  for (auto status : results)
    EXPECT_EQ(status, -1) << "a job got a verdict from a read that failed";
  EXPECT_EQ(verifier->stats().lookups, 1u);
  EXPECT_EQ(verifier->stats().coalesced, 63u);
  EXPECT_EQ(verifier->cached_api_keys(), 0u);
  std::this_thread::sleep_for(500ms);  // the pause ends
  EXPECT_EQ(one(api_key, both_channels()), 200);
  EXPECT_EQ(verifier->stats().lookups, 4u) << "read again: the key and both channel keys";
}
