// The whole path, end to end: jobs pushed to a real redis-server are authenticated,
// cascaded and delivered to cascade-mock-provider over loopback, and their results read
// back from Redis — the engine is driven only through Redis, as a producer would.
#include <gtest/gtest.h>
#include <simdjson.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <algorithm>
#include <set>
#include <thread>

#include "engine/engine.hpp"
#include "support/harness.hpp"
#include "support/process.hpp"
#include "support/mock_provider.hpp"
#include "support/redis_server.hpp"
#include "support/result_json.hpp"

using namespace cascade;
using namespace std::chrono_literals;
namespace asio = boost::asio;

namespace {

constexpr const char* kPrefix = "t";
constexpr const char* kBotToken = "111:tg-bot-secret";
constexpr const char* kGatewayKey = "wa-gateway-secret";

using Parsed = test::ParsedResult;

class EndToEnd : public ::testing::Test {
 protected:
  void SetUp() override {
    admin = std::make_unique<test::Admin>(redis.url(), kPrefix);
    account = admin->create_account("acme");
    api_key = admin->create_api_key(account, {"send"});
    tg_key = admin->create_channel_key(
        account, "telegram", {{"bot_token", kBotToken}, {"api_base", mock.base_url()}}, &tg_id);
    wa_key = admin->create_channel_key(
        account, "whatsapp",
        {{"api_base", mock.base_url()}, {"session", "default"}, {"gateway_key", kGatewayKey}},
        &wa_id);
    producer = std::make_unique<test::SyncRedis>(redis.url());
    EngineConfig cfg;
    cfg.redis_url = redis.url();
    cfg.prefix = kPrefix;
    cfg.concurrency = 64;
    cfg.attempt_timeout = 3s;
    cfg.channel_timeout = 10s;
    cfg.retry.base = 20ms;
    cfg.job_retry_delays = {};  // job-level retries are it_reliability's
    engine = std::make_unique<test::EngineThread>(cfg);
  }

  std::string send(const std::string& body,
                   std::vector<std::pair<std::string, std::string>> extra = {}) {
    std::vector<std::pair<std::string, std::string>> fields = {
        {"authorization", "Bearer " + api_key}};
    for (auto& f : extra)
      fields.push_back(f);
    fields.emplace_back("body", body);
    return send_fields(std::move(fields));
  }

  std::string send_fields(std::vector<std::pair<std::string, std::string>> fields) {
    auto id = test::push_job(*producer, kPrefix, std::move(fields));
    auto result = test::wait_result(*producer, kPrefix, id);
    EXPECT_TRUE(result) << "no result for job " << id;
    last_id = id;
    return result.value_or("{}");
  }

  std::string telegram_only(const std::string& chat = "123456789") {
    return R"({"keys":{"telegram":{"token":")" + tg_key + R"("}},"to":{"telegram":")" + chat +
           R"("},"message":{"text":"Your code is 123456"},"metadata":{"order":"A-1042"}})";
  }

  test::RedisServer redis;
  test::MockProvider mock;
  std::unique_ptr<test::Admin> admin;
  std::unique_ptr<test::SyncRedis> producer;
  std::unique_ptr<test::EngineThread> engine;
  std::string account, api_key, tg_key, tg_id, wa_key, wa_id, last_id;
};

}  // namespace

// One primary channel delivers: 200, the provider got exactly what the job said.
TEST_F(EndToEnd, DeliveredOnPrimary) {
  Parsed r(send(telegram_only()));
  EXPECT_EQ(r.status(), 200);
  EXPECT_EQ(r.str("state"), "delivered");
  EXPECT_EQ(r.str("account"), account);
  EXPECT_EQ(r.via(), std::vector<std::string>{"telegram"});
  EXPECT_EQ(std::string(r.root["metadata"]["order"].get_string().value()), "A-1042");
  auto sent = mock.request_list("telegram");
  ASSERT_EQ(sent.size(), 1u);
  EXPECT_EQ(sent[0].recipient, "123456789");
  EXPECT_EQ(sent[0].text, "Your code is 123456");
  EXPECT_EQ(sent[0].token, kBotToken);
  std::string_view provider_id = r.attempts().at(0)["provider_id"].get_string().value();
  EXPECT_FALSE(provider_id.empty());
}

