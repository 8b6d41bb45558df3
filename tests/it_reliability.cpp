// "Nothing lost, nothing sent twice" (issue 5): crash recovery (reclaim, own pending,
// per-job delivery progress), job-level retries, idempotency keys and Redis failures,
// against a real redis-server and cascade-mock-provider.
#include <gtest/gtest.h>
#include <simdjson.h>

#include <algorithm>
#include <map>
#include <thread>

#include "engine/engine.hpp"
#include "support/harness.hpp"
#include "support/mock_provider.hpp"
#include "support/redis_server.hpp"
#include "support/result_json.hpp"

using namespace cascade;
using namespace std::chrono_literals;

namespace {

constexpr const char* kPrefix = "r";

using Parsed = test::ParsedResult;

std::string key(const std::string& rest) {
  return std::string(kPrefix) + ":" + rest;
}

class Reliability : public ::testing::Test {
 protected:
  explicit Reliability(std::vector<std::string> redis_args = {})
      : redis(std::make_unique<test::RedisServer>(std::move(redis_args))) {}

  void SetUp() override {
    admin = std::make_unique<test::Admin>(redis->url(), kPrefix);
    account = admin->create_account("acme");
    api_key = admin->create_api_key(account, {"send"});
    tg_key = admin->create_channel_key(
        account, "telegram",
        {{"bot_token", "111:tg-secret"}, {"api_base", mock.base_url()}, {"rate", "unlimited"}});
    wa_key = admin->create_channel_key(
        account, "whatsapp",
        {{"api_base", mock.base_url()}, {"session", "default"}, {"gateway_key", "gw"}});
    producer = std::make_unique<test::SyncRedis>(redis->url());
    cfg.redis_url = redis->url();
    cfg.prefix = kPrefix;
    cfg.concurrency = 64;
    cfg.attempt_timeout = 3s;
    cfg.channel_timeout = 10s;
    cfg.retry.base = 20ms;
    cfg.job_retry_delays = {200ms, 200ms, 200ms};
    cfg.retry_poll = 50ms;
  }

  void start(EngineConfig c) { engines.push_back(std::make_unique<test::EngineThread>(c)); }
  void start() { start(cfg); }

  redis::Reply exec(redis::Command c) { return producer->exec(std::move(c)); }

