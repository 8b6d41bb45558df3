// cascadectl as an operator uses it: the real binary against a real redis-server, human
// and --json output, the key lifecycle, and clear errors with a non-zero exit.
#include <gtest/gtest.h>
#include <simdjson.h>

#include <fstream>
#include <sstream>

#include "engine/config.hpp"
#include "support/harness.hpp"
#include "support/mock_provider.hpp"
#include "support/process.hpp"
#include "support/redis_server.hpp"

using namespace cascade;
using namespace std::chrono_literals;

namespace {

class Ctl : public ::testing::Test {
 protected:
  test::ToolRun ctl(std::vector<std::string> args) {
    std::vector<std::string> argv = {test::tool_path("cascadectl"), "--redis", redis.url(),
                                     "--prefix", "c"};
    argv.insert(argv.end(), args.begin(), args.end());
    return test::run_tool(argv);
  }

  std::string field(const std::string& json, const char* name) {
    simdjson::dom::parser p;
    std::string_view v;
    if (p.parse(json)[name].get(v)) return "";
    return std::string(v);
  }

  test::RedisServer redis;
};

}  // namespace

// The whole key lifecycle through the CLI, with --json output a script can read.
TEST_F(Ctl, KeyLifecycleWithJsonOutput) {
  auto acc = ctl({"--json", "account", "create", "--name", "Shop"});
  ASSERT_EQ(acc.status, 0) << acc.err;
  auto account = field(acc.out, "id");
  ASSERT_TRUE(account.starts_with("acc_")) << acc.out;

  auto ch = ctl({"--json", "channel", "create", "--account", account, "--type", "telegram",
                 "--name", "bot", "--bot-token", "123:secret-bot-token", "--max-connections", "8"});
  ASSERT_EQ(ch.status, 0) << ch.err;
  auto channel_id = field(ch.out, "id");
  EXPECT_TRUE(field(ch.out, "key").starts_with("ck_"));

  auto key =
      ctl({"--json", "apikey", "create", "--account", account, "--name", "backend", "--scopes",
           "send,read", "--channels", channel_id, "--expires-in", "30d", "--rate", "100/s:20"});
  ASSERT_EQ(key.status, 0) << key.err;
  auto key_id = field(key.out, "id");
  auto secret = field(key.out, "key");
  EXPECT_TRUE(secret.starts_with("ak_"));

  auto list = ctl({"--json", "apikey", "list", "--account", account});
  ASSERT_EQ(list.status, 0) << list.err;
  EXPECT_NE(list.out.find(key_id), std::string::npos);
  EXPECT_NE(list.out.find("\"rate\":\"100/s:20\""), std::string::npos) << list.out;
  EXPECT_NE(list.out.find(channel_id), std::string::npos) << "restriction listed";
  EXPECT_NE(list.out.find("\"usage\":{"), std::string::npos);
  EXPECT_EQ(list.out.find(secret), std::string::npos) << "the secret is never listed";

  auto human = ctl({"apikey", "list", "--account", account});
  EXPECT_NE(human.out.find("rate=100/s:20"), std::string::npos) << human.out;
  EXPECT_EQ(human.out.find(secret), std::string::npos);

  auto rotated = ctl({"--json", "apikey", "rotate", key_id, "--grace", "1h"});
  ASSERT_EQ(rotated.status, 0) << rotated.err;
  EXPECT_EQ(field(rotated.out, "id"), key_id);
  EXPECT_NE(field(rotated.out, "key"), secret);

  EXPECT_EQ(ctl({"apikey", "revoke", key_id}).status, 0);
  EXPECT_NE(ctl({"apikey", "list", "--account", account}).out.find("status=revoked"),
            std::string::npos);

  auto channels = ctl({"channel", "list", "--account", account});
  EXPECT_NE(channels.out.find(channel_id), std::string::npos);
  EXPECT_EQ(channels.out.find("secret-bot-token"), std::string::npos) << "credentials never listed";
  EXPECT_EQ(ctl({"channel", "pause", channel_id}).status, 0);
  EXPECT_NE(ctl({"channel", "list", "--account", account}).out.find("status=paused"),
            std::string::npos);
  EXPECT_EQ(ctl({"channel", "resume", channel_id}).status, 0);
  EXPECT_EQ(ctl({"channel", "delete", channel_id}).status, 0);
  EXPECT_EQ(ctl({"channel", "list", "--account", account}).out.find(channel_id), std::string::npos);

  EXPECT_EQ(ctl({"account", "pause", account}).status, 0);
  EXPECT_EQ(ctl({"account", "resume", account}).status, 0);
}

