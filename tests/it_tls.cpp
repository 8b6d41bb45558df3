// HTTPS end to end: cascade-mock-provider serves TLS with a server certificate signed by a
// test CA (openssl CLI, support/smtp_server's TestCerts), and the engine trusts that CA only
// through EngineConfig::ca_file (cascaded --ca-file). Without it, or with a certificate
// for another name, the handshake fails before any request reaches the provider.
#include <gtest/gtest.h>
#include <simdjson.h>

#include <cstdlib>
#include <fstream>
#include <sstream>

#include "engine/engine.hpp"
#include "support/harness.hpp"
#include "support/mock_provider.hpp"
#include "support/process.hpp"
#include "support/redis_server.hpp"
#include "support/result_json.hpp"
#include "support/smtp_server.hpp"

using namespace cascade;
using namespace std::chrono_literals;

namespace {

constexpr const char* kPrefix = "t";
constexpr const char* kBotToken = "111:tg-bot-secret";

// A server certificate signed by the test CA whose only name is `san` (e.g.
// "DNS:wrong.example": trusted chain, wrong host for 127.0.0.1).
struct OtherCert {
  OtherCert(const test::TestCerts& ca, const std::string& san) {
    const auto& d = dir.path();
    cert = d + "/other.pem";
    key = d + "/other.key";
    std::ofstream(d + "/ext.cnf") << "subjectAltName=" << san
                                  << "\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n";
    std::string q = " >/dev/null 2>&1";
    run("openssl req -newkey rsa:2048 -nodes -subj /CN=cascade-test-other -keyout " + key +
        " -out " + d + "/other.csr" + q);
    run("openssl x509 -req -in " + d + "/other.csr -CA " + ca.ca_cert + " -CAkey " + ca.dir.path() +
        "/ca.key -CAcreateserial -days 2 -extfile " + d + "/ext.cnf -out " + cert + q);
  }
  static void run(const std::string& command) {
    if (std::system(command.c_str()) != 0) throw std::runtime_error("failed: " + command);
  }
  test::TempDir dir;
  std::string cert, key;
};

using Parsed = test::ParsedResult;

std::string lower(std::string s) {
  for (auto& c : s)
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

class Tls : public ::testing::Test {
 protected:
  void SetUp() override {
    admin = std::make_unique<test::Admin>(redis.url(), kPrefix);
    account = admin->create_account("acme");
    api_key = admin->create_api_key(account, {"send"});
    producer = std::make_unique<test::SyncRedis>(redis.url());
  }

  // The mock on HTTPS with this certificate and key.
  void start_mock(const std::string& cert, const std::string& key) {
    mock = std::make_unique<test::MockProvider>(
        std::vector<std::string>{"--tls-cert", cert, "--tls-key", key});
    ASSERT_TRUE(mock->tls());
    ASSERT_EQ(mock->base_url().rfind("https://127.0.0.1:", 0), 0u) << mock->base_url();
  }

  // An engine trusting the system store plus `ca_file` ("" = system store only). One try
  // per channel and no job-level retries: a TLS failure ends the job at once.
  void start_engine(const std::string& ca_file) {
    EngineConfig cfg;
    cfg.redis_url = redis.url();
    cfg.prefix = kPrefix;
    cfg.concurrency = 8;
    cfg.attempt_timeout = 5s;
    cfg.channel_timeout = 10s;
    cfg.retry.max_retries = 0;
    cfg.job_retry_delays = {};
    cfg.ca_file = ca_file;
    engine = std::make_unique<test::EngineThread>(cfg);
  }

  // A telegram key sending to `api_base`, and one job through it; returns the result.
  std::string send_telegram(const std::string& api_base, const std::string& chat = "42") {
    auto key = admin->create_channel_key(account, "telegram",
                                         {{"bot_token", kBotToken}, {"api_base", api_base}});
    auto body = R"({"keys":{"telegram":{"token":")" + key + R"("}},"to":{"telegram":")" + chat +
                R"("},"message":{"text":"over tls"}})";
    auto id = test::push_job(*producer, kPrefix,
                             {{"authorization", "Bearer " + api_key}, {"body", body}});
    auto result = test::wait_result(*producer, kPrefix, id);
    EXPECT_TRUE(result) << "no result for job " << id;
    return result.value_or("{}");
  }

  // The job failed on the TLS handshake, and the mock saw no request at all.
  void expect_refused(const std::string& result) {
    Parsed r(result);
    EXPECT_EQ(r.str("state"), "failed") << result;
    auto error = lower(r.first_error());
    EXPECT_NE(error.find("tls"), std::string::npos) << result;
    EXPECT_NE(error.find("certificate"), std::string::npos) << result;
    EXPECT_TRUE(mock->request_list().empty()) << mock->requests();
    EXPECT_NE(mock->stats().find("\"requests\":0"), std::string::npos) << mock->stats();
  }

  test::RedisServer redis;
  test::TestCerts certs;  // test CA + server certificate for IP:127.0.0.1 and DNS:localhost
  std::unique_ptr<test::MockProvider> mock;
  std::unique_ptr<test::Admin> admin;
  std::unique_ptr<test::SyncRedis> producer;
  std::unique_ptr<test::EngineThread> engine;
  std::string account, api_key;
};

}  // namespace