  std::string telegram_body(const std::string& chat = "42") {
    return R"({"keys":{"telegram":{"token":")" + tg_key + R"("}},"to":{"telegram":")" + chat +
           R"("},"message":{"text":"code 1"}})";
  }
  std::string two_primaries() {
    return R"({"keys":{"telegram":{"token":")" + tg_key + R"("},"whatsapp":{"token":")" + wa_key +
           R"("}},"to":{"telegram":"42","phone":"+33612345678"},"message":{"text":"hi"}})";
  }
  std::string push(const std::string& body,
                   std::vector<std::pair<std::string, std::string>> extra = {},
                   const std::string& ak = "") {
    std::vector<std::pair<std::string, std::string>> fields = {
        {"authorization", "Bearer " + (ak.empty() ? api_key : ak)}};
    for (auto& f : extra)
      fields.push_back(std::move(f));
    fields.emplace_back("body", body);
    return test::push_job(*producer, kPrefix, std::move(fields));
  }
  // Leaves the entry pending on `consumer`, as a worker that read it and died would.
  void take_as(const std::string& consumer) {
    exec(redis::cmd("XGROUP", "CREATE", key("jobs"), "cascade", "0", "MKSTREAM"));
    auto r = exec(redis::cmd("XREADGROUP", "GROUP", "cascade", consumer, "COUNT", "100", "STREAMS",
                             key("jobs"), ">"));
    ASSERT_TRUE(r.is_array()) << r.str;
  }
  // The final result (not the provisional "retrying" one), polling the result key.
  std::optional<std::string> final_result(const std::string& id,
                                          std::chrono::milliseconds timeout = 20s) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
      auto r = exec(redis::cmd("GET", key("result:" + id)));
      if (!r.is_nil() && !r.is_error() && r.str.find("\"state\":\"retrying\"") == std::string::npos)
        return r.str;
      std::this_thread::sleep_for(10ms);
    }
    return std::nullopt;
  }
  void wait_until(const std::function<bool()>& done, std::chrono::milliseconds timeout = 10s) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (!done() && std::chrono::steady_clock::now() < deadline)
      std::this_thread::sleep_for(10ms);
  }
  // How many of `ids` have no "delivered" result within 60 s. Results may still change
  // (a provisional "retrying" record, a rewrite after the outage), so this re-checks the
  // result keys until all are final or the deadline passes.
  int undelivered_after_faults(const std::vector<std::string>& ids) {
    auto deadline = std::chrono::steady_clock::now() + 60s;
    int missing = static_cast<int>(ids.size());
    while (std::chrono::steady_clock::now() < deadline) {
      missing = 0;
      try {
        for (const auto& id : ids) {
          auto r = exec(redis::cmd("GET", key("result:" + id)));
          if (r.is_nil() || r.str.find("\"delivered\"") == std::string::npos) ++missing;
        }
      } catch (const redis::Error&) {
        missing = static_cast<int>(ids.size());
      }
      if (missing == 0) break;
      std::this_thread::sleep_for(100ms);
    }
    return missing;
  }
  std::int64_t xlen(const std::string& k) { return exec(redis::cmd("XLEN", key(k))).integer; }
  std::int64_t pending() {
    auto p = exec(redis::cmd("XPENDING", key("jobs"), "cascade"));
    return p.is_array() && !p.elements.empty() ? p.elements[0].integer : -1;
  }

  std::unique_ptr<test::RedisServer> redis;
  test::MockProvider mock;
  std::unique_ptr<test::Admin> admin;
  std::unique_ptr<test::SyncRedis> producer;
  std::vector<std::unique_ptr<test::EngineThread>> engines;
  EngineConfig cfg;
  std::string account, api_key, tg_key, wa_key;
};

}  // namespace

// A worker read the job and died: another worker claims it after reclaim_idle and runs it.
TEST_F(Reliability, ReclaimsJobsOfADeadWorker) {
  auto id = push(telegram_body());
  take_as("dead-worker");
  cfg.reclaim_idle = 300ms;
  start();
  auto r = final_result(id);
  ASSERT_TRUE(r);
  Parsed p(*r);
  EXPECT_EQ(p.str("state"), "delivered");
  EXPECT_EQ(mock.request_list("telegram").size(), 1u);
  wait_until([&] { return xlen("jobs") == 0 && pending() == 0; });
  EXPECT_EQ(xlen("jobs"), 0);
  EXPECT_EQ(pending(), 0);
}

// A worker started under the same consumer name runs its own pending entries first.
TEST_F(Reliability, RunsOwnPendingEntriesOnStart) {
  auto id = push(telegram_body());
  take_as("worker-1");
  cfg.consumer = "worker-1";
  cfg.reclaim_idle = 1h;  // only the pending scan can find it
  start();
  auto r = final_result(id, 10s);
  ASSERT_TRUE(r);
  EXPECT_EQ(Parsed(*r).str("state"), "delivered");
}

// A re-run after a crash does not send again a channel its progress record lists.
TEST_F(Reliability, ReRunSkipsChannelsAlreadyDelivered) {
  auto id = push(two_primaries());
  take_as("dead-worker");
  exec(redis::cmd("HSET", key("progress:" + id), "telegram", "777"));
  cfg.reclaim_idle = 200ms;
  start();
  auto r = final_result(id);
  ASSERT_TRUE(r);
  Parsed p(*r);
  EXPECT_EQ(p.str("state"), "delivered");
  EXPECT_TRUE(mock.request_list("telegram").empty()) << "telegram was delivered before the crash";
  EXPECT_EQ(mock.request_list("whatsapp").size(), 1u);
  bool saw_telegram = false;
  for (auto a : p.attempts()) {
    if (std::string_view(a["channel"].get_string().value()) != "telegram") continue;
    saw_telegram = true;
    EXPECT_TRUE(a["ok"].get_bool().value());
    EXPECT_EQ(std::string_view(a["provider_id"].get_string().value()), "777");
    EXPECT_EQ(a["tries"].get_int64().value(), 0);
  }
  EXPECT_TRUE(saw_telegram);
  EXPECT_EQ(exec(redis::cmd("EXISTS", key("progress:" + id))).integer, 0)
      << "progress is dropped with the final result";
}

