// The whole authentication model of SPEC §2 against a real redis-server: verdict order,
// rotation with grace, revocation propagation across two workers, the shared rate
// limit, usage counts, the verdict cache and its invalidation, and no secret in logs.
#include <gtest/gtest.h>
#include <simdjson.h>
#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>

#include <sstream>

#include "auth/key.hpp"
#include "support/harness.hpp"
#include "support/mock_provider.hpp"
#include "support/redis_server.hpp"
#include "util/time.hpp"

using namespace cascade;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

namespace {

constexpr const char* kPrefix = "a";
constexpr const char* kBotToken = "222:auth-test-bot-secret";

struct Outcome {
  std::int64_t status = 0;
  std::string error;
  std::int64_t retry_after = 0;
  std::string finished_at;
};

Outcome parse(const std::string& json) {
  simdjson::dom::parser p;
  auto root = p.parse(json).value();
  Outcome o;
  o.status = root["status"].get_int64().value();
  std::string_view e;
  if (!root["error"].get(e)) o.error = std::string(e);
  std::int64_t ra = 0;
  if (!root["retryAfter"].get(ra)) o.retry_after = ra;
  std::string_view f;
  if (!root["finished_at"].get(f)) o.finished_at = std::string(f);
  return o;
}

std::int64_t redis_calls(test::SyncRedis& r, const std::string& command) {
  auto info = r.exec(redis::cmd("INFO", "commandstats")).str;
  auto at = info.find("cmdstat_" + command + ":calls=");
  if (at == std::string::npos) return 0;
  return std::stoll(info.substr(at + command.size() + 15));
}

class Auth : public ::testing::Test {
 protected:
  void SetUp() override {
    admin = std::make_unique<test::Admin>(redis.url(), kPrefix);
    account = admin->create_account("acme");
    api_key = admin->create_api_key(account, {"send"}, {}, 0, &api_id);
    tg_key = admin->create_channel_key(
        account, "telegram", {{"bot_token", kBotToken}, {"api_base", mock.base_url()}}, &tg_id);
    producer = std::make_unique<test::SyncRedis>(redis.url());
  }

  EngineConfig config() {
    EngineConfig cfg;
    cfg.redis_url = redis.url();
    cfg.prefix = kPrefix;
    cfg.concurrency = 256;
    cfg.retry.base = 10ms;
    cfg.usage_flush_interval = 100ms;
    return cfg;
  }

  void start_workers(int n) {
    for (int i = 0; i < n; ++i) {
      auto cfg = config();
      cfg.consumer = "worker-" + std::to_string(i);
      workers.push_back(std::make_unique<test::EngineThread>(cfg));
    }
  }

  std::string body(const std::string& token = "", const std::string& to = R"({"telegram":"42"})") {
    return R"({"keys":{"telegram":{"token":")" + (token.empty() ? tg_key : token) + R"("}},"to":)" +
           to + R"(,"message":{"text":"hello"}})";
  }

  Outcome send(const std::string& key, const std::string& b) {
    auto id = test::push_job(*producer, kPrefix, {{"x-api-key", key}, {"body", b}});
    auto r = test::wait_result(*producer, kPrefix, id);
    EXPECT_TRUE(r) << "no result";
    return parse(r.value_or(R"({"status":0})"));
  }

  test::RedisServer redis;
  test::MockProvider mock;
  std::unique_ptr<test::Admin> admin;
  std::unique_ptr<test::SyncRedis> producer;
  std::vector<std::unique_ptr<test::EngineThread>> workers;
  std::string account, api_key, api_id, tg_key, tg_id;
};

}  // namespace