// Mistakes get a specific message on stderr and a non-zero exit; nothing on stdout.
TEST_F(Ctl, BadArgumentsAreClearErrors) {
  struct Case {
    std::vector<std::string> args;
    int code;
    std::string says;
  };
  std::vector<Case> cases = {
      {{"account", "create"}, 2, "--name is required"},
      {{"apikey", "create", "--account", "acc_x", "--name", "n", "--scopes", "sned"},
       2,
       "unknown scope 'sned'"},
      {{"apikey", "create", "--account", "acc_x", "--name", "n", "--rate", "fast"}, 2, "--rate"},
      {{"apikey", "create", "--account", "acc_nope", "--name", "n"}, 1, "no account acc_nope"},
      {{"apikey", "create", "--account", "acc_x", "--name", "n", "--expires-in", "soon"},
       2,
       "--expires-in"},
      {{"channel", "create", "--account", "acc_x", "--type", "pigeon", "--name", "n"},
       2,
       "--type must be"},
      {{"channel", "create", "--account", "acc_x", "--type", "telegram", "--name", "n"},
       2,
       "--bot-token is required"},
      {{"channel", "create", "--account", "acc_x", "--type", "telegram", "--name", "n",
        "--bot-token", "1:t", "--max-connections", "many"},
       2,
       "--max-connections must be a whole number"},
      {{"channel", "pause", "chk_nope"}, 1, "no channel key chk_nope"},
      {{"apikey", "revoke", "key_nope"}, 1, "no API key key_nope"},
      {{"apikey", "list", "--account", "acc_x", "--colour", "red"}, 2, "unknown option --colour"},
      {{"frobnicate"}, 2, "unknown command 'frobnicate'"},
      {{"send", "-"}, 2, "--token"},
  };
  for (const auto& c : cases) {
    auto r = ctl(c.args);
    EXPECT_EQ(r.status, c.code) << c.args[0] << " " << r.err;
    EXPECT_NE(r.err.find(c.says), std::string::npos) << "stderr: " << r.err;
    EXPECT_TRUE(r.out.empty()) << r.out;
  }
  auto unreachable = test::run_tool({test::tool_path("cascadectl"), "--redis",
                                     "redis://127.0.0.1:" + std::to_string(test::free_port()),
                                     "account", "create", "--name", "x"});
  EXPECT_EQ(unreachable.status, 4) << "Redis unreachable has its own exit code";
}

// --help tells the truth: every command the CLI accepts is in it.
TEST_F(Ctl, HelpListsTheCommands) {
  auto r = ctl({"--help"});
  EXPECT_EQ(r.status, 0);
  for (auto word :
       {"account create", "apikey rotate", "channel create", "send", "job show", "--json"})
    EXPECT_NE(r.out.find(word), std::string::npos) << word;
}