// The primary answers 5xx on every try; tier 1 delivers and the result shows both.
TEST_F(EndToEnd, PrimaryFailsTierOneDelivers) {
  mock.add_rule(R"({"provider":"whatsapp","status":503})");
  auto body = R"({"keys":{"whatsapp":{"token":")" + wa_key + R"("},"telegram":{"token":")" +
              tg_key + R"(","fallback":true,"fallback_sequence":1}},)" +
              R"("to":{"phone":"+33612345678","telegram":"42"},"message":{"text":"parcel"}})";
  Parsed r(send(body));
  EXPECT_EQ(r.status(), 200);
  EXPECT_EQ(r.via(), std::vector<std::string>{"telegram"});
  auto attempts = r.attempts();
  ASSERT_EQ(attempts.size(), 2u);
  EXPECT_EQ(std::string(attempts.at(0)["channel"].get_string().value()), "whatsapp");
  EXPECT_FALSE(attempts.at(0)["ok"].get_bool().value());
  EXPECT_TRUE(attempts.at(0)["retryable"].get_bool().value());
  EXPECT_EQ(attempts.at(0)["tries"].get_int64().value(), 3) << "two retries after the first try";
  EXPECT_EQ(attempts.at(1)["tier"].get_int64().value(), 1);
  EXPECT_TRUE(attempts.at(1)["ok"].get_bool().value());
  auto wa = mock.request_list("whatsapp");
  ASSERT_EQ(wa.size(), 3u);
  EXPECT_EQ(wa[0].recipient, "33612345678");
  EXPECT_EQ(wa[0].token, kGatewayKey);
  // Tier 1 starts only after tier 0 has finished.
  auto tg = mock.request_list("telegram");
  ASSERT_EQ(tg.size(), 1u);
  EXPECT_GE(tg[0].received_us, wa.back().responded_us);
}

// Two primaries in one tier: both are sent and both count as delivered.
TEST_F(EndToEnd, TwoPrimariesBothDelivered) {
  auto body = R"({"keys":{"whatsapp":{"token":")" + wa_key + R"("},"telegram":{"token":")" +
              tg_key +
              R"("}},"to":{"phone":"+33612345678","telegram":"42"},"message":{"text":"hi"}})";
  Parsed r(send(body));
  EXPECT_EQ(r.status(), 200);
  auto via = r.via();
  std::sort(via.begin(), via.end());
  EXPECT_EQ(via, (std::vector<std::string>{"telegram", "whatsapp"}));
  EXPECT_EQ(mock.request_list("whatsapp").size(), 1u);
  EXPECT_EQ(mock.request_list("telegram").size(), 1u);
}

// Every tier fails: 502 with every attempt; the permanent failure is not retried.
TEST_F(EndToEnd, AllTiersFailIs502WithEveryAttempt) {
  mock.add_rule(
      R"({"provider":"telegram","status":400,"description":"Bad Request: chat not found"})");
  mock.add_rule(R"({"provider":"whatsapp","status":500})");
  auto body = R"({"keys":{"whatsapp":{"token":")" + wa_key + R"("},"telegram":{"token":")" +
              tg_key + R"(","fallback":true}},"to":{"phone":"+33612345678","telegram":"42"},)" +
              R"("message":{"text":"hi"}})";
  Parsed r(send(body));
  EXPECT_EQ(r.status(), 502);
  EXPECT_EQ(r.str("state"), "failed");
  EXPECT_TRUE(r.via().empty());
  auto attempts = r.attempts();
  ASSERT_EQ(attempts.size(), 2u);
  EXPECT_EQ(attempts.at(1)["tries"].get_int64().value(), 1) << "permanent: no retry";
  EXPECT_FALSE(attempts.at(1)["retryable"].get_bool().value());
  std::string_view err = attempts.at(1)["error"].get_string().value();
  EXPECT_NE(err.find("chat not found"), std::string_view::npos) << err;
  EXPECT_EQ(mock.request_list("telegram").size(), 1u);
}

// A tier's channels run at the same time: two channels each delayed 300 ms overlap.
TEST_F(EndToEnd, TierChannelsRunInParallel) {
  mock.add_rule(R"({"provider":"whatsapp","delay_ms":300})");
  mock.add_rule(R"({"provider":"telegram","delay_ms":300})");
  auto body = R"({"keys":{"whatsapp":{"token":")" + wa_key + R"("},"telegram":{"token":")" +
              tg_key +
              R"("}},"to":{"phone":"+33612345678","telegram":"42"},"message":{"text":"hi"}})";
  Parsed r(send(body));
  EXPECT_EQ(r.status(), 200);
  auto wa = mock.request_list("whatsapp");
  auto tg = mock.request_list("telegram");
  ASSERT_EQ(wa.size(), 1u);
  ASSERT_EQ(tg.size(), 1u);
  // Both requests arrived before either was answered: they were in flight together.
  EXPECT_LT(wa[0].received_us, tg[0].responded_us);
  EXPECT_LT(tg[0].received_us, wa[0].responded_us);
}

