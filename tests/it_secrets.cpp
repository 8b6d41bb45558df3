// Provider credentials at rest (SPEC §2): sealed with the master key by the real
// cascadectl, opened only in the real cascaded's memory. After channel keys with every
// kind of credential are made, no key of the Redis keyspace holds one in the clear; a job
// still delivers with the opened token; without a master key both tools refuse and say
// how to make one; legacy plaintext still works and `channel rekey` seals it.
#include <gtest/gtest.h>
#include <simdjson.h>

#include <fstream>
#include <sstream>
#include <thread>

#include "support/harness.hpp"
#include "support/mock_provider.hpp"
#include "support/process.hpp"
#include "support/redis_server.hpp"

using namespace cascade;
using namespace std::chrono_literals;

namespace {

constexpr const char* kPrefix = "sec";

std::string field(const std::string& json, const char* name) {
  simdjson::dom::parser p;
  std::string_view v;
  if (p.parse(json)[name].get(v)) return "";
  return std::string(v);
}

std::string read_text(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

class Secrets : public ::testing::Test {
 protected:
  void SetUp() override { r = std::make_unique<test::SyncRedis>(redis.url()); }

  test::ToolRun ctl(std::vector<std::string> args, std::vector<std::string> env = {}) {
    std::vector<std::string> argv = {test::tool_path("cascadectl"), "--redis", redis.url(),
                                     "--prefix", kPrefix};
    argv.insert(argv.end(), args.begin(), args.end());
    return test::run_tool(argv, std::move(env));
  }

  std::string file(const std::string& name, const std::string& content) {
    auto path = dir.path() + "/" + name;
    std::ofstream(path) << content;
    return path;
  }

  std::string make_account() {
    auto acc = ctl({"--json", "account", "create", "--name", "Shop"});
    EXPECT_EQ(acc.status, 0) << acc.err;
    return field(acc.out, "id");
  }

  // Every value of every key in the keyspace, as text (a SCAN and a dump by type).
  std::string dump_keyspace() {
    std::string all;
    std::string cursor = "0";
    do {
      auto page = r->exec(redis::cmd("SCAN", cursor, "COUNT", "1000"));
      cursor = page.elements[0].str;
      for (const auto& k : page.elements[1].elements) {
        auto type = r->exec(redis::cmd("TYPE", k.str)).str;
        redis::Reply v;
        if (type == "string") v = r->exec(redis::cmd("GET", k.str));
        else if (type == "hash") v = r->exec(redis::cmd("HGETALL", k.str));
        else if (type == "set") v = r->exec(redis::cmd("SMEMBERS", k.str));
        else if (type == "zset") v = r->exec(redis::cmd("ZRANGE", k.str, "0", "-1", "WITHSCORES"));
        else if (type == "list") v = r->exec(redis::cmd("LRANGE", k.str, "0", "-1"));
        else if (type == "stream") v = r->exec(redis::cmd("XRANGE", k.str, "-", "+"));
        else ADD_FAILURE() << "unexpected type " << type << " of " << k.str;
        all += k.str + " " + type + ":";
        append(all, v);
        all += "\n";
      }
    } while (cursor != "0");
    return all;
  }
  static void append(std::string& out, const redis::Reply& v) {
    out += ' ';
    out += v.str;
    for (const auto& e : v.elements)
      append(out, e);
  }

  std::string chkey_field(const std::string& channel_id, const std::string& name) {
    auto hex = r->exec(redis::cmd("GET", std::string(kPrefix) + ":chkey-id:" + channel_id)).str;
    return r->exec(redis::cmd("HGET", std::string(kPrefix) + ":chkey:" + hex, name)).str;
  }

  std::unique_ptr<test::Process> cascaded(const std::string& log,
                                          std::vector<std::string> env = {}) {
    env.push_back("CASCADE_TELEGRAM_API_BASE=" + mock.base_url());
    return std::make_unique<test::Process>(
        std::vector<std::string>{test::tool_path("cascaded"), "--redis", redis.url(), "--prefix",
                                 kPrefix, "--log-level", "info"},
        std::move(env), dir.path() + "/" + log);
  }

  // Sends one telegram job with the channel key through cascadectl, waits for its result.
  test::ToolRun send_telegram(const std::string& api_key, const std::string& ck) {
    auto body = file("job.json", R"({"keys":{"telegram":{"token":")" + ck +
                                     R"("}},"to":{"telegram":"42"},"message":{"text":"hi"}})");
    return ctl({"send", "--wait", "15s", body}, {"CASCADE_API_KEY=" + api_key});
  }

  test::RedisServer redis;
  test::MockProvider mock;
  test::TempDir dir;
  std::unique_ptr<test::SyncRedis> r;
};

}  // namespace

