// Delivery policies measured on the wire (cascade-mock-provider's recorded request
// times, never the test's own sleeps): unknown outcomes (on_unknown), a provider's
// retry-after, and per-channel-key pacing shared through Redis by several engines.
#include <gtest/gtest.h>
#include <simdjson.h>

#include <algorithm>

#include "support/harness.hpp"
#include "support/mock_provider.hpp"
#include "support/redis_server.hpp"
#include "support/result_json.hpp"

using namespace cascade;
using namespace std::chrono_literals;

namespace {

constexpr const char* kPrefix = "p";
constexpr const char* kBotToken = "222:pace-bot-secret";

using Parsed = test::ParsedResult;

class Policy : public ::testing::Test {
 protected:
  void SetUp() override {
    admin = std::make_unique<test::Admin>(redis.url(), kPrefix);
    account = admin->create_account("acme");
    api_key = admin->create_api_key(account, {"send"});
    producer = std::make_unique<test::SyncRedis>(redis.url());
  }

  EngineConfig config(const std::string& consumer = {}) {
    EngineConfig cfg;
    cfg.redis_url = redis.url();
    cfg.prefix = kPrefix;
    cfg.concurrency = 256;
    cfg.attempt_timeout = 3s;
    cfg.channel_timeout = 10s;
    cfg.retry.base = 20ms;
    cfg.consumer = consumer;
    return cfg;
  }

  std::string telegram_key(std::map<std::string, std::string, std::less<>> extra = {},
                           std::string* id = nullptr) {
    std::map<std::string, std::string, std::less<>> s = {{"bot_token", kBotToken},
                                                         {"api_base", mock.base_url()}};
    for (auto& [k, v] : extra)
      s[k] = v;
    return admin->create_channel_key(account, "telegram", s, id);
  }

  std::string push(const std::string& key, const std::string& chat) {
    auto body = R"({"keys":{"telegram":{"token":")" + key + R"("}},"to":{"telegram":")" + chat +
                R"("},"message":{"text":"hello"}})";
    return test::push_job(*producer, kPrefix,
                          {{"authorization", "Bearer " + api_key}, {"body", body}});
  }

  std::string result(const std::string& id) {
    auto r = test::wait_result(*producer, kPrefix, id, 30s);
    EXPECT_TRUE(r) << "no result for " << id;
    return r.value_or("{}");
  }

  // Pushes n jobs at once to one key and waits for all of them; returns the span between
  // the first and the last request the mock received, in seconds.
  double burst(const std::string& key, int n, const std::string& provider) {
    std::vector<std::string> ids;
    for (int i = 0; i < n; ++i)
      ids.push_back(push(key, std::to_string(1000 + i)));
    for (auto& id : ids) {
      Parsed r(result(id));
      EXPECT_EQ(r.status(), 200) << "pacing waits, it never fails";
    }
    auto reqs = mock.request_list(provider);
    EXPECT_EQ(reqs.size(), static_cast<std::size_t>(n));
    if (reqs.empty()) return 0;
    auto [lo, hi] = std::minmax_element(
        reqs.begin(), reqs.end(), [](auto& a, auto& b) { return a.received_us < b.received_us; });
    return static_cast<double>(hi->received_us - lo->received_us) / 1e6;
  }

  test::RedisServer redis;
  test::MockProvider mock;
  std::unique_ptr<test::Admin> admin;
  std::unique_ptr<test::SyncRedis> producer;
  std::string account, api_key;
};

}  // namespace

// The bot's reply is lost after the request was written: with on_unknown=fail the channel
// is not tried again (a duplicate would be worse than a failure) and the attempt says so.
TEST_F(Policy, UnknownOutcomeNotRetriedWhenPolicyIsFail) {
  auto key = telegram_key({{"on_unknown", "fail"}});
  test::EngineThread engine(config());
  mock.add_rule(R"({"provider":"telegram","action":"drop_after"})");
  Parsed r(result(push(key, "42")));
  EXPECT_EQ(r.status(), 502);
  EXPECT_EQ(r.tries(0), 1);
  EXPECT_TRUE(r.flag(0, "outcome_unknown"));
  EXPECT_FALSE(r.flag(0, "retryable"));
  EXPECT_EQ(mock.request_list("telegram").size(), 1u);
}

// By default (on_unknown=retry) the lost reply is retried in the tier: duplicates are
// accepted for this key, and the second try delivers.
TEST_F(Policy, UnknownOutcomeRetriedByDefault) {
  auto key = telegram_key();
  test::EngineThread engine(config());
  mock.add_rule(R"({"provider":"telegram","action":"drop_after","times":1})");
  Parsed r(result(push(key, "42")));
  EXPECT_EQ(r.status(), 200);
  EXPECT_EQ(r.tries(0), 2);
  EXPECT_EQ(mock.request_list("telegram").size(), 2u);
}

