// Email over SMTP through the whole engine, against a real SMTP server (Debian's
// python3-aiosmtpd, tests/support/smtp_server.py): content on the wire, STARTTLS + AUTH,
// 4xx retried in the tier, 5xx not, a connection lost after the final "." as an unknown
// outcome, session reuse, and certificate verification.
#include <gtest/gtest.h>
#include <simdjson.h>

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>

#include <set>

#include "channels/smtp.hpp"

#include "support/harness.hpp"
#include "support/redis_server.hpp"
#include "support/result_json.hpp"
#include "support/smtp_server.hpp"

using namespace cascade;
using namespace std::chrono_literals;

namespace {

constexpr const char* kPrefix = "s";

using Parsed = test::ParsedResult;

class Smtp : public ::testing::Test {
 protected:
  void start(test::SmtpServerOptions options,
             std::map<std::string, std::string, std::less<>> extra = {}) {
    server = std::make_unique<test::SmtpServer>(std::move(options));
    admin = std::make_unique<test::Admin>(redis.url(), kPrefix);
    account = admin->create_account("shop");
    api_key = admin->create_api_key(account, {"send"});
    std::map<std::string, std::string, std::less<>> settings = {
        {"provider", "smtp"},
        {"from", "noreply@shop.example"},
        {"smtp_host", "127.0.0.1"},
        {"smtp_port", std::to_string(server->port())},
        {"smtp_tls", "none"}};
    for (auto& [k, v] : extra)
      settings[k] = v;
    email_key = admin->create_channel_key(account, "email", settings, &email_id);
    producer = std::make_unique<test::SyncRedis>(redis.url());
    EngineConfig cfg;
    cfg.redis_url = redis.url();
    cfg.prefix = kPrefix;
    cfg.concurrency = 64;
    cfg.attempt_timeout = 5s;
    cfg.channel_timeout = 15s;
    cfg.retry.base = 20ms;
    engine = std::make_unique<test::EngineThread>(cfg);
  }

  std::string body(const std::string& to, const std::string& text,
                   const std::string& extra_message = "") {
    return R"({"keys":{"email":{"token":")" + email_key + R"("}},"to":{"email":")" + to +
           R"("},"message":{"text":")" + text + "\"" + extra_message + "}}";
  }

  std::string send(const std::string& job_body) {
    auto id = test::push_job(*producer, kPrefix,
                             {{"authorization", "Bearer " + api_key}, {"body", job_body}});
    last_id = id;
    auto result = test::wait_result(*producer, kPrefix, id);
    EXPECT_TRUE(result) << "no result for job " << id;
    return result.value_or("{}");
  }

  test::RedisServer redis;
  std::unique_ptr<test::SmtpServer> server;
  std::unique_ptr<test::Admin> admin;
  std::unique_ptr<test::SyncRedis> producer;
  std::unique_ptr<test::EngineThread> engine;
  std::string account, api_key, email_key, email_id, last_id;
};

}  // namespace