// Body violations are 400s naming the field.
TEST_F(EndToEnd, InvalidBodiesAre400WithField) {
  struct Case {
    std::string body, field;
  };
  std::vector<Case> cases = {
      {R"({"keys":{"telegram":{"token":")" + tg_key + R"("}},"to":{},"message":{"text":"x"}})",
       "to.telegram"},
      {R"({"keys":{"telegram":{"token":")" + tg_key +
           R"(","fallback_sequence":2}},"to":{"telegram":"1"},"message":{"text":"x"}})",
       "keys.telegram.fallback_sequence"},
      {R"({"keys":{"pigeon":{"token":"x"}},"to":{"telegram":"1"},"message":{"text":"x"}})",
       "keys.pigeon"},
      {R"({"keys":{"telegram":{"token":")" + tg_key + R"("}},"to":{"telegram":"1"},"message":{}})",
       "message.text"},
  };
  for (const auto& c : cases) {
    Parsed r(send(c.body));
    EXPECT_EQ(r.status(), 400) << c.body;
    EXPECT_EQ(r.str("state"), "rejected");
    EXPECT_EQ(r.str("field"), c.field) << c.body;
    EXPECT_TRUE(r.str("error").starts_with("Invalid request: ")) << r.str("error");
  }
  EXPECT_TRUE(mock.request_list().empty()) << "nothing is sent for a rejected job";
}

// 401s: no credential at all, and a key that is not one of ours.
TEST_F(EndToEnd, MissingAndInvalidKeysAre401) {
  Parsed missing(send_fields({{"body", telegram_only()}}));
  EXPECT_EQ(missing.status(), 401);
  EXPECT_EQ(missing.str("error"), "API key is missing");
  Parsed bearer_only(send_fields({{"authorization", "Bearer "}, {"body", telegram_only()}}));
  EXPECT_EQ(bearer_only.str("error"), "API key is missing");
  Parsed invalid(send_fields({{"x-api-key", "ak_notarealkey"}, {"body", telegram_only()}}));
  EXPECT_EQ(invalid.status(), 401);
  EXPECT_EQ(invalid.str("error"), "Invalid API key");
  std::string revoked_id;
  auto revoked = admin->create_api_key(account, {"send"}, {}, 0, &revoked_id);
  admin->revoke_api_key(revoked_id);
  Parsed r(send_fields({{"x-api-key", revoked}, {"body", telegram_only()}}));
  EXPECT_EQ(r.str("error"), "Invalid API key");
  Parsed conflict(send_fields(
      {{"x-api-key", revoked}, {"authorization", "Bearer " + api_key}, {"body", telegram_only()}}));
  EXPECT_EQ(conflict.status(), 400);
  EXPECT_EQ(conflict.str("error"), "Invalid request: conflicting credentials");
}

// 403s: a channel key of another account, no send scope, a paused account, a restriction.
TEST_F(EndToEnd, ForbiddenCases) {
  auto other = admin->create_account("other");
  auto foreign = admin->create_channel_key(other, "telegram", {{"bot_token", "9:x"}});
  Parsed r(send(R"({"keys":{"telegram":{"token":")" + foreign +
                R"("}},"to":{"telegram":"1"},"message":{"text":"x"}})"));
  EXPECT_EQ(r.status(), 403);
  EXPECT_EQ(r.str("error"), "Channel key for telegram does not belong to this account");

  auto reader = admin->create_api_key(account, {"read"});
  Parsed s(send_fields({{"x-api-key", reader}, {"body", telegram_only()}}));
  EXPECT_EQ(s.status(), 403);
  EXPECT_EQ(s.str("error"), "API key does not have the send permission");

  auto restricted = admin->create_api_key(account, {"send"}, {wa_id});
  Parsed t(send_fields({{"x-api-key", restricted}, {"body", telegram_only()}}));
  EXPECT_EQ(t.status(), 403);
  EXPECT_EQ(t.str("error"), "API key does not authorize this channel key");

  admin->set_account_status(account, "paused");
  Parsed p(send(telegram_only()));
  EXPECT_EQ(p.status(), 403);
  EXPECT_EQ(p.str("error"), "Account is paused");
  EXPECT_TRUE(mock.request_list().empty());
}