// Delivery progress is written right after the channel delivers, before the job ends.
TEST_F(Reliability, ProgressIsRecordedBeforeTheJobEnds) {
  // whatsapp answers after 1.5 s; telegram at once: its progress shows while whatsapp waits.
  mock.add_rule(R"({"provider":"whatsapp","delay_ms":1500})");
  start();
  auto id = push(two_primaries());
  std::string seen;
  wait_until([&] {
    auto r = exec(redis::cmd("HGET", key("progress:" + id), "telegram"));
    seen = r.str;
    return !r.is_nil();
  });
  EXPECT_FALSE(seen.empty()) << "telegram's provider id recorded";
  EXPECT_TRUE(exec(redis::cmd("GET", key("result:" + id))).is_nil());
  auto r = final_result(id);
  ASSERT_TRUE(r);
  EXPECT_EQ(Parsed(*r).str("state"), "delivered");
}

// A job whose final result exists (crash between result and ack) is only acked.
TEST_F(Reliability, JobWithAResultIsOnlyAcked) {
  auto id = push(telegram_body());
  take_as("dead-worker");
  std::string done = R"({"id":")" + id + R"(","status":200,"state":"delivered"})";
  exec(redis::cmd("SET", key("result:" + id), done));
  cfg.reclaim_idle = 200ms;
  start();
  wait_until([&] { return xlen("jobs") == 0 && pending() == 0; });
  EXPECT_EQ(xlen("jobs"), 0);
  EXPECT_EQ(pending(), 0);
  EXPECT_TRUE(mock.request_list().empty());
  EXPECT_EQ(exec(redis::cmd("GET", key("result:" + id))).str, done);
}

// A channel failing transiently for two job attempts, then recovering: delivered on
// job_attempt 3, under the original id, with one results entry.
TEST_F(Reliability, TransientFailureIsRetriedAsAJob) {
  mock.add_rule(R"({"provider":"telegram","status":503,"times":2})");
  cfg.retry.max_retries = 0;  // one try per job attempt
  start();
  auto id = push(telegram_body());
  // The provisional record while the job waits.
  std::string provisional;
  wait_until([&] {
    auto r = exec(redis::cmd("GET", key("result:" + id)));
    provisional = r.str;
    return !r.is_nil();
  });
  Parsed prov(provisional);
  EXPECT_EQ(prov.str("state"), "retrying") << provisional;
  EXPECT_FALSE(prov.str("next_attempt_at").empty());
  EXPECT_EQ(prov.num("job_attempt"), 1);
  EXPECT_EQ(prov.attempts().size(), 1u);
  auto r = final_result(id);
  ASSERT_TRUE(r);
  Parsed p(*r);
  EXPECT_EQ(p.str("state"), "delivered") << *r;
  EXPECT_EQ(p.str("id"), id);
  EXPECT_EQ(p.num("job_attempt"), 3);
  EXPECT_EQ(mock.request_list("telegram").size(), 3u);
  // Every job attempt's attempts, in order, each with its job attempt number.
  auto all = p.attempts();
  ASSERT_EQ(all.size(), 3u) << *r;
  for (std::size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(all.at(i)["job_attempt"].get_int64().value(), static_cast<std::int64_t>(i + 1));
    EXPECT_EQ(all.at(i)["ok"].get_bool().value(), i == 2);
  }
  auto results = exec(redis::cmd("XRANGE", key("results"), "-", "+"));
  ASSERT_EQ(results.elements.size(), 1u) << "one results entry, when the job ends";
  EXPECT_EQ(results.elements[0].elements[1].elements[1].str, id);
  EXPECT_EQ(exec(redis::cmd("ZCARD", key("retry"))).integer, 0);
  wait_until([&] { return xlen("jobs") == 0; });
  EXPECT_EQ(xlen("jobs"), 0);
}