// Plain SMTP to loopback: the server gets a MIME message with the UTF-8 subject, the text
// (lines starting with "." intact: dot-stuffing worked), From/To/Date and a Message-ID
// made of the job id and channel key.
TEST_F(Smtp, PlainSendContent) {
  start({});
  // JSON escapes: é = \u00e9, ✓ = \u2713; a line that is just "." would end DATA early.
  Parsed r(send(body("ann@example.com", R"(Hello Ann,\n.hidden line\n..two dots\n.\nBye)",
                     R"(,"subject":"R\u00e9sum\u00e9 \u2713")")));
  ASSERT_EQ(r.status(), 200) << r.str("state");
  EXPECT_EQ(r.attempt_str(0, "channel"), "email");
  EXPECT_EQ(r.tries(0), 1);
  EXPECT_FALSE(r.attempt_str(0, "provider_id").empty());
  auto got = server->wait_for("message", 1);
  ASSERT_EQ(got.size(), 1u);
  const auto& m = got[0];
  EXPECT_EQ(m.mail_from, "noreply@shop.example");
  EXPECT_EQ(m.rcpt_tos, std::vector<std::string>{"ann@example.com"});
  EXPECT_EQ(m.subject, "R\xc3\xa9sum\xc3\xa9 \xe2\x9c\x93");
  EXPECT_NE(m.raw.find("Subject: =?UTF-8?B?"), std::string::npos) << m.raw;
  std::string text;
  for (char c : m.text)
    if (c != '\r') text.push_back(c);
  while (!text.empty() && (text.back() == '\n' || text.back() == '\r'))
    text.pop_back();
  EXPECT_EQ(text, "Hello Ann,\n.hidden line\n..two dots\n.\nBye");
  EXPECT_EQ(m.content_type, "text/plain");
  EXPECT_EQ(m.from, "noreply@shop.example");
  EXPECT_EQ(m.to, "ann@example.com");
  EXPECT_FALSE(m.date.empty());
  EXPECT_EQ(m.message_id, "<" + last_id + "." + email_id + "@shop.example>");
  EXPECT_FALSE(m.tls);
}

// With html: multipart/alternative with both parts; the subject defaults to the text.
TEST_F(Smtp, HtmlIsMultipartAlternative) {
  start({});
  Parsed r(send(body("bob@example.com", "Your parcel is on its way",
                     R"(,"html":"<p>Your parcel is <b>on its way</b></p>")")));
  ASSERT_EQ(r.status(), 200);
  auto got = server->wait_for("message", 1);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].content_type, "multipart/alternative");
  EXPECT_NE(got[0].html.find("<b>on its way</b>"), std::string::npos);
  EXPECT_NE(got[0].text.find("Your parcel is on its way"), std::string::npos);
  EXPECT_EQ(got[0].subject, "Your parcel is on its way");
}

// STARTTLS (required) with the server's certificate checked against a test CA, then
// AUTH: the server saw a TLS session authenticated as the configured user.
TEST_F(Smtp, StartTlsAndAuth) {
  test::TestCerts certs;
  start({certs.server_cert, certs.server_key, false, true, "mailer:s3cret"},
        {{"smtp_tls", "starttls"},
         {"smtp_user", "mailer"},
         {"smtp_pass", "s3cret"},
         {"smtp_ca_file", certs.ca_cert}});
  Parsed r(send(body("carol@example.com", "over TLS")));
  ASSERT_EQ(r.status(), 200) << r.attempt_str(0, "error");
  auto got = server->wait_for("message", 1);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_TRUE(got[0].tls);
  EXPECT_EQ(got[0].auth, "mailer");
  // The password never shows in the result.
  EXPECT_EQ(r.str("id").find("s3cret"), std::string::npos);
}

// A server that offers only AUTH LOGIN gets the LOGIN exchange (334 user, 334 password).
TEST_F(Smtp, AuthLogin) {
  test::TestCerts certs;
  test::SmtpServerOptions o;
  o.cert = certs.server_cert;
  o.key = certs.server_key;
  o.require_starttls = true;
  o.auth = "mailer:s3cret";
  o.auth_only = "LOGIN";
  start(o, {{"smtp_tls", "starttls"},
            {"smtp_user", "mailer"},
            {"smtp_pass", "s3cret"},
            {"smtp_ca_file", certs.ca_cert}});
  Parsed r(send(body("lou@example.com", "login mechanism")));
  ASSERT_EQ(r.status(), 200) << r.attempt_str(0, "error");
  auto auth = server->events("auth");
  ASSERT_EQ(auth.size(), 1u);
  EXPECT_TRUE(auth[0].ok);
  EXPECT_EQ(auth[0].mechanism, "LOGIN");
  auto msgs = server->wait_for("message", 1);
  ASSERT_EQ(msgs.size(), 1u);
  EXPECT_EQ(msgs[0].auth, "mailer");
}