// Where several verdicts apply, the first in SPEC §2's order wins.
TEST_F(Auth, VerdictOrderFirstApplicableWins) {
  start_workers(1);
  auto bad_body = R"({"keys":{}})";
  // 1 beats everything.
  auto id = test::push_job(*producer, kPrefix, {{"body", bad_body}});
  EXPECT_EQ(parse(*test::wait_result(*producer, kPrefix, id)).error, "API key is missing");
  // 2 beats 3: differing credentials, one of them garbage.
  id = test::push_job(
      *producer, kPrefix,
      {{"x-api-key", "garbage"}, {"authorization", "Bearer " + api_key}, {"body", bad_body}});
  EXPECT_EQ(parse(*test::wait_result(*producer, kPrefix, id)).error,
            "Invalid request: conflicting credentials");
  // 3 beats 4..9: an expired key without send scope.
  auto expired = admin->create_api_key(account, {"read"}, {}, now_unix_ms() - 1000);
  EXPECT_EQ(send(expired, bad_body).error, "Invalid API key");
  // 4 beats 5: no send scope on a paused account.
  auto reader = admin->create_api_key(account, {"read"});
  auto other = admin->create_account("paused-co");
  auto paused_key = admin->create_api_key(other, {"read"});
  admin->set_account_status(other, "paused");
  EXPECT_EQ(send(paused_key, bad_body).error, "API key does not have the send permission");
  // 5 beats 6 and 7: paused account, bad body, rate-limited key.
  auto limited_paused = admin->create_api_key(other, {"send"}, {}, 0, nullptr, "1/m:1");
  EXPECT_EQ(send(limited_paused, bad_body).error, "Account is paused");
  // 6 beats 7: the limit is spent, then a bad body still gets 429.
  auto limited = admin->create_api_key(account, {"send"}, {}, 0, nullptr, "1/m:1");
  EXPECT_EQ(send(limited, body()).status, 200);
  auto r = send(limited, bad_body);
  EXPECT_EQ(r.status, 429);
  EXPECT_EQ(r.error, "Rate limit exceeded. Please wait " + std::to_string(r.retry_after) +
                         " seconds before trying again.");
  EXPECT_GE(r.retry_after, 59);
  EXPECT_LE(r.retry_after, 60);
  // 7 beats 8: a foreign channel key in a body that misses its recipient.
  auto foreign = admin->create_channel_key(other, "telegram", {{"bot_token", "1:x"}});
  EXPECT_EQ(send(api_key, body(foreign, "{}")).status, 400);
  // 8 beats 9: a restricted key using a foreign channel key.
  auto restricted = admin->create_api_key(account, {"send"}, {tg_id});
  EXPECT_EQ(send(restricted, body(foreign)).error,
            "Channel key for telegram does not belong to this account");
  auto wa_key = admin->create_channel_key(account, "whatsapp", {{"api_base", mock.base_url()}});
  EXPECT_EQ(send(restricted, R"({"keys":{"whatsapp":{"token":")" + wa_key +
                                 R"("}},"to":{"phone":"+33612345678"},"message":{"text":"x"}})")
                .error,
            "API key does not authorize this channel key");
  // A key that is not even well-formed costs no Redis look-up.
  auto before = redis_calls(*producer, "hgetall");
  EXPECT_EQ(send("ak_" + std::string(38, 'A'), body()).error, "Invalid API key");
  EXPECT_EQ(redis_calls(*producer, "hgetall"), before);
}

// Rotation: with a grace period both keys work; the old one stops when it ends. With no
// grace every earlier secret stops at once, one still inside an earlier grace too.
TEST_F(Auth, RotationWithGrace) {
  start_workers(1);
  EXPECT_EQ(send(api_key, body()).status, 200);
  auto second = admin->rotate_api_key(api_id, 24h);
  EXPECT_EQ(send(api_key, body()).status, 200) << "old key inside its grace period";
  EXPECT_EQ(send(second, body()).status, 200);
  auto third = admin->rotate_api_key(api_id, 0ms);
  EXPECT_EQ(send(second, body()).error, "Invalid API key") << "no grace: stops at once";
  EXPECT_EQ(send(third, body()).status, 200);
  EXPECT_EQ(send(api_key, body()).error, "Invalid API key")
      << "a rotation without grace also ends the first key's grace";

  // A short grace ends by itself: measure when the old key stops.
  auto fourth = admin->rotate_api_key(api_id, 1500ms);
  auto rotated_at = Clock::now();
  std::chrono::milliseconds last_ok{0}, first_rejected{0};
  while (Clock::now() - rotated_at < 4s) {
    auto pushed = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - rotated_at);
    auto o = send(third, body());
    if (o.status == 200) {
      last_ok = pushed;
    } else {
      EXPECT_EQ(o.error, "Invalid API key");
      first_rejected = pushed;
      break;
    }
  }
  EXPECT_GT(first_rejected.count(), 0) << "the old key never stopped";
  EXPECT_LE(last_ok.count(), 1500);
  EXPECT_GE(first_rejected.count(), 1400);
  EXPECT_EQ(send(fourth, body()).status, 200);
}

