// The pure parts of the cascade: tier planning, retry delays, result JSON.
#include <gtest/gtest.h>

#include "engine/result.hpp"
#include "engine/retry.hpp"
#include "engine/tier.hpp"

using namespace cascade;
using namespace std::chrono_literals;

namespace {
Job job_with(std::vector<std::pair<std::string, int>> channels) {
  Job j;
  for (auto& [name, seq] : channels) {
    ChannelUse u;
    u.channel = name;
    u.fallback = seq > 0;
    u.fallback_sequence = seq;
    j.channels.push_back(u);
  }
  return j;
}
}  // namespace

TEST(TierPlan, PrimariesFirstThenFallbacksAscending) {
  auto tiers = plan_tiers(job_with({{"email", 2}, {"whatsapp", 0}, {"telegram", 1}, {"waba", 0}}));
  ASSERT_EQ(tiers.size(), 3u);
  EXPECT_EQ(tiers[0].number, 0);
  EXPECT_EQ(tiers[0].channels, (std::vector<std::size_t>{1, 3}));
  EXPECT_EQ(tiers[1].number, 1);
  EXPECT_EQ(tiers[1].channels, (std::vector<std::size_t>{2}));
  EXPECT_EQ(tiers[2].number, 2);
  EXPECT_EQ(tiers[2].channels, (std::vector<std::size_t>{0}));
}

TEST(TierPlan, NoPrimariesMeansLowestTierFirst) {
  auto tiers = plan_tiers(job_with({{"email", 7}, {"telegram", 3}, {"waba", 3}}));
  ASSERT_EQ(tiers.size(), 2u);
  EXPECT_EQ(tiers[0].number, 3);
  EXPECT_EQ(tiers[0].channels.size(), 2u);
  EXPECT_EQ(tiers[1].number, 7);
}

TEST(RetryDelay, PermanentIsNeverRetried) {
  std::mt19937_64 rng(1);
  RetryPolicy p;
  auto o = Outcome::permanent("chat not found", Outcome::Cause::recipient);
  EXPECT_FALSE(retry_delay(o, 2, p, 10s, rng));
}

TEST(RetryDelay, TransientBackoffIsJitteredAndBounded) {
  std::mt19937_64 rng(1);
  RetryPolicy p;  // base 200ms, 2 retries
  auto o = Outcome::transient("provider returned 503");
  bool saw_different = false;
  std::chrono::milliseconds first{-1};
  for (int i = 0; i < 200; ++i) {
    auto d2 = retry_delay(o, 2, p, 10s, rng);
    ASSERT_TRUE(d2);
    EXPECT_LE(d2->count(), 200);
    auto d3 = retry_delay(o, 3, p, 10s, rng);
    ASSERT_TRUE(d3);
    EXPECT_LE(d3->count(), 400);
    if (first.count() >= 0 && *d2 != first) saw_different = true;
    first = *d2;
  }
  EXPECT_TRUE(saw_different) << "full jitter should vary";
  EXPECT_FALSE(retry_delay(o, 4, p, 10s, rng)) << "only 2 retries";
}

TEST(RetryDelay, RetryAfterHonouredOnlyWhenItFits) {
  std::mt19937_64 rng(1);
  RetryPolicy p;
  auto o = Outcome::after(2s, "telegram: too many requests");
  auto d = retry_delay(o, 2, p, 10s, rng);
  ASSERT_TRUE(d);
  EXPECT_EQ(*d, 2000ms);
  EXPECT_FALSE(retry_delay(o, 2, p, 1500ms, rng));
}

TEST(ResultJson, DeliveredCarriesAttemptsAndMetadata) {
  Result r;
  r.id = "1-0";
  r.status = 200;
  r.state = "delivered";
  r.account = "acc_x";
  r.delivered_via = {"telegram"};
  Attempt a;
  a.channel = "whatsapp";
  a.error = "provider returned 503";
  a.retryable = true;
  a.tries = 3;
  a.ms = 412.5;
  Attempt b;
  b.channel = "telegram";
  b.tier = 1;
  b.ok = true;
  b.provider_id = "8812";
  b.tries = 1;
  b.ms = 6.1;
  r.attempts = {a, b};
  r.metadata_json = R"({"order":"A-1042"})";
  r.finished_at = "2026-11-24T10:15:03.412Z";
  EXPECT_EQ(
      r.to_json(),
      R"({"id":"1-0","status":200,"state":"delivered","account":"acc_x","delivered_via":["telegram"],)"
      R"("attempts":[{"channel":"whatsapp","tier":0,"ok":false,"error":"provider returned 503","retryable":true,"tries":3,"ms":412.5},)"
      R"({"channel":"telegram","tier":1,"ok":true,"provider_id":"8812","tries":1,"ms":6.1}],)"
      R"("job_attempt":1,"metadata":{"order":"A-1042"},"finished_at":"2026-11-24T10:15:03.412Z"})");
}

TEST(ResultJson, RejectionCarriesErrorFieldAndRetryAfter) {
  auto r = Result::rejected("2-0", 400, "Invalid request: to.phone is required", "to.phone");
  r.finished_at = "t";
  EXPECT_EQ(
      r.to_json(),
      R"({"id":"2-0","status":400,"state":"rejected","error":"Invalid request: to.phone is required",)"
      R"("field":"to.phone","job_attempt":1,"finished_at":"t"})");
  auto l = Result::rejected("3-0", 429,
                            "Rate limit exceeded. Please wait 2 seconds before trying again.");
  l.retry_after = 2;
  EXPECT_NE(l.to_json().find(R"("retryAfter":2)"), std::string::npos);
}
