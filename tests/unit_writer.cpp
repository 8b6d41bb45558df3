// The writer's commands for a batch of job ends (engine/writer.hpp end_commands): pure,
// checked with literal inputs.
#include <gtest/gtest.h>

#include <algorithm>

#include "engine/writer.hpp"

using namespace cascade;

namespace {

JobEnd final_end(const std::string& entry) {
  JobEnd e;
  e.kind = JobEnd::Kind::final;
  e.entry = entry;
  e.id = entry;
  e.status = 200;
  e.json = R"({"id":")" + entry + R"(","state":"delivered"})";
  return e;
}

std::vector<redis::Command> commands_for(const std::vector<JobEnd>& ends) {
  EngineConfig config;
  keyspace::Keys keys("p");
  std::vector<const JobEnd*> ptrs;
  for (const auto& e : ends)
    ptrs.push_back(&e);
  return end_commands(keys, config, ptrs, 1'000'000);
}

std::size_t index_of(const std::vector<redis::Command>& cmds, const std::string& name,
                     const std::string& key) {
  for (std::size_t i = 0; i < cmds.size(); ++i)
    if (cmds[i][0] == name && cmds[i].size() > 1 && cmds[i][1] == key) return i;
  return cmds.size();
}

}  // namespace

// Three delivered jobs: a SET and an XADD each, then one XACK and one XDEL for all three.
TEST(Writer, BatchSharesOneAckAndOneDelete) {
  auto cmds = commands_for({final_end("1-0"), final_end("2-0"), final_end("3-0")});
  ASSERT_EQ(cmds.size(), 8u);
  for (std::size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(cmds[2 * i][0], "SET");
    EXPECT_EQ(cmds[2 * i][1], "p:result:" + std::to_string(i + 1) + "-0");
    EXPECT_EQ(cmds[2 * i][3], "EX");
    EXPECT_EQ(cmds[2 * i + 1][0], "XADD");
    EXPECT_EQ(cmds[2 * i + 1][1], "p:results");
  }
  EXPECT_EQ(cmds[6], redis::cmd("XACK", "p:jobs", "cascade", "1-0", "2-0", "3-0"));
  EXPECT_EQ(cmds[7], redis::cmd("XDEL", "p:jobs", "1-0", "2-0", "3-0"));
}

// Progress is deleted only when a record was written; the resume record only after the ack.
TEST(Writer, CleanUpsOnlyWhereNeededAndResumeAfterTheAck) {
  auto plain = final_end("1-0");
  auto resumed = final_end("9-0");
  resumed.id = "5-0";
  resumed.delete_progress = true;
  resumed.delete_resume = true;
  auto cmds = commands_for({plain, resumed});
  EXPECT_EQ(index_of(cmds, "DEL", "p:progress:1-0"), cmds.size());
  EXPECT_LT(index_of(cmds, "DEL", "p:progress:5-0"), cmds.size());
  auto ack = index_of(cmds, "XACK", "p:jobs");
  auto resume = index_of(cmds, "DEL", "p:resume:5-0");
  ASSERT_LT(resume, cmds.size());
  EXPECT_GT(resume, ack) << "a reclaimed copy must still prove itself until the ack";
  EXPECT_EQ(cmds[ack], redis::cmd("XACK", "p:jobs", "cascade", "1-0", "9-0"));
}

// A retry stores the entry's fields plus the job id and a fresh token, the resume record
// (token, attempt, account, prior attempts), the due time and the provisional result; it
// adds nothing to the results stream.
TEST(Writer, RetryStoresFieldsTokenAndResumeRecord) {
  JobEnd e;
  e.kind = JobEnd::Kind::retry;
  e.entry = "7-0";
  e.id = "7-0";
  e.json = R"({"state":"retrying"})";
  e.fields = {{"authorization", "Bearer x"}, {"body", "{}"}};
  e.next_due_ms = 1'005'000;
  e.resume.token = "tok";
  e.resume.attempt = 2;
  e.resume.account = "acc_1";
  e.resume.prior_attempts = R"({"channel":"telegram"})";
  auto cmds = commands_for({e});
  auto hset = cmds[index_of(cmds, "HSET", "p:retry:7-0")];
  EXPECT_EQ(hset, redis::cmd("HSET", "p:retry:7-0", "authorization", "Bearer x", "body", "{}",
                             "cascade-job-id", "7-0", "cascade-resume", "tok"));
  auto resume = cmds[index_of(cmds, "HSET", "p:resume:7-0")];
  EXPECT_EQ(resume, redis::cmd("HSET", "p:resume:7-0", "token", "tok", "attempt", "2", "account",
                               "acc_1", "prior", R"({"channel":"telegram"})"));
  EXPECT_LT(index_of(cmds, "ZADD", "p:retry"), cmds.size());
  EXPECT_EQ(cmds[index_of(cmds, "ZADD", "p:retry")][2], "1005000");
  EXPECT_EQ(index_of(cmds, "XADD", "p:results"), cmds.size());
  EXPECT_LT(index_of(cmds, "SET", "p:result:7-0"), cmds.size());
}

// A dead letter carries the producer's fields, the reason and the result.
TEST(Writer, DeadLetterCarriesFieldsReasonAndResult) {
  auto e = final_end("4-0");
  e.dead_reason = "unreadable entry";
  e.fields = {{"body", "not json"}};
  auto cmds = commands_for({e});
  auto dead = cmds[index_of(cmds, "XADD", "p:dead")];
  EXPECT_EQ(dead, redis::cmd("XADD", "p:dead", "MAXLEN", "~", "100000", "*", "id", "4-0", "body",
                             "not json", "reason", "unreadable entry", "result", e.json));
}

// A hostile field is kept cut at 8 KiB, and says how much was cut.
TEST(Writer, DeadLetterFieldsAreBounded) {
  auto e = final_end("5-0");
  e.dead_reason = "unreadable entry";
  e.fields = {{"body", std::string(100'000, 'x')}};
  auto cmds = commands_for({e});
  auto dead = cmds[index_of(cmds, "XADD", "p:dead")];
  const auto& body = dead.at(9);
  EXPECT_EQ(dead.at(8), "body");
  EXPECT_EQ(body.substr(0, 8192), std::string(8192, 'x'));
  EXPECT_EQ(body.substr(8192), "...[cut: 91808 more bytes]");
}

// An entry that only needs acknowledging writes nothing else.
TEST(Writer, AckOnlyWritesOnlyTheAck) {
  JobEnd e;
  e.kind = JobEnd::Kind::ack_only;
  e.entry = "3-0";
  auto cmds = commands_for({e});
  ASSERT_EQ(cmds.size(), 2u);
  EXPECT_EQ(cmds[0], redis::cmd("XACK", "p:jobs", "cascade", "3-0"));
  EXPECT_EQ(cmds[1], redis::cmd("XDEL", "p:jobs", "3-0"));
}
