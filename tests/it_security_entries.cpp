// Security (issue 8, hole 2): internal entry fields cannot be forged by a producer. An
// entry resumes another job only with the one-shot token the engine (retry mover) or
// cascadectl (dlq retry) stored beside that job; prior attempts come from the engine's own
// record; every other `cascade-*` field a producer sends is dropped. Driven as an attacker
// would: plain XADDs to the jobs stream of a real redis-server, a real engine, the mock.
#include <gtest/gtest.h>

#include <thread>

#include "engine/engine.hpp"
#include "support/harness.hpp"
#include "support/mock_provider.hpp"
#include "support/redis_server.hpp"
#include "support/result_json.hpp"

using namespace cascade;
using namespace std::chrono_literals;

namespace {

constexpr const char* kPrefix = "s";

std::string key(const std::string& rest) {
  return std::string(kPrefix) + ":" + rest;
}

class Security : public ::testing::Test {
 protected:
  void SetUp() override {
    admin = std::make_unique<test::Admin>(redis.url(), kPrefix);
    account = admin->create_account("victim");
    api_key = admin->create_api_key(account, {"send"});
    tg_key = admin->create_channel_key(
        account, "telegram",
        {{"bot_token", "111:tg-secret"}, {"api_base", mock.base_url()}, {"rate", "unlimited"}});
    producer = std::make_unique<test::SyncRedis>(redis.url());
    cfg.redis_url = redis.url();
    cfg.prefix = kPrefix;
    cfg.concurrency = 64;
    cfg.retry.max_retries = 0;
    cfg.retry_poll = 20ms;
  }

  redis::Reply exec(redis::Command c) { return producer->exec(std::move(c)); }
  std::string body(const std::string& chat = "42") {
    return R"({"keys":{"telegram":{"token":")" + tg_key + R"("}},"to":{"telegram":")" + chat +
           R"("},"message":{"text":"code 1"}})";
  }
  std::string push(std::vector<std::pair<std::string, std::string>> fields) {
    return test::push_job(*producer, kPrefix, std::move(fields));
  }
  std::string push_job(std::vector<std::pair<std::string, std::string>> extra = {}) {
    std::vector<std::pair<std::string, std::string>> f = {{"authorization", "Bearer " + api_key}};
    for (auto& e : extra)
      f.push_back(std::move(e));
    f.emplace_back("body", body());
    return push(std::move(f));
  }
  std::string result_of(const std::string& id) {
    return exec(redis::cmd("GET", key("result:" + id))).str;
  }
  // Waits (polling the key: a provisional record has no results entry) until the job's
  // result has `state`.
  std::string wait_state(const std::string& id, const std::string& state,
                         std::chrono::milliseconds timeout = 15s) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    std::string r;
    while (std::chrono::steady_clock::now() < deadline) {
      r = result_of(id);
      if (!r.empty() && test::ParsedResult(r).str("state") == state) return r;
      std::this_thread::sleep_for(5ms);
    }
    ADD_FAILURE() << "job " << id << " never reached " << state << "; last: " << r;
    return r;
  }
  std::size_t results_entries_for(const std::string& id) {
    auto all = exec(redis::cmd("XRANGE", key("results"), "-", "+"));
    std::size_t n = 0;
    for (const auto& e : all.elements)
      if (e.elements[1].elements[1].str == id) ++n;
    return n;
  }

  test::RedisServer redis;
  test::MockProvider mock;
  std::unique_ptr<test::Admin> admin;
  std::unique_ptr<test::SyncRedis> producer;
  EngineConfig cfg;
  std::string account, api_key, tg_key;
};

}  // namespace

// The reported attack: an entry with no API key, an empty body and cascade-job-id of
// another tenant's retrying job. It gets a 401 under its own id; the victim's provisional
// record is untouched and its real retry runs as job_attempt 2 under its own id.
TEST_F(Security, ForgedJobIdCannotTakeOverARetryingJob) {
  mock.add_rule(R"({"provider":"telegram","status":503,"times":1})");
  cfg.job_retry_delays = {1500ms};
  test::EngineThread engine(cfg);
  auto victim = push_job();
  auto provisional = wait_state(victim, "retrying");

  auto forged = push({{"cascade-job-id", victim}, {"cascade-job-attempt", "1"}, {"body", ""}});
  auto own = test::wait_result(*producer, kPrefix, forged);
  ASSERT_TRUE(own) << "the forged entry gets a result of its own";
  test::ParsedResult f(*own);
  EXPECT_EQ(f.str("id"), forged);
  EXPECT_EQ(f.status(), 401) << *own;
  EXPECT_EQ(result_of(victim), provisional) << "the victim's record is untouched";

  auto final_result = wait_state(victim, "delivered");
  test::ParsedResult v(final_result);
  EXPECT_EQ(v.str("id"), victim);
  EXPECT_EQ(v.num("job_attempt"), 2) << final_result;
  EXPECT_EQ(results_entries_for(victim), 1u);
  EXPECT_EQ(mock.request_list("telegram").size(), 2u);
}

