// Heavy fault scenario (ctest label "chaos"; ~10 s, so in the default run too; tools/chaos.sh
// runs it alone): two cascaded workers, 20,000 jobs (CASCADE_CHAOS_JOBS), one worker kill -9'd
// mid-run and started again under the same consumer name. Every job must end with exactly
// one result; a provider request is repeated only for jobs that were in flight on the
// killed worker (their outcome was unknown), so duplicates are bounded by its concurrency.
#include <gtest/gtest.h>
#include <signal.h>

#include <cstdlib>
#include <iostream>
#include <map>
#include <set>
#include <thread>

#include "support/harness.hpp"
#include "support/mock_provider.hpp"
#include "support/process.hpp"
#include "support/redis_server.hpp"

using namespace cascade;
using namespace std::chrono_literals;

namespace {

constexpr const char* kPrefix = "c";
constexpr int kConcurrency = 64;

std::string key(const std::string& rest) {
  return std::string(kPrefix) + ":" + rest;
}

}  // namespace

TEST(Chaos, KillNineMidRunEveryJobOneResult) {
  int jobs = 20000;
  if (const char* n = std::getenv("CASCADE_CHAOS_JOBS")) jobs = std::atoi(n);
  test::TempDir dir;
  test::RedisServer redis;
  test::MockProvider mock({"--record-limit", std::to_string(jobs * 3)});
  mock.add_rule(R"({"provider":"telegram","delay_ms":5})");
  test::Admin admin(redis.url(), kPrefix);
  auto account = admin.create_account("acme");
  auto api_key = admin.create_api_key(account, {"send"});
  auto tg = admin.create_channel_key(
      account, "telegram",
      {{"bot_token", "111:x"}, {"api_base", mock.base_url()}, {"rate", "unlimited"}});
  test::SyncRedis r(redis.url());

  auto worker = [&](const std::string& name) {
    std::vector<std::string> argv = {test::tool_path("cascaded"),
                                     "--redis",
                                     redis.url(),
                                     "--prefix",
                                     kPrefix,
                                     "--consumer",
                                     name,
                                     "--concurrency",
                                     std::to_string(kConcurrency),
                                     "--reclaim-idle",
                                     "3s",
                                     "--log-level",
                                     "warn"};
    return std::make_unique<test::Process>(argv, std::vector<std::string>{},
                                           dir.path() + "/" + name + ".log");
  };

  auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < jobs; ++i) {
    auto body = R"({"keys":{"telegram":{"token":")" + tg + R"("}},"to":{"telegram":")" +
                std::to_string(1'000'000 + i) + R"("},"message":{"text":"chaos"}})";
    test::push_job(r, kPrefix, {{"authorization", "Bearer " + api_key}, {"body", body}});
  }
  auto pushed = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  auto w1 = worker("w1");
  auto w2 = worker("w2");
  auto results = [&] { return r.exec(redis::cmd("XLEN", key("results"))).integer; };
  while (results() < jobs / 3)
    std::this_thread::sleep_for(20ms);
  auto third = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  w1->signal(SIGKILL);
  w1->wait(5s);
  auto killed_at = results();
  w1 = worker("w1");  // same consumer name: runs its own pending entries at once

  auto deadline = std::chrono::steady_clock::now() + 300s;
  while (results() < jobs && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(50ms);
  auto elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

  // Exactly one results entry per job.
  std::map<std::string, int> per_job;
  std::string from = "-";
  for (;;) {
    auto page = r.exec(redis::cmd("XRANGE", key("results"), from, "+", "COUNT", "5000"));
    if (!page.is_array() || page.elements.empty()) break;
    for (const auto& e : page.elements) {
      const auto& kv = e.elements[1].elements;
      ++per_job[kv[1].str];
      EXPECT_EQ(kv[3].str, "200") << kv[1].str;
    }
    from = "(" + page.elements.back().elements[0].str;
  }
  EXPECT_EQ(per_job.size(), static_cast<std::size_t>(jobs));
  int twice = 0;
  for (const auto& [id, n] : per_job)
    twice += n > 1;
  EXPECT_EQ(twice, 0) << "jobs with more than one result";
  EXPECT_EQ(r.exec(redis::cmd("XLEN", key("jobs"))).integer, 0);

  // Each (job, channel) sent once, except the jobs in flight on the killed worker.
  std::map<std::string, int> per_chat;
  for (const auto& req : mock.request_list("telegram"))
    ++per_chat[req.recipient];
  int resent = 0;
  for (const auto& [chat, n] : per_chat)
    resent += n > 1;
  EXPECT_EQ(per_chat.size(), static_cast<std::size_t>(jobs)) << "every job sent";
  EXPECT_LE(resent, kConcurrency) << "re-sent beyond the killed worker's in-flight jobs";
  std::cout << "chaos: " << jobs << " jobs, 2 workers x " << kConcurrency << ", w1 killed at "
            << killed_at << " results; all results after " << elapsed << " s ("
            << static_cast<int>(jobs / elapsed) << " jobs/s incl. push); " << resent
            << " jobs re-sent (in flight at the kill), " << twice
            << " jobs with two results; pushed in " << pushed << " s, a third done at " << third
            << " s\n";
  w1->signal(SIGTERM);
  w2->signal(SIGTERM);
  EXPECT_EQ(w1->wait(15s).value_or(-1), 0);
  EXPECT_EQ(w2->wait(15s).value_or(-1), 0);
}