// Every failure permanent: 502 at once, no job retry.
TEST_F(Reliability, PermanentFailureIsNotRetried) {
  mock.add_rule(
      R"({"provider":"telegram","status":400,"description":"Bad Request: chat not found"})");
  start();
  auto id = push(telegram_body());
  auto r = final_result(id);
  ASSERT_TRUE(r);
  Parsed p(*r);
  EXPECT_EQ(p.num("status"), 502);
  EXPECT_EQ(p.num("job_attempt"), 1);
  std::this_thread::sleep_for(400ms);
  EXPECT_EQ(mock.request_list("telegram").size(), 1u);
  EXPECT_EQ(exec(redis::cmd("ZCARD", key("retry"))).integer, 0);
  EXPECT_EQ(xlen("dead"), 0);
}

// Retries exhausted: 502 and a dead letter with the original fields, reason and result.
TEST_F(Reliability, ExhaustedRetriesGoToTheDeadLetters) {
  mock.add_rule(R"({"provider":"telegram","status":503})");
  cfg.retry.max_retries = 0;
  cfg.job_retry_delays = {100ms, 100ms};
  start();
  auto id = push(telegram_body(), {{"x-trace", "t-1"}});
  auto r = final_result(id);
  ASSERT_TRUE(r);
  Parsed p(*r);
  EXPECT_EQ(p.num("status"), 502);
  EXPECT_EQ(p.str("state"), "failed");
  EXPECT_EQ(p.num("job_attempt"), 3);
  EXPECT_EQ(mock.request_list("telegram").size(), 3u);
  auto dead = exec(redis::cmd("XRANGE", key("dead"), "-", "+"));
  ASSERT_EQ(dead.elements.size(), 1u);
  std::map<std::string, std::string> f;
  const auto& kv = dead.elements[0].elements[1].elements;
  for (std::size_t i = 0; i + 1 < kv.size(); i += 2)
    f[kv[i].str] = kv[i + 1].str;
  EXPECT_EQ(f["id"], id);
  EXPECT_EQ(f["x-trace"], "t-1");
  EXPECT_EQ(f["body"], telegram_body());
  EXPECT_NE(f["reason"].find("exhausted"), std::string::npos) << f["reason"];
  EXPECT_EQ(f["result"], *r);
  EXPECT_EQ(f.count("cascade-job-id"), 0u) << "internal fields stay out";
}

// Two workers move due retries: each job is moved (and run) once.
TEST_F(Reliability, TwoWorkersMoveEachRetryOnce) {
  mock.add_rule(R"({"provider":"telegram","status":503,"times":20})");
  cfg.retry.max_retries = 0;
  cfg.job_retry_delays = {100ms};
  cfg.retry_poll = 10ms;
  start();
  start();
  std::vector<std::string> ids;
  for (int i = 0; i < 20; ++i)
    ids.push_back(push(telegram_body(std::to_string(1000 + i))));
  for (const auto& id : ids) {
    auto r = final_result(id);
    ASSERT_TRUE(r);
  }
  // 20 failures (first attempts) + one second attempt per job.
  auto sent = mock.request_list("telegram");
  EXPECT_EQ(sent.size(), 40u);
  std::map<std::string, int> per_chat;
  for (const auto& s : sent)
    ++per_chat[s.recipient];
  for (const auto& [chat, n] : per_chat)
    EXPECT_EQ(n, 2) << chat;
}