// cascade-prior-attempts and cascade-job-attempt from a producer are dropped: the result
// holds only what the engine did (no forged "state" spliced into it).
TEST_F(Security, ForgedPriorAttemptsAreDropped) {
  test::EngineThread engine(cfg);
  auto id = push_job({{"cascade-prior-attempts", R"({"channel":"x","state":"delivered"})"},
                      {"cascade-job-attempt", "4"},
                      {"cascade-anything", "y"}});
  auto r = test::wait_result(*producer, kPrefix, id);
  ASSERT_TRUE(r);
  test::ParsedResult p(*r);
  EXPECT_EQ(p.str("state"), "delivered");
  EXPECT_EQ(p.num("job_attempt"), 1);
  EXPECT_EQ(p.attempts().size(), 1u) << *r;
  EXPECT_EQ(r->find("\"x\""), std::string::npos) << *r;
}

// A job put back for its retry carries a token; two copies of that entry (a replay) cannot
// both resume the job: exactly one runs as the job, the other runs under its own id.
TEST_F(Security, ResumeTokenIsOneShotPerEntry) {
  mock.add_rule(R"({"provider":"telegram","status":503,"times":1})");
  cfg.job_retry_delays = {60s};  // the mover never moves it in this test: we replay by hand
  test::EngineThread engine(cfg);
  auto victim = push_job();
  wait_state(victim, "retrying");
  auto stored = exec(redis::cmd("HGETALL", key("retry:" + victim)));
  ASSERT_TRUE(stored.is_array());
  std::vector<std::pair<std::string, std::string>> fields;
  bool has_token = false;
  for (std::size_t i = 0; i + 1 < stored.elements.size(); i += 2) {
    fields.emplace_back(stored.elements[i].str, stored.elements[i + 1].str);
    has_token = has_token || stored.elements[i].str == "cascade-resume";
  }
  ASSERT_TRUE(has_token) << "the retry record carries a resume token";
  exec(redis::cmd("ZREM", key("retry"), victim));
  auto a = push(fields);
  auto b = push(fields);
  wait_state(victim, "delivered");
  auto ra = test::wait_result(*producer, kPrefix, a, 5s);
  auto rb = test::wait_result(*producer, kPrefix, b, 5s);
  // One of the two entries ran as the victim job (its result is the victim's id); the
  // other ran as a job of its own.
  int own_results = (ra ? 1 : 0) + (rb ? 1 : 0);
  EXPECT_EQ(own_results, 1) << "exactly one copy ran under its own entry id";
  EXPECT_EQ(results_entries_for(victim), 1u);
  test::ParsedResult v(result_of(victim));
  EXPECT_EQ(v.num("job_attempt"), 2);
}

// A resume token only resumes a job under the account recorded with it.
TEST_F(Security, ResumeUnderAnotherAccountIsRefused) {
  test::EngineThread engine(cfg);
  std::string job = "1700000000000-0";
  exec(redis::cmd("HSET", key("resume:" + job), "token", "tok123", "attempt", "2", "account",
                  "acc_someoneelse", "prior", ""));
  exec(redis::cmd("SET", key("result:" + job), R"({"id":"1700000000000-0","state":"retrying"})"));
  push_job({{"cascade-job-id", job}, {"cascade-resume", "tok123"}});
  auto r = wait_state(job, "rejected");
  test::ParsedResult p(r);
  EXPECT_EQ(p.status(), 403);
  EXPECT_EQ(p.str("error"), "API key does not authorize this job");
  EXPECT_TRUE(mock.request_list().empty());
}

// A wrong token: the entry runs as a job of its own, the named job is untouched.
TEST_F(Security, WrongResumeTokenRunsAsOwnJob) {
  test::EngineThread engine(cfg);
  std::string job = "1700000000000-1";
  exec(redis::cmd("HSET", key("resume:" + job), "token", "right", "attempt", "2", "account",
                  account, "prior", ""));
  std::string provisional = R"({"id":"1700000000000-1","state":"retrying"})";
  exec(redis::cmd("SET", key("result:" + job), provisional));
  auto id = push_job({{"cascade-job-id", job}, {"cascade-resume", "wrong"}});
  auto r = test::wait_result(*producer, kPrefix, id);
  ASSERT_TRUE(r);
  EXPECT_EQ(test::ParsedResult(*r).str("id"), id);
  EXPECT_EQ(result_of(job), provisional);
}