// Every provider credential, given to cascadectl as @FILE or on stdin, is sealed: a dump of
// the whole keyspace holds none of them, and the non-secret settings stay readable. The
// real cascaded opens the bot token and the mock provider receives it.
TEST_F(Secrets, NoProviderCredentialRestsInTheClear) {
  auto account = make_account();
  const std::vector<std::string> secrets = {"111:bot-token-secret", "waba-access-secret",
                                            "waha-gateway-secret", "postmark-server-secret",
                                            "smtp-password-secret"};
  auto tg = ctl({"--json", "channel", "create", "--account", account, "--type", "telegram",
                 "--name", "bot", "--bot-token", "@" + file("bot", secrets[0] + "\n")});
  ASSERT_EQ(tg.status, 0) << tg.err;
  auto waba = test::run_tool(
      {"/bin/sh", "-c",
       "printf '%s\\n' " + secrets[1] + " | " + test::tool_path("cascadectl") + " --redis " +
           redis.url() + " --prefix " + kPrefix + " channel create --account " + account +
           " --type waba --name w --phone-number-id 1234 --access-token -"});
  ASSERT_EQ(waba.status, 0) << waba.err;
  auto wa = ctl({"channel", "create", "--account", account, "--type", "whatsapp", "--name", "g",
                 "--api-base", mock.base_url(), "--gateway-key", "@" + file("gw", secrets[2])});
  ASSERT_EQ(wa.status, 0) << wa.err;
  auto pm = ctl({"channel", "create", "--account", account, "--type", "email", "--name", "pm",
                 "--from", "a@example.com", "--provider", "postmark", "--server-token",
                 "@" + file("pm", secrets[3])});
  ASSERT_EQ(pm.status, 0) << pm.err;
  auto smtp = ctl({"--json", "channel", "create", "--account", account, "--type", "email",
                   "--name", "smtp", "--from", "a@example.com", "--provider", "smtp",
                   "--smtp-host", "mail.example.com", "--smtp-port", "587", "--smtp-user",
                   "mailer", "--smtp-pass", "@" + file("pass", secrets[4] + "\n")});
  ASSERT_EQ(smtp.status, 0) << smtp.err;

  auto dump = dump_keyspace();
  for (const auto& s : secrets)
    EXPECT_EQ(dump.find(s), std::string::npos) << s << " rests in the clear:\n" << dump;
  // Nor a recognisable part of one (bot tokens are "<bot id>:<secret>").
  EXPECT_EQ(dump.find("-secret"), std::string::npos) << dump;
  auto smtp_id = field(smtp.out, "id");
  EXPECT_TRUE(chkey_field(smtp_id, "s.smtp_pass").starts_with("v1:"));
  EXPECT_EQ(chkey_field(smtp_id, "s.smtp_user"), "mailer") << "non-secret settings readable";
  EXPECT_EQ(chkey_field(smtp_id, "s.smtp_host"), "mail.example.com");
  EXPECT_EQ(chkey_field(smtp_id, "s.smtp_port"), "587");

  auto api = ctl({"--json", "apikey", "create", "--account", account, "--name", "b"});
  ASSERT_EQ(api.status, 0) << api.err;
  auto d = cascaded("cascaded.log");
  auto sent = send_telegram(field(api.out, "key"), field(tg.out, "key"));
  EXPECT_EQ(sent.status, 0) << sent.out << sent.err << read_text(dir.path() + "/cascaded.log");
  auto got = mock.request_list("telegram");
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].token, secrets[0]) << "the provider gets the opened token";
  EXPECT_EQ(read_text(dir.path() + "/cascaded.log").find(secrets[0]), std::string::npos);
}

// Without a master key: cascaded exits non-zero, and cascadectl refuses a credential,
// each saying how to make a key; a channel key without a credential needs none.
TEST_F(Secrets, WithoutAMasterKeyBothToolsRefuseAndSayHow) {
  auto d = test::run_tool({test::tool_path("cascaded"), "--redis", redis.url()},
                          {"CASCADE_MASTER_KEY_FILE="});
  EXPECT_NE(d.status, 0);
  EXPECT_NE(d.err.find("openssl rand -hex 32 > master.key"), std::string::npos) << d.err;
  EXPECT_NE(d.err.find("chmod 600"), std::string::npos) << d.err;

  auto missing = test::run_tool(
      {test::tool_path("cascaded"), "--redis", redis.url(), "--master-key-file", "/nonexistent"});
  EXPECT_NE(missing.status, 0);
  EXPECT_NE(missing.err.find("/nonexistent"), std::string::npos) << missing.err;
  auto bad = test::run_tool({test::tool_path("cascaded"), "--redis", redis.url(),
                             "--master-key-file", file("bad.key", "not hex at all\n")});
  EXPECT_NE(bad.status, 0);
  EXPECT_NE(bad.err.find("64 hex characters"), std::string::npos) << bad.err;

  auto account = make_account();
  auto tg = ctl({"channel", "create", "--account", account, "--type", "telegram", "--name", "b",
                 "--bot-token", "@" + file("bot", "1:t")},
                {"CASCADE_MASTER_KEY_FILE="});
  EXPECT_EQ(tg.status, 1);
  EXPECT_NE(tg.err.find("openssl rand -hex 32"), std::string::npos) << tg.err;
  EXPECT_EQ(dump_keyspace().find("1:t"), std::string::npos);
  auto wa = ctl({"channel", "create", "--account", account, "--type", "whatsapp", "--name", "g",
                 "--api-base", mock.base_url()},
                {"CASCADE_MASTER_KEY_FILE="});
  EXPECT_EQ(wa.status, 0) << wa.err;
}

