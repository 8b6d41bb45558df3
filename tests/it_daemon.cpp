// The real binaries: cascaded drained by SIGTERM, cascaded killed with SIGKILL and its jobs
// reclaimed by another, and cascadectl's dlq / stats commands.
#include <gtest/gtest.h>
#include <signal.h>
#include <simdjson.h>

#include <map>
#include <thread>

#include "engine/engine.hpp"
#include "support/harness.hpp"
#include "support/mock_provider.hpp"
#include "support/process.hpp"
#include "support/redis_server.hpp"

using namespace cascade;
using namespace std::chrono_literals;

namespace {

constexpr const char* kPrefix = "d";

std::string key(const std::string& rest) {
  return std::string(kPrefix) + ":" + rest;
}

class Daemon : public ::testing::Test {
 protected:
  void SetUp() override {
    admin = std::make_unique<test::Admin>(redis.url(), kPrefix);
    account = admin->create_account("acme");
    api_key = admin->create_api_key(account, {"send"});
    tg_key = admin->create_channel_key(
        account, "telegram", {{"bot_token", "111:tg-secret"}, {"api_base", mock.base_url()}});
    wa_key = admin->create_channel_key(
        account, "whatsapp",
        {{"api_base", mock.base_url()}, {"session", "default"}, {"gateway_key", "gw"}});
    producer = std::make_unique<test::SyncRedis>(redis.url());
  }

  std::unique_ptr<test::Process> cascaded(std::vector<std::string> args) {
    std::vector<std::string> argv = {test::tool_path("cascaded"),
                                     "--redis",
                                     redis.url(),
                                     "--prefix",
                                     kPrefix,
                                     "--log-level",
                                     "warn"};
    argv.insert(argv.end(), args.begin(), args.end());
    return std::make_unique<test::Process>(argv, std::vector<std::string>{},
                                           dir.path() + "/cascaded.log");
  }

  test::ToolRun ctl(std::vector<std::string> args) {
    std::vector<std::string> argv = {test::tool_path("cascadectl"), "--redis", redis.url(),
                                     "--prefix", kPrefix};
    argv.insert(argv.end(), args.begin(), args.end());
    return test::run_tool(argv);
  }

  std::string telegram_body(const std::string& chat) {
    return R"({"keys":{"telegram":{"token":")" + tg_key + R"("}},"to":{"telegram":")" + chat +
           R"("},"message":{"text":"code"}})";
  }
  std::string push(const std::string& body) {
    return test::push_job(*producer, kPrefix,
                          {{"authorization", "Bearer " + api_key}, {"body", body}});
  }
  redis::Reply exec(redis::Command c) { return producer->exec(std::move(c)); }
  std::int64_t pending() {
    auto p = exec(redis::cmd("XPENDING", key("jobs"), "cascade"));
    return p.is_array() && !p.elements.empty() ? p.elements[0].integer : 0;
  }
  bool wait_until(const std::function<bool()>& done, std::chrono::milliseconds timeout = 15s) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (!done()) {
      if (std::chrono::steady_clock::now() > deadline) return false;
      std::this_thread::sleep_for(20ms);
    }
    return true;
  }
  std::string result_of(const std::string& id) {
    auto r = exec(redis::cmd("GET", key("result:" + id)));
    return r.is_nil() ? "" : r.str;
  }

  test::TempDir dir;
  test::RedisServer redis;
  test::MockProvider mock;
  std::unique_ptr<test::Admin> admin;
  std::unique_ptr<test::SyncRedis> producer;
  std::string account, api_key, tg_key, wa_key;
};

}  // namespace

// SIGTERM: cascaded stops reading, finishes the jobs it started, exits 0; the jobs it had
// not started stay in the stream.
TEST_F(Daemon, SigtermDrainsStartedJobsAndExitsZero) {
  mock.add_rule(R"({"provider":"telegram","delay_ms":800})");
  std::vector<std::string> ids;
  for (int i = 0; i < 10; ++i)
    ids.push_back(push(telegram_body(std::to_string(500 + i))));
  auto d = cascaded({"--concurrency", "4", "--drain-timeout", "10s"});
  ASSERT_TRUE(wait_until([&] { return pending() == 4; })) << "pending " << pending();
  std::this_thread::sleep_for(200ms);
  d->signal(SIGTERM);
  auto status = d->wait(15s);
  ASSERT_TRUE(status);
  EXPECT_EQ(*status, 0);
  int done = 0;
  for (const auto& id : ids) {
    auto r = result_of(id);
    if (r.empty()) continue;
    ++done;
    EXPECT_NE(r.find("\"state\":\"delivered\""), std::string::npos) << r;
  }
  EXPECT_EQ(done, 4) << "every started job has its result";
  EXPECT_EQ(exec(redis::cmd("XLEN", key("jobs"))).integer, 6) << "unstarted jobs stay queued";
  EXPECT_EQ(pending(), 0);
  EXPECT_EQ(mock.request_list("telegram").size(), 4u);
}