// The README's producer path: `send --wait` prints the result, `job show` finds it again,
// `send` without --wait prints the job id, --x-api-key works like --token, and a job that
// does not deliver makes `send --wait` exit 1.
TEST_F(Ctl, SendWaitAndJobShow) {
  test::MockProvider mock;
  mock.add_rule(
      R"({"provider":"telegram","recipient":"13","status":400,"description":"Bad Request: chat not found"})");
  EngineConfig cfg;
  cfg.redis_url = redis.url();
  cfg.prefix = "c";
  test::EngineThread engine(cfg);
  auto account = field(ctl({"--json", "account", "create", "--name", "Shop"}).out, "id");
  auto channel = ctl({"--json", "channel", "create", "--account", account, "--type", "telegram",
                      "--name", "bot", "--bot-token", "1:tok", "--api-base", mock.base_url()});
  auto api =
      field(ctl({"--json", "apikey", "create", "--account", account, "--name", "b"}).out, "key");
  test::TempDir files;
  auto write = [&](const std::string& name, const std::string& chat) {
    auto path = files.path() + "/" + name;
    std::ofstream(path) << R"({"keys":{"telegram":{"token":")" << field(channel.out, "key")
                        << R"("}},"to":{"telegram":")" << chat
                        << R"("},"message":{"text":"hello"}})";
    return path;
  };
  auto sent = ctl({"send", "--token", api, "--wait", "10s", write("ok.json", "42")});
  EXPECT_EQ(sent.status, 0) << sent.err;
  EXPECT_EQ(field(sent.out, "state"), "delivered") << sent.out;
  auto id = field(sent.out, "id");
  auto shown = ctl({"job", "show", id});
  EXPECT_EQ(shown.status, 0);
  EXPECT_EQ(field(shown.out, "id"), id);
  EXPECT_EQ(field(shown.out, "state"), "delivered");

  auto queued = ctl({"--json", "send", "--x-api-key", api, write("ok2.json", "43")});
  EXPECT_EQ(queued.status, 0) << queued.err;
  test::SyncRedis producer(redis.url());
  EXPECT_TRUE(test::wait_result(producer, "c", field(queued.out, "id")))
      << "the job id printed by send is the one the engine finishes";

  auto failed = ctl({"send", "--token", api, "--wait", "10s", write("bad.json", "13")});
  EXPECT_EQ(failed.status, 1);
  EXPECT_EQ(field(failed.out, "state"), "failed") << failed.out;
  EXPECT_EQ(ctl({"job", "show", "1-0"}).status, 1) << "an unknown job is an error";
}

// No secret has to be on a command line (SPEC §6): every secret option takes @FILE (one
// trailing newline stripped) or - (stdin), `send` takes CASCADE_API_KEY, and the Redis
// password comes from --redis-password-file. What the tools read is what gets used.
TEST_F(Ctl, SecretsFromFilesStdinAndEnvironment) {
  test::MockProvider mock;
  EngineConfig cfg;
  cfg.redis_url = redis.url();
  cfg.prefix = "c";
  test::EngineThread engine(cfg);
  test::TempDir files;
  auto file = [&](const std::string& name, const std::string& content) {
    auto path = files.path() + "/" + name;
    std::ofstream(path) << content;
    return path;
  };
  auto account = field(ctl({"--json", "account", "create", "--name", "Shop"}).out, "id");
  // Bot tokens from a file and from stdin.
  auto from_file = ctl({"--json", "channel", "create", "--account", account, "--type", "telegram",
                        "--name", "f", "--bot-token", "@" + file("tok", "1:from-file\n"),
                        "--api-base", mock.base_url()});
  ASSERT_EQ(from_file.status, 0) << from_file.err;
  auto from_stdin = test::run_tool(
      {"/bin/sh", "-c",
       "printf '2:from-stdin\\n' | " + test::tool_path("cascadectl") + " --redis " + redis.url() +
           " --prefix c --json channel create --account " + account +
           " --type telegram --name s --bot-token - --api-base " + mock.base_url()});
  ASSERT_EQ(from_stdin.status, 0) << from_stdin.err;
  auto api = field(ctl({"--json", "apikey", "create", "--account", account, "--name", "b"}).out,
                   "key");
  auto job = [&](const std::string& name, const std::string& ck) {
    return file(name, R"({"keys":{"telegram":{"token":")" + field(ck, "key") +
                          R"("}},"to":{"telegram":"42"},"message":{"text":"hi"}})");
  };
  auto tool = test::tool_path("cascadectl");
  // The API key from the environment, from a file, and (body from a file) from stdin.
  auto by_env = test::run_tool({tool, "--redis", redis.url(), "--prefix", "c", "send", "--wait",
                                "10s", job("a.json", from_file.out)},
                               {"CASCADE_API_KEY=" + api});
  EXPECT_EQ(by_env.status, 0) << by_env.err;
  auto by_file = ctl({"send", "--x-api-key", "@" + file("api", api + "\n"), "--wait", "10s",
                      job("b.json", from_stdin.out)});
  EXPECT_EQ(by_file.status, 0) << by_file.err;
  auto by_stdin = test::run_tool(
      {"/bin/sh", "-c",
       "echo " + api + " | " + tool + " --redis " + redis.url() +
           " --prefix c send --token - --wait 10s " + job("c.json", from_file.out)});
  EXPECT_EQ(by_stdin.status, 0) << by_stdin.err;
  auto tokens = mock.request_list("telegram");
  ASSERT_EQ(tokens.size(), 3u);
  EXPECT_EQ(tokens[0].token, "1:from-file") << "one trailing newline stripped";
  EXPECT_EQ(tokens[1].token, "2:from-stdin");
  EXPECT_EQ(tokens[2].token, "1:from-file");

  // Mistakes: one stdin for two things, an unreadable or empty file.
  auto twice = test::run_tool({"/bin/sh", "-c",
                               "echo " + api + " | " + tool + " --redis " + redis.url() +
                                   " --prefix c send --token - -"});
  EXPECT_EQ(twice.status, 2);
  EXPECT_NE(twice.err.find("stdin is already read"), std::string::npos) << twice.err;
  auto unreadable = ctl({"channel", "create", "--account", account, "--type", "telegram",
                         "--name", "x", "--bot-token", "@/nonexistent/token"});
  EXPECT_EQ(unreadable.status, 1);
  EXPECT_NE(unreadable.err.find("cannot read /nonexistent/token"), std::string::npos);
  auto empty = ctl({"channel", "create", "--account", account, "--type", "telegram", "--name",
                    "x", "--bot-token", "@" + file("empty", "\n")});
  EXPECT_EQ(empty.status, 2);
  EXPECT_NE(empty.err.find("--bot-token is empty"), std::string::npos) << empty.err;

  // The Redis password from a file, not the URL.
  test::RedisServer locked({"--requirepass", "s3cret-redis"});
  auto on_locked = [&](std::vector<std::string> extra) {
    std::vector<std::string> argv = {tool, "--redis", locked.url()};
    argv.insert(argv.end(), extra.begin(), extra.end());
    argv.insert(argv.end(), {"account", "create", "--name", "x"});
    return test::run_tool(argv);
  };
  EXPECT_NE(on_locked({}).status, 0);
  auto unlocked = on_locked({"--redis-password-file", file("redis-pass", "s3cret-redis\n")});
  EXPECT_EQ(unlocked.status, 0) << unlocked.err;
  EXPECT_TRUE(unlocked.out.starts_with("acc_")) << unlocked.out;
}