// A bot token stored before sealing (plaintext) still delivers, cascaded warns once; then
// `channel rekey --all` seals it and it still delivers.
TEST_F(Secrets, LegacyPlaintextWorksWarnsAndRekeySealsIt) {
  auto account = make_account();
  auto tg = ctl({"--json", "channel", "create", "--account", account, "--type", "telegram",
                 "--name", "bot", "--bot-token", "@" + file("bot", "7:legacy-token")});
  ASSERT_EQ(tg.status, 0) << tg.err;
  auto id = field(tg.out, "id");
  auto hex = r->exec(redis::cmd("GET", std::string(kPrefix) + ":chkey-id:" + id)).str;
  r->exec(redis::cmd("HSET", std::string(kPrefix) + ":chkey:" + hex, "s.bot_token", "7:legacy-token"));
  auto api = ctl({"--json", "apikey", "create", "--account", account, "--name", "b"});
  ASSERT_EQ(api.status, 0);

  auto d = cascaded("legacy.log");
  EXPECT_EQ(send_telegram(field(api.out, "key"), field(tg.out, "key")).status, 0);
  auto log = read_text(dir.path() + "/legacy.log");
  EXPECT_NE(log.find("plaintext"), std::string::npos) << log;
  EXPECT_NE(log.find("channel rekey --all"), std::string::npos) << log;
  EXPECT_EQ(log.find("legacy-token"), std::string::npos) << "the warning never quotes it";

  auto rekey = ctl({"--json", "channel", "rekey", "--all"});
  ASSERT_EQ(rekey.status, 0) << rekey.err;
  EXPECT_NE(rekey.out.find("\"resealed\":1"), std::string::npos) << rekey.out;
  EXPECT_TRUE(chkey_field(id, "s.bot_token").starts_with("v1:"));
  EXPECT_EQ(dump_keyspace().find("legacy-token"), std::string::npos);
  d.reset();
  auto again = cascaded("after.log");
  EXPECT_EQ(send_telegram(field(api.out, "key"), field(tg.out, "key")).status, 0);
  EXPECT_EQ(mock.request_list("telegram").back().token, "7:legacy-token");
  EXPECT_EQ(read_text(dir.path() + "/after.log").find("plaintext"), std::string::npos);
}

// Master key rotation: the new key first in the file, the old one after it; `channel
// rekey` moves every credential to the new key, after which the old key can go.
TEST_F(Secrets, RotationRekeysUnderTheNewKey) {
  auto account = make_account();
  auto tg = ctl({"--json", "channel", "create", "--account", account, "--type", "telegram",
                 "--name", "bot", "--bot-token", "@" + file("bot", "9:rotated-token")});
  ASSERT_EQ(tg.status, 0) << tg.err;
  auto id = field(tg.out, "id");
  auto before = chkey_field(id, "s.bot_token");
  const std::string fresh = "aa01020304050607080910111213141516171819202122232425262728293031";
  auto both = file("both.key", fresh + "\n" + test::kTestMasterKey + "\n");
  auto only_new = file("new.key", fresh + "\n");

  // Rekey of one key by id, and the id must exist.
  EXPECT_EQ(ctl({"channel", "rekey", "chk_nope", "--master-key-file", both}).status, 1);
  auto rekey = ctl({"--json", "channel", "rekey", id, "--master-key-file", both});
  ASSERT_EQ(rekey.status, 0) << rekey.err;
  EXPECT_NE(rekey.out.find("\"resealed\":1"), std::string::npos) << rekey.out;
  auto after = chkey_field(id, "s.bot_token");
  EXPECT_NE(after, before);
  EXPECT_EQ(after.substr(0, 12), "v1:" + field(rekey.out, "master_key") + ":");
  // Already under the current key: nothing to do.
  EXPECT_NE(ctl({"--json", "channel", "rekey", "--all", "--master-key-file", both})
                .out.find("\"resealed\":0"),
            std::string::npos);
  // The old key alone no longer opens it; the new one alone does.
  EXPECT_EQ(ctl({"channel", "rekey", "--all"}).status, 1) << "old key cannot open";

  auto api = ctl({"--json", "apikey", "create", "--account", account, "--name", "b"});
  auto d = cascaded("rotated.log", {"CASCADE_MASTER_KEY_FILE=" + only_new});
  EXPECT_EQ(send_telegram(field(api.out, "key"), field(tg.out, "key")).status, 0);
  EXPECT_EQ(mock.request_list("telegram").back().token, "9:rotated-token");
}