// idempotency-key: the second job of the account with the same key is a 409 duplicate.
TEST_F(Reliability, IdempotencyKeyDuplicateIsNotSent) {
  start();
  auto first = push(telegram_body(), {{"idempotency-key", "order-1042"}});
  auto r1 = final_result(first);
  ASSERT_TRUE(r1);
  EXPECT_EQ(Parsed(*r1).str("state"), "delivered");
  auto second = push(telegram_body(), {{"idempotency-key", "order-1042"}});
  auto r2 = final_result(second);
  ASSERT_TRUE(r2);
  Parsed p(*r2);
  EXPECT_EQ(p.num("status"), 409);
  EXPECT_EQ(p.str("state"), "duplicate");
  EXPECT_EQ(p.str("duplicate_of"), first);
  EXPECT_EQ(mock.request_list("telegram").size(), 1u);
  // Another key, and the same key for another account, are sent.
  auto other = push(telegram_body(), {{"idempotency-key", "order-1043"}});
  EXPECT_EQ(Parsed(*final_result(other)).str("state"), "delivered");
  auto acc2 = admin->create_account("other");
  auto ak2 = admin->create_api_key(acc2, {"send"});
  auto tg2 = admin->create_channel_key(acc2, "telegram",
                                       {{"bot_token", "222:x"}, {"api_base", mock.base_url()}});
  auto body2 = R"({"keys":{"telegram":{"token":")" + tg2 +
               R"("}},"to":{"telegram":"42"},"message":{"text":"x"}})";
  auto theirs = push(body2, {{"idempotency-key", "order-1042"}}, ak2);
  EXPECT_EQ(Parsed(*final_result(theirs)).str("state"), "delivered");
  EXPECT_EQ(mock.request_list("telegram").size(), 3u);
}

TEST_F(Reliability, InvalidIdempotencyKeysAre400) {
  start();
  for (const std::string& bad :
       {std::string(), std::string(256, 'k'), std::string("a\tb"), std::string("caf\xc3\xa9")}) {
    auto id = push(telegram_body(), {{"idempotency-key", bad}});
    auto r = final_result(id);
    ASSERT_TRUE(r);
    Parsed p(*r);
    EXPECT_EQ(p.num("status"), 400) << bad;
    EXPECT_EQ(p.str("field"), "idempotency-key");
    EXPECT_TRUE(p.str("error").starts_with("Invalid request: ")) << p.str("error");
  }
  auto ok = push(telegram_body(), {{"idempotency-key", std::string(255, 'k')}});
  EXPECT_EQ(Parsed(*final_result(ok)).str("state"), "delivered");
  EXPECT_EQ(mock.request_list("telegram").size(), 1u);
}

// Two workers racing on two jobs with the same key: exactly one is sent.
TEST_F(Reliability, IdempotencyRaceBetweenTwoWorkers) {
  mock.add_rule(R"({"provider":"telegram","delay_ms":100})");
  start();
  start();
  for (int round = 0; round < 5; ++round) {
    auto k = "race-" + std::to_string(round);
    auto a = push(telegram_body(), {{"idempotency-key", k}});
    auto b = push(telegram_body(), {{"idempotency-key", k}});
    Parsed ra(*final_result(a));
    Parsed rb(*final_result(b));
    std::vector<std::string> states = {ra.str("state"), rb.str("state")};
    std::sort(states.begin(), states.end());
    EXPECT_EQ(states, (std::vector<std::string>{"delivered", "duplicate"}));
    EXPECT_EQ(ra.str("state") == "duplicate" ? ra.str("duplicate_of") : rb.str("duplicate_of"),
              ra.str("state") == "duplicate" ? b : a);
  }
  EXPECT_EQ(mock.request_list("telegram").size(), 5u);
}

namespace {
class RedisFaults : public Reliability {
 protected:
  RedisFaults() : Reliability({"--appendonly", "yes", "--appendfsync", "everysec"}) {}
};
}  // namespace

// Redis is killed and restarted mid-run: every job still gets its result, each sent once.
TEST_F(RedisFaults, RestartMidRunLosesNothing) {
  mock.add_rule(R"({"provider":"telegram","delay_ms":50})");
  cfg.concurrency = 32;
  start();
  constexpr int kJobs = 300;
  std::vector<std::string> ids;
  for (int i = 0; i < kJobs; ++i)
    ids.push_back(push(telegram_body(std::to_string(100000 + i))));
  wait_until([&] { return xlen("results") >= 60; });
  redis->restart();
  producer = std::make_unique<test::SyncRedis>(redis->url());
  EXPECT_EQ(undelivered_after_faults(ids), 0);
  std::map<std::string, int> per_chat;
  for (const auto& s : mock.request_list("telegram"))
    ++per_chat[s.recipient];
  EXPECT_EQ(per_chat.size(), static_cast<std::size_t>(kJobs));
  int twice = 0;
  for (const auto& [chat, n] : per_chat)
    twice += n > 1;
  EXPECT_EQ(twice, 0) << "jobs sent more than once";
  EXPECT_EQ(xlen("results"), kJobs);
  wait_until([&] { return xlen("jobs") == 0; });
  EXPECT_EQ(xlen("jobs"), 0);
}