// Wrong password: 535 is a permanent configuration failure, tried once.
TEST_F(Smtp, BadCredentialsArePermanent) {
  test::TestCerts certs;
  start({certs.server_cert, certs.server_key, false, true, "mailer:s3cret"},
        {{"smtp_tls", "starttls"},
         {"smtp_user", "mailer"},
         {"smtp_pass", "wrong"},
         {"smtp_ca_file", certs.ca_cert}});
  auto json = send(body("carol@example.com", "nope"));
  Parsed r(json);
  EXPECT_EQ(r.status(), 502) << json;
  EXPECT_EQ(r.tries(0), 1);
  EXPECT_FALSE(r.flag(0, "retryable"));
  EXPECT_NE(r.attempt_str(0, "error").find("535"), std::string::npos) << r.attempt_str(0, "error");
  EXPECT_TRUE(server->events("message").empty());
}

// An untrusted certificate (no smtp_ca_file: the test CA is unknown) fails the TLS
// handshake: permanent, nothing sent, the password never left.
TEST_F(Smtp, UntrustedCertificateRefused) {
  test::TestCerts certs;
  start({certs.server_cert, certs.server_key, false, true, "mailer:s3cret"},
        {{"smtp_tls", "starttls"}, {"smtp_user", "mailer"}, {"smtp_pass", "s3cret"}});
  Parsed r(send(body("dave@example.com", "should not go")));
  EXPECT_EQ(r.status(), 502);
  EXPECT_EQ(r.tries(0), 1);
  EXPECT_NE(r.attempt_str(0, "error").find("certificate verification failed"), std::string::npos)
      << r.attempt_str(0, "error");
  EXPECT_TRUE(server->events("message").empty());
  EXPECT_TRUE(server->events("auth").empty());
}

// 451 twice then accepted: retried inside the tier (two retries), delivered on try 3.
TEST_F(Smtp, TransientThenDeliveredByInTierRetry) {
  start({});
  Parsed r(send(body("fail451-2@example.com", "third time lucky")));
  ASSERT_EQ(r.status(), 200) << r.attempt_str(0, "error");
  EXPECT_EQ(r.tries(0), 3);
  EXPECT_EQ(server->events("rcpt451").size(), 2u);
  EXPECT_EQ(server->wait_for("message", 1).size(), 1u);
}

// 550 at RCPT: permanent recipient failure, tried once.
TEST_F(Smtp, RejectedRecipientNotRetried) {
  start({});
  Parsed r(send(body("reject550@example.com", "bounce")));
  EXPECT_EQ(r.status(), 502);
  EXPECT_EQ(r.tries(0), 1);
  EXPECT_FALSE(r.flag(0, "retryable"));
  EXPECT_NE(r.attempt_str(0, "error").find("550"), std::string::npos);
  EXPECT_EQ(server->events("rcpt550").size(), 1u);
  EXPECT_TRUE(server->events("message").empty());
}

// The server takes the whole message and closes without answering the final ".": the
// outcome is unknown, recorded as such, and (email default on_unknown=fail) not re-sent.
TEST_F(Smtp, DropAfterFinalDotIsUnknownOutcome) {
  start({});
  Parsed r(send(body("drop@example.com", "did it arrive?")));
  EXPECT_EQ(r.status(), 502);
  EXPECT_EQ(r.tries(0), 1);
  EXPECT_TRUE(r.flag(0, "outcome_unknown"));
  EXPECT_NE(r.attempt_str(0, "error").find("outcome unknown"), std::string::npos)
      << r.attempt_str(0, "error");
  EXPECT_EQ(server->events("dropped").size(), 1u);
}