// Two workers with warm caches: a revoked key and a paused account are rejected by both
// for every job pushed more than 1 s after the change (in practice: at once).
TEST_F(Auth, RevocationAndPausePropagateToEveryWorker) {
  start_workers(2);
  for (int i = 0; i < 20; ++i)
    ASSERT_EQ(send(api_key, body()).status, 200);
  admin->revoke_api_key(api_id);
  auto changed = Clock::now();
  int after_one_second = 0, accepted_late = 0, accepted_early = 0;
  while (Clock::now() - changed < 1500ms) {
    auto pushed_at = Clock::now() - changed;
    auto o = send(api_key, body());
    if (pushed_at > 1s) {
      ++after_one_second;
      if (o.status != 401) ++accepted_late;
    } else if (o.status != 401) {
      ++accepted_early;
    }
  }
  EXPECT_GT(after_one_second, 10);
  EXPECT_EQ(accepted_late, 0);
  EXPECT_EQ(accepted_early, 0) << "invalidation is expected well within the second";

  auto key2 = admin->create_api_key(account, {"send"});
  for (int i = 0; i < 20; ++i)
    ASSERT_EQ(send(key2, body()).status, 200);
  admin->set_account_status(account, "paused");
  for (int i = 0; i < 20; ++i)
    EXPECT_EQ(send(key2, body()).error, "Account is paused");
  admin->set_account_status(account, "active");
  EXPECT_EQ(send(key2, body()).status, 200);
}

// Warm cache: jobs from the same keys need no Redis look-up for auth.
TEST_F(Auth, CachedVerdictsNeedNoRedisLookups) {
  start_workers(1);
  ASSERT_EQ(send(api_key, body()).status, 200);
  auto before = redis_calls(*producer, "hgetall");
  for (int i = 0; i < 50; ++i)
    ASSERT_EQ(send(api_key, body()).status, 200);
  EXPECT_EQ(redis_calls(*producer, "hgetall"), before);
}

// A lost subscription must not leave stale verdicts: the cache is flushed and bypassed.
TEST_F(Auth, LostSubscriptionFlushesTheCache) {
  start_workers(1);
  ASSERT_EQ(send(api_key, body()).status, 200);
  // Kill the worker's pub/sub connection, then change the key without any announcement.
  producer->exec(redis::cmd("CLIENT", "KILL", "TYPE", "pubsub"));
  auto hex = producer->exec(redis::cmd("GET", std::string(kPrefix) + ":apikey-id:" + api_id)).str;
  producer->exec(redis::cmd("HSET", std::string(kPrefix) + ":apikey:" + hex, "status", "revoked"));
  EXPECT_EQ(send(api_key, body()).error, "Invalid API key");
}

// 2 workers, a key limited to 50/s (burst 50), 500 jobs pushed at once: at most
// 50 + 50/s × elapsed are delivered, the rest are 429 with a retry time.
TEST_F(Auth, RateLimitIsSharedByAllWorkers) {
  start_workers(2);
  auto limited = admin->create_api_key(account, {"send"}, {}, 0, nullptr, "50/s");
  std::vector<redis::Command> cmds;
  for (int i = 0; i < 500; ++i)
    cmds.push_back(redis::cmd("XADD", std::string(kPrefix) + ":jobs", "*", "x-api-key", limited,
                              "body", body()));
  std::vector<std::string> ids;
  for (auto& c : cmds)
    ids.push_back(producer->exec(std::move(c)).str);
  int delivered = 0, limited_count = 0;
  std::string first, last;
  for (const auto& id : ids) {
    auto o = parse(test::wait_result(*producer, kPrefix, id).value());
    if (first.empty() || o.finished_at < first) first = o.finished_at;
    if (o.finished_at > last) last = o.finished_at;
    if (o.status == 200) {
      ++delivered;
    } else {
      EXPECT_EQ(o.status, 429);
      EXPECT_GE(o.retry_after, 1);
      ++limited_count;
    }
  }
  // finished_at is ms-precise ISO 8601: compare seconds.milliseconds of the same minute.
  auto secs = [](const std::string& t) {
    return std::stod(t.substr(17, 6)) + 60 * std::stod(t.substr(14, 2));
  };
  double span = secs(last) - secs(first);
  EXPECT_GE(delivered, 50) << "the burst is allowed";
  EXPECT_LE(delivered, 50 + 50 * span + 1) << "span " << span << " s";
  EXPECT_EQ(delivered + limited_count, 500);
  std::cout << "[ figures  ] rate 50/s burst 50: delivered " << delivered << ", 429 "
            << limited_count << " over " << span << " s\n";
}