// A producer's entry naming a finished job's id in cascade-job-id runs as a job of its own:
// it cannot overwrite (or silently swallow) another job's result.
TEST_F(Reliability, ForeignJobIdFieldCannotOverwriteAResult) {
  start();
  auto first = push(telegram_body());
  auto r1 = final_result(first);
  ASSERT_TRUE(r1);
  auto spoof = push(telegram_body("43"), {{"cascade-job-id", first}});
  auto r2 = final_result(spoof);
  ASSERT_TRUE(r2) << "runs under its own entry id";
  EXPECT_EQ(Parsed(*r2).str("state"), "delivered");
  EXPECT_EQ(exec(redis::cmd("GET", key("result:" + first))).str, *r1);
  EXPECT_EQ(mock.request_list("telegram").size(), 2u);
}

// The stream and its group vanish (FLUSHALL): the consumer re-creates the group and goes on.
TEST_F(Reliability, RecreatesTheGroupAfterFlushall) {
  start();
  auto first = push(telegram_body());
  ASSERT_TRUE(final_result(first));
  exec(redis::cmd("FLUSHALL"));
  admin = std::make_unique<test::Admin>(redis->url(), kPrefix);
  account = admin->create_account("acme");
  api_key = admin->create_api_key(account, {"send"});
  tg_key = admin->create_channel_key(
      account, "telegram", {{"bot_token", "111:tg-secret"}, {"api_base", mock.base_url()}});
  auto second = push(telegram_body());
  auto r = final_result(second, 15s);
  ASSERT_TRUE(r);
  EXPECT_EQ(Parsed(*r).str("state"), "delivered") << *r;
}

// Redis is gone for two seconds while jobs are being sent: the sends finish, their results
// are written once Redis is back (not re-run), and nothing is lost or sent twice.
TEST_F(RedisFaults, OutageOfSecondsWhileSending) {
  mock.add_rule(R"({"provider":"telegram","delay_ms":300})");
  cfg.concurrency = 50;
  start();
  constexpr int kJobs = 100;
  std::vector<std::string> ids;
  for (int i = 0; i < kJobs; ++i)
    ids.push_back(push(telegram_body(std::to_string(200000 + i))));
  wait_until([&] { return mock.request_list("telegram").size() >= 20; });
  redis->stop();
  std::this_thread::sleep_for(2s);
  redis->restart();
  producer = std::make_unique<test::SyncRedis>(redis->url());
  EXPECT_EQ(undelivered_after_faults(ids), 0);
  std::map<std::string, int> per_chat;
  for (const auto& s : mock.request_list("telegram"))
    ++per_chat[s.recipient];
  EXPECT_EQ(per_chat.size(), static_cast<std::size_t>(kJobs));
  for (const auto& [chat, n] : per_chat)
    EXPECT_EQ(n, 1) << chat;
  EXPECT_EQ(xlen("results"), kJobs);
}

// A job slower than reclaim_idle is not taken from the live worker running it (the worker
// refreshes its own entries), so it is sent once.
TEST_F(Reliability, SlowJobsAreNotReclaimedFromALiveWorker) {
  mock.add_rule(R"({"provider":"telegram","delay_ms":1500})");
  cfg.reclaim_idle = 300ms;
  start();
  start();
  std::vector<std::string> ids;
  for (int i = 0; i < 6; ++i)
    ids.push_back(push(telegram_body(std::to_string(3000 + i))));
  for (const auto& id : ids) {
    auto r = final_result(id);
    ASSERT_TRUE(r);
    EXPECT_EQ(Parsed(*r).str("state"), "delivered");
  }
  std::this_thread::sleep_for(500ms);
  EXPECT_EQ(mock.request_list("telegram").size(), 6u) << "a slow job was run twice";
  EXPECT_EQ(xlen("results"), 6);
}