// --help shows the safe forms of the secret options, not literal secrets.
TEST_F(Ctl, HelpShowsSafeSecretForms) {
  auto help = ctl({"--help"}).out;
  for (auto form : {"--bot-token @FILE|-", "--access-token @FILE|-", "--gateway-key @FILE|-",
                    "--server-token @FILE|-", "--smtp-pass @FILE|-", "--token @FILE|-",
                    "--x-api-key @FILE|-", "CASCADE_API_KEY", "--redis-password-file",
                    "--master-key-file", "openssl rand -hex 32", "channel rekey"})
    EXPECT_NE(help.find(form), std::string::npos) << form;
  for (auto literal : {"--bot-token T", "--access-token T", "--server-token T", "--smtp-pass P",
                       "--token KEY"})
    EXPECT_EQ(help.find(literal), std::string::npos) << literal;
}

// A provider base URL is checked when the channel key is made: credentials, a query, a
// fragment, CR/LF or dot segments are refused there with the reason (exit 2), and nothing
// is stored.
TEST_F(Ctl, ChannelCreateRefusesUnsafeBaseUrls) {
  auto account = field(ctl({"--json", "account", "create", "--name", "Shop"}).out, "id");
  for (auto [url, says] : std::vector<std::pair<std::string, std::string>>{
           {"https://user:pw@gw.example", "credentials"},
           {"https://gw.example/api?key=1", "query"},
           {"https://gw.example/api#x", "fragment"},
           {"https://gw.example/api\r\nX-Evil: 1", "control characters"},
           {"https://gw.example/api/../admin", "'..'"}}) {
    auto r = ctl({"channel", "create", "--account", account, "--type", "whatsapp", "--name", "g",
                  "--api-base", url});
    EXPECT_EQ(r.status, 2) << url;
    EXPECT_NE(r.err.find("--api-base: "), std::string::npos) << r.err;
    EXPECT_NE(r.err.find(says), std::string::npos) << url << ": " << r.err;
  }
  EXPECT_EQ(ctl({"channel", "list", "--account", account}).out, "") << "nothing stored";
  EXPECT_EQ(ctl({"channel", "create", "--account", account, "--type", "whatsapp", "--name", "g",
                 "--api-base", "https://gw.example/api/v1"})
                .status,
            0);
}