// Usage per key: accepted, delivered, failed, rejected and last use, flushed by workers.
TEST_F(Auth, UsageIsCountedPerKey) {
  start_workers(1);
  mock.add_rule(
      R"({"provider":"telegram","recipient":"7","status":400,"description":"Bad Request: chat not found"})");
  for (int i = 0; i < 3; ++i)
    EXPECT_EQ(send(api_key, body()).status, 200);
  EXPECT_EQ(send(api_key, body("", R"({"telegram":"7"})")).status, 502);
  EXPECT_EQ(send(api_key, R"({"keys":{}})").status, 400);
  auto other = admin->create_account("other");
  EXPECT_EQ(
      send(api_key, body(admin->create_channel_key(other, "telegram", {{"bot_token", "1:y"}})))
          .status,
      403);
  workers.clear();  // stopping flushes what was counted
  auto u = admin->usage(api_id);
  EXPECT_EQ(u["accepted"], 4);
  EXPECT_EQ(u["delivered"], 3);
  EXPECT_EQ(u["failed"], 1);
  EXPECT_EQ(u["rejected"], 2);
  EXPECT_GT(u["last_used"], now_unix_ms() - 60'000);
}

// Every key type and every error path, with all logs captured at trace level: no API
// key, channel key or provider credential appears in them.
TEST_F(Auth, NoSecretInLogs) {
  std::ostringstream captured;
  auto sink = std::make_shared<spdlog::sinks::ostream_sink_mt>(captured);
  auto logger = std::make_shared<spdlog::logger>("capture", sink);
  logger->set_level(spdlog::level::trace);
  auto previous = spdlog::default_logger();
  spdlog::set_default_logger(logger);
  {
    start_workers(1);
    auto gateway = "wa-gateway-secret-xyz";
    auto wa_key = admin->create_channel_key(
        account, "whatsapp", {{"api_base", mock.base_url()}, {"gateway_key", gateway}});
    mock.add_rule(R"({"provider":"whatsapp","status":503})");
    mock.add_rule(
        R"({"provider":"telegram","recipient":"9","status":401,"description":"Unauthorized"})");
    send(api_key, body());
    send(api_key, R"({"keys":{"whatsapp":{"token":")" + wa_key + R"("},"telegram":{"token":")" +
                      tg_key +
                      R"(","fallback":true}},"to":{"phone":"+33612345678","telegram":"9"},)" +
                      R"("message":{"text":"x"}})");
    send(api_key, R"({"keys":{}})");
    send("ak_" + std::string(38, 'B'), body());
    auto revoked_id = std::string();
    auto revoked = admin->create_api_key(account, {"send"}, {}, 0, &revoked_id);
    admin->revoke_api_key(revoked_id);
    send(revoked, body());
    auto id = test::push_job(*producer, kPrefix,
                             {{"authorization", "Bearer " + api_key}, {"body", "not json"}});
    test::wait_result(*producer, kPrefix, id);
    workers.clear();
    auto logs = captured.str();
    EXPECT_FALSE(logs.empty()) << "nothing was logged: the test would prove nothing";
    for (const std::string& secret :
         {api_key, tg_key, wa_key, revoked, std::string(kBotToken), std::string(gateway)})
      EXPECT_EQ(logs.find(secret), std::string::npos) << "secret in logs";
  }
  spdlog::set_default_logger(previous);
}