// A paused channel key fails that channel (permanent) and the cascade moves on.
TEST_F(EndToEnd, PausedChannelFailsAndCascadeMovesOn) {
  admin->set_channel_status(wa_id, "paused");
  auto body = R"({"keys":{"whatsapp":{"token":")" + wa_key + R"("},"telegram":{"token":")" +
              tg_key + R"(","fallback":true}},"to":{"phone":"+33612345678","telegram":"42"},)" +
              R"("message":{"text":"hi"}})";
  Parsed r(send(body));
  EXPECT_EQ(r.status(), 200);
  EXPECT_EQ(std::string(r.attempts().at(0)["error"].get_string().value()), "channel paused");
  EXPECT_TRUE(mock.request_list("whatsapp").empty());
}

// Finished entries are acked and deleted; unreadable ones also land in the dead letters;
// no secret appears in any result.
TEST_F(EndToEnd, EntriesAreAckedDeletedAndResultsHoldNoSecrets) {
  Parsed ok(send(telegram_only()));
  Parsed bad(send("this is not json"));
  EXPECT_EQ(bad.status(), 400);
  Parsed nobody(send_fields({{"authorization", "Bearer " + api_key}}));
  EXPECT_EQ(nobody.status(), 400);
  EXPECT_EQ(producer->exec(redis::cmd("XLEN", std::string(kPrefix) + ":jobs")).integer, 0);
  auto pending = producer->exec(redis::cmd("XPENDING", std::string(kPrefix) + ":jobs", "cascade"));
  EXPECT_EQ(pending.elements.at(0).integer, 0);
  EXPECT_EQ(producer->exec(redis::cmd("XLEN", std::string(kPrefix) + ":dead")).integer, 2);
  // The entry without a body is dead-lettered without its other fields (its credential).
  auto dead = producer->exec(redis::cmd("XRANGE", std::string(kPrefix) + ":dead", "-", "+"));
  ASSERT_EQ(dead.elements.size(), 2u);
  std::vector<std::string> names;
  for (const auto& kv : dead.elements[1].elements[1].elements)
    names.push_back(kv.str);
  EXPECT_EQ(std::count(names.begin(), names.end(), "authorization"), 0);
  EXPECT_EQ(producer->exec(redis::cmd("XLEN", std::string(kPrefix) + ":results")).integer, 3);
  auto results = producer->exec(redis::cmd("XRANGE", std::string(kPrefix) + ":results", "-", "+"));
  for (const auto& e : results.elements) {
    for (const auto& v : e.elements[1].elements) {
      for (const auto* secret : {api_key.c_str(), tg_key.c_str(), kBotToken, kGatewayKey})
        EXPECT_EQ(v.str.find(secret), std::string::npos) << "secret in result: " << v.str;
    }
  }
}