// With on_unknown=retry the lost reply is retried in the tier, and every re-send carries
// the same Message-ID (receivers can de-duplicate).
TEST_F(Smtp, ResendsKeepTheMessageId) {
  start({}, {{"on_unknown", "retry"}});
  Parsed r(send(body("drop@example.com", "maybe twice")));
  EXPECT_EQ(r.tries(0), 3);
  EXPECT_TRUE(r.flag(0, "outcome_unknown"));
  auto dropped = server->wait_for("dropped", 3);
  ASSERT_EQ(dropped.size(), 3u);
  EXPECT_EQ(dropped[0].message_id, "<" + last_id + "." + email_id + "@shop.example>");
  for (auto& d : dropped)
    EXPECT_EQ(d.message_id, dropped[0].message_id);
}

// Sessions are kept and reused: five jobs one after the other use one connection (RSET
// between messages), and the next job after a dropped session gets a fresh one.
TEST_F(Smtp, SessionReusedAcrossMessages) {
  start({});
  // aiosmtpd's Controller connects once itself to check that the server is up.
  auto baseline = server->events("connect").size();
  for (int i = 0; i < 5; ++i) {
    Parsed r(send(body("erin" + std::to_string(i) + "@example.com", "msg " + std::to_string(i))));
    ASSERT_EQ(r.status(), 200) << r.attempt_str(0, "error");
  }
  auto msgs = server->wait_for("message", 5);
  ASSERT_EQ(msgs.size(), 5u);
  std::set<std::string> peers;
  for (auto& m : msgs)
    peers.insert(m.peer);
  EXPECT_EQ(peers.size(), 1u) << "all five on one connection";
  EXPECT_EQ(server->events("connect").size() - baseline, 1u);
  // A lost session (the drop) is not reused: the next message opens a new one.
  Parsed dropped(send(body("drop@example.com", "x")));
  EXPECT_TRUE(dropped.flag(0, "outcome_unknown"));
  Parsed again(send(body("frank@example.com", "after the drop")));
  EXPECT_EQ(again.status(), 200) << again.attempt_str(0, "error");
  EXPECT_EQ(server->events("connect").size() - baseline, 2u);
}

// A pooled session whose server went away (restarted on the same port) is found broken at
// RSET and replaced by a fresh one transparently: the next message still goes on try 1.
TEST_F(Smtp, BrokenPooledSessionReplacedTransparently) {
  start({});
  Parsed first(send(body("gina@example.com", "before the restart")));
  ASSERT_EQ(first.status(), 200);
  auto port = server->port();
  server.reset();
  test::SmtpServerOptions again;
  again.port = port;
  server = std::make_unique<test::SmtpServer>(again);
  Parsed second(send(body("hank@example.com", "after the restart")));
  EXPECT_EQ(second.status(), 200) << second.attempt_str(0, "error");
  EXPECT_EQ(second.tries(0), 1);
  auto msgs = server->wait_for("message", 1);
  ASSERT_EQ(msgs.size(), 1u);
  EXPECT_EQ(msgs[0].rcpt_tos, std::vector<std::string>{"hank@example.com"});
}

// Implicit TLS (smtp_tls=tls, "port 465" style): TLS from the first byte, certificate
// checked against the test CA.
TEST_F(Smtp, ImplicitTls) {
  test::TestCerts certs;
  test::SmtpServerOptions o;
  o.cert = certs.server_cert;
  o.key = certs.server_key;
  o.implicit_tls = true;
  start(o, {{"smtp_tls", "tls"}, {"smtp_ca_file", certs.ca_cert}});
  Parsed r(send(body("ivy@example.com", "implicit TLS")));
  ASSERT_EQ(r.status(), 200) << r.attempt_str(0, "error");
  auto msgs = server->wait_for("message", 1);
  ASSERT_EQ(msgs.size(), 1u);
  EXPECT_TRUE(msgs[0].tls);
}