// ca_file = the test CA: the chain verifies, the IP SAN matches 127.0.0.1, the job is
// delivered and the mock recorded it. localhost (DNS SAN, sent as SNI) works too.
TEST_F(Tls, TrustedTestCaDelivers) {
  start_mock(certs.server_cert, certs.server_key);
  start_engine(certs.ca_cert);
  Parsed r(send_telegram(mock->base_url(), "42"));
  EXPECT_EQ(r.status(), 200);
  EXPECT_EQ(r.str("state"), "delivered");
  auto sent = mock->request_list("telegram");
  ASSERT_EQ(sent.size(), 1u);
  EXPECT_EQ(sent[0].recipient, "42");
  EXPECT_EQ(sent[0].text, "over tls");
  EXPECT_EQ(sent[0].token, kBotToken);
  EXPECT_EQ(sent[0].status, 200);

  Parsed by_name(send_telegram("https://localhost:" + std::to_string(mock->port()), "43"));
  EXPECT_EQ(by_name.str("state"), "delivered");
  EXPECT_EQ(mock->request_list("telegram").size(), 2u);
}

// The system store alone does not know the test CA: certificate not trusted.
TEST_F(Tls, SystemStoreOnlyRefusesTheTestCa) {
  start_mock(certs.server_cert, certs.server_key);
  start_engine("");
  expect_refused(send_telegram(mock->base_url()));
}

// A certificate from the trusted test CA, but for another name: host name check fails.
// (Control: the same recipe with the right name is accepted, so only the name differs.)
TEST_F(Tls, CertificateForAnotherNameIsRefused) {
  start_engine(certs.ca_cert);
  OtherCert right(certs, "IP:127.0.0.1");
  start_mock(right.cert, right.key);
  EXPECT_EQ(Parsed(send_telegram(mock->base_url())).str("state"), "delivered");

  OtherCert wrong(certs, "DNS:wrong.example");
  start_mock(wrong.cert, wrong.key);
  expect_refused(send_telegram(mock->base_url()));
}

// The mock's control listener serves /__mock/* only, in plain HTTP, beside HTTPS.
TEST_F(Tls, MockControlListenerServesOnlyTheControlApi) {
  start_mock(certs.server_cert, certs.server_key);
  EXPECT_NE(mock->control_port(), mock->port());
  EXPECT_EQ(mock->http("GET", "/__mock/health").status, 200);
  EXPECT_EQ(mock->http("POST", "/bot1:x/sendMessage", R"({"chat_id":1,"text":"x"})").status, 404);
  EXPECT_TRUE(mock->request_list().empty());
}

// cascaded --ca-file (and CASCADE_CA_FILE) with an unreadable file: exit 2, the path named.
TEST_F(Tls, CascadedRejectsAnUnreadableCaFile) {
  test::TempDir dir;
  const std::string missing = dir.path() + "/no-such-ca.pem";
  for (int use_env = 0; use_env < 2; ++use_env) {
    std::vector<std::string> argv{test::tool_path("cascaded"), "--redis", redis.url(), "--prefix",
                                  kPrefix};
    std::vector<std::string> env;
    if (use_env) {
      env.push_back("CASCADE_CA_FILE=" + missing);
    } else {
      argv.push_back("--ca-file");
      argv.push_back(missing);
    }
    auto log = dir.path() + "/stderr" + std::to_string(use_env) + ".log";
    test::Process daemon(argv, env, log);
    EXPECT_EQ(daemon.wait(10s).value_or(-1), 2) << (use_env ? "CASCADE_CA_FILE" : "--ca-file");
    std::ifstream in(log);
    std::stringstream text;
    text << in.rdbuf();
    EXPECT_NE(text.str().find(missing), std::string::npos) << text.str();
  }
  auto help = test::run_tool({test::tool_path("cascaded"), "--help"});
  const auto& usage = help.out;
  EXPECT_EQ(help.status, 0);
  EXPECT_NE(usage.find("--ca-file FILE"), std::string::npos) << usage;
  EXPECT_NE(usage.find("CASCADE_CA_FILE"), std::string::npos) << usage;
}