// A corpus of malformed entries: each gets its 400 result (the unreadable ones also a dead
// letter), and a good job pushed after them is still delivered — nothing stalls.
TEST_F(EndToEnd, BadInputCorpusEachGetsItsResultAndNothingStalls) {
  std::string binary;
  for (int i = 0; i < 4096; ++i)
    binary.push_back(static_cast<char>((i * 131 + 7) % 256));
  struct Case {
    std::string name, body;
    std::string field;  // expected "field" of the 400
    bool dead;          // unreadable: also copied to the dead letters
  };
  std::vector<Case> cases = {
      {"truncated JSON", R"({"keys":{"telegram":)", "", true},
      {"wrong type", R"({"keys":[],"to":{},"message":{"text":"x"}})", "keys", false},
      // Over the 4096-character text limit but under the 64 KiB body limit.
      {"huge string",
       R"({"keys":{"telegram":{"token":")" + tg_key +
           R"("}},"to":{"telegram":"1"},"message":{"text":")" + std::string(5000, 'a') + R"("}})",
       "message.text", false},
      {"deep nesting", std::string(100'000, '['), "", true},
      {"invalid UTF-8", "{\"keys\":{\"telegram\":{\"token\":\"\xff\xfe\"}}}", "", true},
      {"10 MB body", R"({"keys":{},"pad":")" + std::string(10 * 1024 * 1024, 'x') + R"("})", "",
       true},
      {"binary garbage", binary, "", true},
      {"missing fields", "{}", "keys", false},
  };
  for (const auto& c : cases) {
    Parsed r(send(c.body));
    EXPECT_EQ(r.status(), 400) << c.name;
    EXPECT_EQ(r.str("field"), c.field) << c.name << ": " << r.str("error");
    EXPECT_TRUE(r.str("error").starts_with("Invalid request: ")) << c.name;
  }
  Parsed no_body(send_fields({{"authorization", "Bearer " + api_key}}));
  EXPECT_EQ(no_body.status(), 400);
  int expected_dead = 1;  // the entry without a body
  for (const auto& c : cases)
    expected_dead += c.dead ? 1 : 0;
  EXPECT_EQ(producer->exec(redis::cmd("XLEN", std::string(kPrefix) + ":dead")).integer,
            expected_dead);
  Parsed good(send(telegram_only()));
  EXPECT_EQ(good.status(), 200) << "a good job after the corpus is still delivered";
  EXPECT_EQ(producer->exec(redis::cmd("XLEN", std::string(kPrefix) + ":jobs")).integer, 0);
}

// --threads 2: two event loops, each reading as its own consumer with half the slots;
// every job is delivered once and the engine's stats add up both loops.
TEST_F(EndToEnd, TwoThreadsDeliverEveryJobOnce) {
  engine.reset();  // the fixture's single-loop engine would compete for the jobs
  EngineConfig cfg;
  cfg.redis_url = redis.url();
  cfg.prefix = kPrefix;
  cfg.concurrency = 4;  // 2 per loop: 40 jobs paced at the bot's 30/s need both loops
  cfg.threads = 2;
  cfg.consumer = "threaded";
  cfg.job_retry_delays = {};
  cfg.master_key_file = test::master_key_file();  // opens the sealed bot token
  asio::io_context io;
  Engine threaded(io, cfg);
  threaded.start();
  std::thread loop([&] { io.run(); });
  std::vector<std::string> ids;
  for (int i = 0; i < 40; ++i)
    ids.push_back(test::push_job(*producer, kPrefix,
                                 {{"authorization", "Bearer " + api_key},
                                  {"body", telegram_only(std::to_string(1000 + i))}}));
  for (const auto& id : ids) {
    auto r = test::wait_result(*producer, kPrefix, id);
    ASSERT_TRUE(r) << id;
    EXPECT_EQ(Parsed(*r).str("state"), "delivered");
  }
  EXPECT_EQ(mock.request_list("telegram").size(), 40u) << "each job sent once";
  auto consumers = producer->exec(redis::cmd("XINFO", "CONSUMERS", std::string(kPrefix) + ":jobs",
                                             "cascade"));
  std::set<std::string> names;
  for (const auto& c : consumers.elements)
    names.insert(c.elements.at(1).str);
  EXPECT_TRUE(names.count("threaded")) << "loop 0 read";
  EXPECT_TRUE(names.count("threaded-1")) << "loop 1 read";
  asio::post(io, [&] { threaded.stop([&] { io.stop(); }); });
  loop.join();
  // Every loop's counts, summed.
  EXPECT_EQ(threaded.stats().delivered, 40u);
}

namespace {
// An embedder's channel that never answers (it ignores the deadline).
class SilentChannel final : public Channel {
 public:
  explicit SilentChannel(ChannelContext&) {}
  asio::awaitable<Outcome> send(const SendRequest&) override {
    asio::steady_timer forever(co_await asio::this_coro::executor);
    forever.expires_after(std::chrono::hours(1));
    co_await forever.async_wait(asio::use_awaitable);
    co_return Outcome::sent("never");
  }
};
}  // namespace

// A channel that does not honour its deadline is cut off by the engine's backstop timer
// (the deadline plus one second), and the cascade goes on: the job ends, nothing hangs.
TEST_F(EndToEnd, BackstopEndsAChannelThatNeverAnswers) {
  engine.reset();
  EngineConfig cfg;
  cfg.redis_url = redis.url();
  cfg.prefix = kPrefix;
  cfg.attempt_timeout = 200ms;
  cfg.channel_timeout = 300ms;
  cfg.retry.max_retries = 0;
  cfg.job_retry_delays = {};
  auto registry = ChannelRegistry::with_builtins();
  registry.add("telegram", [](ChannelContext& c) { return std::make_unique<SilentChannel>(c); });
  engine = std::make_unique<test::EngineThread>(cfg, std::move(registry));
  auto started = std::chrono::steady_clock::now();
  Parsed r(send(telegram_only()));
  auto took = std::chrono::steady_clock::now() - started;
  EXPECT_EQ(r.str("state"), "failed");
  ASSERT_EQ(r.attempts().size(), 1u);
  EXPECT_EQ(std::string_view(r.attempts().at(0)["error"].get_string().value()),
            "channel did not answer before its deadline");
  EXPECT_LT(took, 5s) << "cut off near the deadline + 1 s";
}