// SIGKILL mid-job: another worker reclaims the jobs after --reclaim-idle; every job ends
// delivered, and a channel recorded as delivered is not sent again.
TEST_F(Daemon, KilledWorkersJobsAreReclaimed) {
  // telegram delivers at once (recorded in the progress); whatsapp hangs past the kill.
  mock.add_rule(R"({"provider":"whatsapp","delay_ms":3000,"times":8})");
  std::vector<std::string> ids;
  for (int i = 0; i < 8; ++i) {
    auto body = R"({"keys":{"telegram":{"token":")" + tg_key + R"("},"whatsapp":{"token":")" +
                wa_key + R"("}},"to":{"telegram":")" + std::to_string(700 + i) +
                R"(","phone":"+3361234567)" + std::to_string(i) + R"("},"message":{"text":"hi"}})";
    ids.push_back(push(body));
  }
  auto a = cascaded({"--consumer", "a", "--concurrency", "8", "--reclaim-idle", "1s"});
  ASSERT_TRUE(wait_until([&] { return mock.request_list("telegram").size() == 8; }));
  std::this_thread::sleep_for(300ms);
  a->signal(SIGKILL);
  a->wait(5s);
  auto b = cascaded({"--consumer", "b", "--reclaim-idle", "1s"});
  for (const auto& id : ids) {
    ASSERT_TRUE(wait_until([&] { return !result_of(id).empty(); }, 20s)) << id;
    EXPECT_NE(result_of(id).find("\"state\":\"delivered\""), std::string::npos);
  }
  std::map<std::string, int> tg;
  for (const auto& r : mock.request_list("telegram"))
    ++tg[r.recipient];
  EXPECT_EQ(tg.size(), 8u);
  for (const auto& [chat, n] : tg)
    EXPECT_EQ(n, 1) << "telegram sent twice to " << chat;
  EXPECT_EQ(pending(), 0);
  b->signal(SIGTERM);
  EXPECT_EQ(b->wait(15s).value_or(-1), 0);
}

// cascadectl dlq list / retry / purge and stats, on a job that exhausted its retries.
TEST_F(Daemon, DeadLettersListRetryPurgeAndStats) {
  mock.add_rule(R"({"provider":"telegram","status":503})");
  EngineConfig cfg;
  cfg.redis_url = redis.url();
  cfg.prefix = kPrefix;
  cfg.retry.max_retries = 0;
  cfg.job_retry_delays = {50ms};
  cfg.retry_poll = 20ms;
  auto engine = std::make_unique<test::EngineThread>(cfg);
  auto first = push(telegram_body("900"));
  auto second = push(telegram_body("901"));
  ASSERT_TRUE(wait_until([&] { return exec(redis::cmd("XLEN", key("dead"))).integer == 2; }));

  auto list = ctl({"dlq", "list"});
  EXPECT_EQ(list.status, 0);
  EXPECT_NE(list.out.find(first), std::string::npos);
  EXPECT_NE(list.out.find("retries exhausted"), std::string::npos) << list.out;
  EXPECT_EQ(list.out.find(api_key), std::string::npos) << "API key printed";
  EXPECT_EQ(list.out.find(tg_key), std::string::npos) << "channel key printed";
  EXPECT_LT(list.out.find(second), list.out.find(first)) << "newest first";

  auto page = ctl({"--json", "dlq", "list", "--count", "1"});
  EXPECT_EQ(page.status, 0);
  simdjson::dom::parser parser;
  auto doc = parser.parse(page.out);
  ASSERT_EQ(doc["entries"].get_array().size(), 1u);
  EXPECT_EQ(std::string_view(doc["entries"].at(0)["id"].get_string().value()), second);
  EXPECT_EQ(std::string_view(doc["entries"].at(0)["fields"]["authorization"].get_string().value()),
            "Bearer ***");
  std::string_view next = doc["next"].get_string().value();
  auto page2 = ctl({"--json", "dlq", "list", "--count", "1", "--before", std::string(next)});
  simdjson::dom::parser parser2;
  auto doc2 = parser2.parse(page2.out);
  ASSERT_EQ(doc2["entries"].get_array().size(), 1u);
  EXPECT_EQ(std::string_view(doc2["entries"].at(0)["id"].get_string().value()), first);

  auto stats = ctl({"--json", "stats"});
  EXPECT_EQ(stats.status, 0);
  simdjson::dom::parser parser3;
  auto s = parser3.parse(stats.out);
  EXPECT_EQ(s["dead"].get_int64().value(), 2);
  EXPECT_EQ(s["results"].get_int64().value(), 2);
  EXPECT_EQ(s["queue"].get_int64().value(), 0);
  EXPECT_EQ(s["retrying"].get_int64().value(), 0);
  EXPECT_EQ(s["finished_per_s"].get_int64().value(), 0) << "nothing finishes meanwhile";

  // The provider recovers: the retried job is delivered under its original id.
  mock.clear_rules();
  auto retry = ctl({"dlq", "retry", first});
  EXPECT_EQ(retry.status, 0) << retry.out;
  ASSERT_TRUE(wait_until(
      [&] { return result_of(first).find("\"state\":\"delivered\"") != std::string::npos; }));
  EXPECT_EQ(exec(redis::cmd("XLEN", key("dead"))).integer, 1);
  EXPECT_EQ(ctl({"dlq", "retry", "1-1"}).status, 1) << "unknown job";

  auto purge = ctl({"--json", "dlq", "purge"});
  EXPECT_EQ(purge.status, 0);
  EXPECT_NE(purge.out.find("\"purged\":1"), std::string::npos) << purge.out;
  EXPECT_EQ(exec(redis::cmd("XLEN", key("dead"))).integer, 0);
  EXPECT_NE(ctl({"dlq", "list"}).out.find("no dead letters"), std::string::npos);
}

// The new flags are validated like the others (exit 2 with a message).
TEST_F(Daemon, RetryAndReclaimFlagsAreValidated) {
  for (const auto& args : std::vector<std::vector<std::string>>{{"--job-retry-delays", "5s,soon"},
                                                                {"--job-retry-delays", ""},
                                                                {"--reclaim-idle", "0s"},
                                                                {"--reclaim-idle", "x"},
                                                                {"--http-max-per-host", "0"},
                                                                {"--http-max-per-host", "x"}}) {
    auto d = cascaded(args);
    EXPECT_EQ(d->wait(10s).value_or(-1), 2) << args[0] << " " << args[1];
  }
}