// Telegram 429 with retry_after=1, then success: the second request reaches the provider
// at least 1 s after the first one was answered (mock timestamps).
TEST_F(Policy, RetryAfterHonoured) {
  auto key = telegram_key();
  test::EngineThread engine(config());
  mock.add_rule(
      R"({"provider":"telegram","status":429,"retry_after":1,"description":"Too Many Requests: retry after 1","times":1})");
  Parsed r(result(push(key, "42")));
  EXPECT_EQ(r.status(), 200);
  EXPECT_EQ(r.tries(0), 2);
  auto reqs = mock.request_list("telegram");
  ASSERT_EQ(reqs.size(), 2u);
  EXPECT_EQ(reqs[0].status, 429);
  auto gap_us = reqs[1].received_us - reqs[0].responded_us;
  EXPECT_GE(gap_us, 1'000'000) << "waited " << gap_us << " us";
  EXPECT_LT(gap_us, 2'500'000) << "waited " << gap_us << " us";
  std::cout << "[ MEASURED ] retry_after=1 gap " << gap_us / 1000.0 << " ms\n";
}

// Telegram's default 30/s per bot (burst 30): 60 messages to one bot take at least
// (60 - 30) / 30 = 1 s on the wire. Slots are reserved on the Redis clock; the slack (50 ms)
// is the first request's own latency (it opens the HTTP connection) minus the last one's.
TEST_F(Policy, TelegramPacedAt30PerSecond) {
  std::string id;
  auto key = telegram_key({}, &id);
  test::EngineThread engine(config());
  const int n = 60;
  auto span = burst(key, n, "telegram");
  std::cout << "[ MEASURED ] " << n << " telegram sends at 30/s span " << span << " s\n";
  EXPECT_GE(span, (n - 30) / 30.0 - 0.05);
  EXPECT_LT(span, 3.0);
  auto pttl = producer->exec(redis::cmd("PTTL", std::string(kPrefix) + ":pace:" + id));
  EXPECT_GT(pttl.integer, 0) << "pace key expires";
}

// Two engines consume the same stream: the limit is per channel key, shared in Redis, so
// together they still need (N - 30) / 30 s.
TEST_F(Policy, PacingSharedByTwoEngines) {
  auto key = telegram_key();
  test::EngineThread one(config("worker-1"));
  test::EngineThread two(config("worker-2"));
  const int n = 60;
  auto span = burst(key, n, "telegram");
  std::cout << "[ MEASURED ] " << n << " telegram sends, two engines, span " << span << " s\n";
  EXPECT_GE(span, (n - 30) / 30.0 - 0.05);
  EXPECT_LT(span, 3.0);
}

// A key's own `rate` setting (cascadectl --rate 20/s:1) wins over the type default:
// 11 messages one interval apart take at least 10 x 50 ms.
TEST_F(Policy, ConfiguredRateSetting) {
  auto key = telegram_key({{"rate", "20/s:1"}});
  test::EngineThread engine(config());
  auto span = burst(key, 11, "telegram");
  std::cout << "[ MEASURED ] 11 sends at 20/s burst 1 span " << span << " s\n";
  EXPECT_GE(span, 0.5 - 0.05);
  EXPECT_LT(span, 2.0);
}

// The same through the operator's tool: `cascadectl channel create ... --rate 20/s:1
// --on-unknown fail` stores both settings; a malformed rate is refused.
TEST_F(Policy, CascadectlRateAndOnUnknownFlags) {
  auto ctl = [&](std::vector<std::string> args, int* status) {
    std::vector<std::string> argv = {
        test::tool_path("cascadectl"), "--redis", redis.url(), "--prefix", kPrefix, "--json"};
    argv.insert(argv.end(), args.begin(), args.end());
    auto run = test::run_tool(argv);
    *status = run.status;
    return run.out;
  };
  int status = -1;
  ctl({"channel", "create", "--account", account, "--type", "telegram", "--name", "bot",
       "--bot-token", kBotToken, "--api-base", mock.base_url(), "--rate", "fast"},
      &status);
  EXPECT_NE(status, 0) << "malformed --rate refused";
  auto out = ctl({"channel", "create", "--account", account, "--type", "telegram", "--name", "bot",
                  "--bot-token", kBotToken, "--api-base", mock.base_url(), "--rate", "20/s:1",
                  "--on-unknown", "fail"},
                 &status);
  ASSERT_EQ(status, 0) << out;
  simdjson::dom::parser parser;
  std::string key(parser.parse(out)["key"].get_string().value());
  test::EngineThread engine(config());
  auto span = burst(key, 11, "telegram");
  std::cout << "[ MEASURED ] cascadectl --rate 20/s:1, 11 sends span " << span << " s\n";
  EXPECT_GE(span, 0.5 - 0.05);
  mock.clear_requests();
  mock.add_rule(R"({"provider":"telegram","action":"drop_after"})");
  Parsed r(result(push(key, "42")));
  EXPECT_EQ(r.tries(0), 1) << "on_unknown=fail";
  EXPECT_TRUE(r.flag(0, "outcome_unknown"));
}