// Concurrency is bounded per server: ten jobs at once with smtp_pool=2 open at most two
// sessions; the others wait for a free one and all are delivered.
TEST_F(Smtp, PoolBoundLimitsSessions) {
  start({}, {{"smtp_pool", "2"}});
  auto baseline = server->events("connect").size();
  std::vector<std::string> ids;
  for (int i = 0; i < 10; ++i)
    ids.push_back(
        test::push_job(*producer, kPrefix,
                       {{"authorization", "Bearer " + api_key},
                        {"body", body("p" + std::to_string(i) + "@example.com", "pooled")}}));
  for (auto& id : ids) {
    auto json = test::wait_result(*producer, kPrefix, id);
    ASSERT_TRUE(json);
    Parsed r(*json);
    EXPECT_EQ(r.status(), 200) << *json;
  }
  EXPECT_EQ(server->wait_for("message", 10).size(), 10u);
  auto connects = server->events("connect").size() - baseline;
  EXPECT_GE(connects, 1u);
  EXPECT_LE(connects, 2u);
}

// A server that accepts the connection but never greets: the step deadline ends the try
// as a transient network failure, on time.
TEST(SmtpDirect, SilentServerTimesOut) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(fd, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  ASSERT_EQ(::listen(fd, 8), 0);  // the kernel completes connects; nobody answers
  socklen_t len = sizeof addr;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  ChannelSettings settings{{"from", "a@shop.example"},
                           {"smtp_host", "127.0.0.1"},
                           {"smtp_port", std::to_string(ntohs(addr.sin_port))},
                           {"smtp_tls", "none"}};
  Message message;
  message.text = "hi";
  SendRequest req;
  req.job_id = "1-0";
  req.settings = &settings;
  req.recipient = "b@example.com";
  req.message = &message;
  req.deadline = std::chrono::steady_clock::now() + 300ms;
  boost::asio::io_context io;
  ChannelContext context;
  SmtpChannel channel(context);
  Outcome out;
  auto start = std::chrono::steady_clock::now();
  boost::asio::co_spawn(
      io, [&]() -> boost::asio::awaitable<void> { out = co_await channel.send(req); },
      boost::asio::detached);
  io.run();
  auto took = std::chrono::steady_clock::now() - start;
  ::close(fd);
  EXPECT_EQ(out.kind, Outcome::Kind::transient);
  EXPECT_EQ(out.cause, Outcome::Cause::network);
  EXPECT_NE(out.error.find("timed out"), std::string::npos) << out.error;
  EXPECT_FALSE(out.unknown);
  EXPECT_GE(took, 290ms);
  EXPECT_LT(took, 1500ms);
}

// A non-ASCII recipient goes with SMTPUTF8 when the server offers it (aiosmtpd does).
TEST(SmtpDirect, Utf8RecipientUsesSmtpUtf8) {
  test::SmtpServer server;
  ChannelSettings settings{{"from", "a@shop.example"},
                           {"smtp_host", "127.0.0.1"},
                           {"smtp_port", std::to_string(server.port())},
                           {"smtp_tls", "none"}};
  Message message;
  message.text = "ol\xc3\xa1";
  SendRequest req;
  req.job_id = "7-0";
  req.settings = &settings;
  req.recipient = "jos\xc3\xa9@example.com";
  req.message = &message;
  req.deadline = std::chrono::steady_clock::now() + 5s;
  boost::asio::io_context io;
  ChannelContext context;
  SmtpChannel channel(context);
  Outcome out;
  boost::asio::co_spawn(
      io, [&]() -> boost::asio::awaitable<void> { out = co_await channel.send(req); },
      boost::asio::detached);
  io.run();
  EXPECT_TRUE(out.ok()) << out.error;
  auto msgs = server.wait_for("message", 1);
  ASSERT_EQ(msgs.size(), 1u);
  EXPECT_EQ(msgs[0].rcpt_tos, std::vector<std::string>{"jos\xc3\xa9@example.com"});
  EXPECT_EQ(msgs[0].message_id, "<7-0@shop.example>");
  EXPECT_EQ(channel.sessions_opened(), 1u);
  EXPECT_EQ(channel.idle_sessions(), 1u) << "kept for reuse";
}
