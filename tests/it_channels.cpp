// The channel adapters end to end: the built-in registry's channels, one HttpClient, and
// cascade-mock-provider on a loopback port. Faults come from mock rules; what went over
// the wire is read back from the mock's request records.
#include <gtest/gtest.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>

#include <memory>
#include <optional>

#include "channels/channel.hpp"
#include "channels/http_client.hpp"
#include "channels/postmark.hpp"
#include "channels/telegram.hpp"
#include "channels/waba.hpp"
#include "channels/whatsapp.hpp"
#include "support/mock_provider.hpp"

namespace cascade {
namespace {

namespace asio = boost::asio;
using namespace std::chrono_literals;
using Kind = Outcome::Kind;
using Cause = Outcome::Cause;

constexpr const char* kBotToken = "123456:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw";
constexpr const char* kGatewayKey = "waha-secret-key-0001";
constexpr const char* kAccessToken = "EAAGm0PX4ZCpsBAsecretwabatoken";
constexpr const char* kServerToken = "pm-secret-server-token-42";

class Channels : public ::testing::Test {
 protected:
  Channels() {
    context_.http = &http_;
    auto registry = ChannelRegistry::with_builtins();
    for (const auto& [type, factory] : registry.factories())
      channels_[type] = factory(context_);
  }

  ChannelSettings settings(const std::string& type) const {
    ChannelSettings s{{"api_base", mock_.base_url()}};
    if (type == "telegram") {
      s["bot_token"] = kBotToken;
    } else if (type == "whatsapp") {
      s["session"] = "default";
      s["gateway_key"] = kGatewayKey;
    } else if (type == "waba") {
      s["phone_number_id"] = "1234567890";
      s["access_token"] = kAccessToken;
    } else if (type == "email") {
      s["provider"] = "postmark";
      s["server_token"] = kServerToken;
      s["from"] = "sender@example.com";
    }
    return s;
  }

  static std::string recipient_for(const std::string& type) {
    if (type == "telegram") return "123456789";
    if (type == "email") return "ana@example.com";
    return "+33612345678";
  }

  // One attempt through the registry's channel of `type`.
  Outcome send(const std::string& type, const ChannelSettings& s, const std::string& recipient,
               std::chrono::milliseconds timeout = 5s) {
    SendRequest req;
    req.job_id = "1732410000000-0";
    req.settings = &s;
    req.recipient = recipient;
    req.message = &message_;
    req.deadline = std::chrono::steady_clock::now() + timeout;
    std::optional<Outcome> out;
    asio::co_spawn(ioc_, channels_.at(type)->send(req), [&](std::exception_ptr e, Outcome o) {
      if (e) std::rethrow_exception(e);
      out = std::move(o);
    });
    auto end = std::chrono::steady_clock::now() + 20s;
    ioc_.restart();
    while (!out && std::chrono::steady_clock::now() < end)
      ioc_.run_one_for(1s);
    if (!out) throw std::runtime_error("channel send did not finish");
    // No credential ever reaches an error text.
    for (const char* secret : {kBotToken, kGatewayKey, kAccessToken, kServerToken})
      EXPECT_EQ(out->error.find(secret), std::string::npos) << out->error;
    return *out;
  }
  Outcome send(const std::string& type) { return send(type, settings(type), recipient_for(type)); }

  test::MockProvider mock_;
  asio::io_context ioc_;
  HttpClient http_{ioc_.get_executor()};
  ChannelContext context_;
  std::map<std::string, std::unique_ptr<Channel>, std::less<>> channels_;
  Message message_{"Your code is 123456", "", "<p>Your code is <b>123456</b></p>"};
};

TEST_F(Channels, RegistryHasTheBuiltInTypes) {
  auto registry = ChannelRegistry::with_builtins();
  for (auto type : {"telegram", "whatsapp", "waba", "email"})
    EXPECT_TRUE(registry.has(type));
  EXPECT_FALSE(registry.has("sms"));
}

// --- success, and what went over the wire -----------------------------------------------

TEST_F(Channels, TelegramSendsNumericChatIdAndGetsMessageId) {
  auto o = send("telegram");
  EXPECT_EQ(o.kind, Kind::sent) << o.error;
  EXPECT_EQ(o.provider_id, "1");
  auto reqs = mock_.request_list("telegram");
  ASSERT_EQ(reqs.size(), 1u);
  EXPECT_EQ(reqs[0].token, kBotToken);
  EXPECT_EQ(reqs[0].path, std::string("/bot") + kBotToken + "/sendMessage");
  EXPECT_EQ(reqs[0].recipient, "123456789");
  EXPECT_EQ(reqs[0].text, "Your code is 123456");
  EXPECT_NE(reqs[0].body.find(R"("chat_id":123456789)"), std::string::npos) << reqs[0].body;
}

TEST_F(Channels, TelegramUsernameGoesAsString) {
  auto o = send("telegram", settings("telegram"), "@cascade_news");
  EXPECT_EQ(o.kind, Kind::sent) << o.error;
  auto reqs = mock_.request_list("telegram");
  ASSERT_EQ(reqs.size(), 1u);
  EXPECT_NE(reqs[0].body.find(R"("chat_id":"@cascade_news")"), std::string::npos) << reqs[0].body;
}

TEST_F(Channels, WhatsAppSendsDigitsAtCUs) {
  auto o = send("whatsapp");
  EXPECT_EQ(o.kind, Kind::sent) << o.error;
  EXPECT_FALSE(o.provider_id.empty());
  auto reqs = mock_.request_list("whatsapp");
  ASSERT_EQ(reqs.size(), 1u);
  EXPECT_EQ(reqs[0].token, kGatewayKey);
  EXPECT_EQ(reqs[0].path, "/api/sendText");
  EXPECT_EQ(reqs[0].recipient, "33612345678");
  EXPECT_NE(reqs[0].body.find(R"("chatId":"33612345678@c.us")"), std::string::npos);
  EXPECT_NE(reqs[0].body.find(R"("session":"default")"), std::string::npos);
}

TEST_F(Channels, WabaSendsCloudApiTextMessage) {
  auto o = send("waba");
  EXPECT_EQ(o.kind, Kind::sent) << o.error;
  EXPECT_TRUE(o.provider_id.starts_with("wamid.")) << o.provider_id;
  auto reqs = mock_.request_list("waba");
  ASSERT_EQ(reqs.size(), 1u);
  EXPECT_EQ(reqs[0].token, kAccessToken);
  EXPECT_EQ(reqs[0].path, "/v23.0/1234567890/messages");
  EXPECT_EQ(reqs[0].recipient, "33612345678");
  EXPECT_EQ(reqs[0].text, "Your code is 123456");
  EXPECT_NE(reqs[0].body.find(R"("messaging_product":"whatsapp")"), std::string::npos);
}

TEST_F(Channels, PostmarkSendsEmailWithSubjectFromText) {
  auto o = send("email");
  EXPECT_EQ(o.kind, Kind::sent) << o.error;
  EXPECT_FALSE(o.provider_id.empty());
  auto reqs = mock_.request_list("postmark");
  ASSERT_EQ(reqs.size(), 1u);
  EXPECT_EQ(reqs[0].token, kServerToken);
  EXPECT_EQ(reqs[0].path, "/email");
  EXPECT_EQ(reqs[0].recipient, "ana@example.com");
  EXPECT_EQ(reqs[0].subject, "Your code is 123456");
  EXPECT_NE(reqs[0].body.find(R"("HtmlBody":"<p>Your code is <b>123456</b></p>")"),
            std::string::npos);
  EXPECT_NE(reqs[0].body.find(R"("MessageStream":"outbound")"), std::string::npos);
  EXPECT_NE(reqs[0].body.find(R"("From":"sender@example.com")"), std::string::npos);
}

// --- faults ----------------------------------------------------------------------------

// A 503 is transient on every channel.
TEST_F(Channels, Provider503IsTransient) {
  mock_.add_rule(R"({"provider":"*","status":503})");
  for (auto type : {"telegram", "whatsapp", "waba", "email"}) {
    auto o = send(type);
    EXPECT_EQ(o.kind, Kind::transient) << type << ": " << o.error;
    EXPECT_EQ(o.cause, Cause::provider) << type;
    EXPECT_FALSE(o.error.empty());
  }
}

TEST_F(Channels, TelegramChatNotFoundIsPermanentRecipient) {
  mock_.add_rule(
      R"({"provider":"telegram","status":400,"description":"Bad Request: chat not found"})");
  auto o = send("telegram");
  EXPECT_EQ(o.kind, Kind::permanent);
  EXPECT_EQ(o.cause, Cause::recipient);
  EXPECT_EQ(o.error, "telegram: chat not found (400)");
}

TEST_F(Channels, WabaUndeliverableIsPermanentRecipient) {
  mock_.add_rule(R"({"provider":"waba","error_code":131026})");
  auto o = send("waba");
  EXPECT_EQ(o.kind, Kind::permanent) << o.error;
  EXPECT_EQ(o.cause, Cause::recipient);
  EXPECT_TRUE(o.error.starts_with("waba: (#131026)")) << o.error;
}

TEST_F(Channels, WhatsApp400IsPermanentContent) {
  mock_.add_rule(R"({"provider":"whatsapp","status":400})");
  auto o = send("whatsapp");
  EXPECT_EQ(o.kind, Kind::permanent) << o.error;
  EXPECT_EQ(o.cause, Cause::content);
}

TEST_F(Channels, PostmarkInactiveRecipientIsPermanentRecipient) {
  mock_.add_rule(R"({"provider":"postmark","error_code":406})");
  auto o = send("email");
  EXPECT_EQ(o.kind, Kind::permanent) << o.error;
  EXPECT_EQ(o.cause, Cause::recipient);
}

TEST_F(Channels, Telegram429IsRetryAfter) {
  mock_.add_rule(R"({"provider":"telegram","status":429,"retry_after":3})");
  auto o = send("telegram");
  EXPECT_EQ(o.kind, Kind::retry_after) << o.error;
  EXPECT_EQ(o.retry_after, 3s);
  EXPECT_EQ(o.cause, Cause::throttled);
}

// A group upgraded to a supergroup: the reply names the new id and the message goes there.
TEST_F(Channels, TelegramMigratedGroupIsResentToNewChat) {
  mock_.add_rule(
      R"({"provider":"telegram","recipient":"-4001","status":400,"body":"{\"ok\":false,\"error_code\":400,\"description\":\"Bad Request: group chat was upgraded to a supergroup chat\",\"parameters\":{\"migrate_to_chat_id\":-1004001}}"})");
  auto o = send("telegram", settings("telegram"), "-4001");
  EXPECT_EQ(o.kind, Kind::sent) << o.error;
  auto reqs = mock_.request_list("telegram");
  ASSERT_EQ(reqs.size(), 2u);
  EXPECT_EQ(reqs[0].recipient, "-4001");
  EXPECT_EQ(reqs[1].recipient, "-1004001");
}

// The provider holds the reply past the deadline: transient, outcome unknown.
TEST_F(Channels, SlowProviderTimesOutWithUnknownOutcome) {
  mock_.add_rule(R"({"provider":"telegram","delay_ms":3000})");
  auto o = send("telegram", settings("telegram"), "123456789", 300ms);
  EXPECT_EQ(o.kind, Kind::transient);
  EXPECT_EQ(o.cause, Cause::network);
  EXPECT_TRUE(o.unknown);
  EXPECT_EQ(o.error, "timed out after request was sent (outcome unknown)");
}

// The provider processes the message and drops the connection without answering, on a
// fresh connection: not retried by the client, reported as transient with unknown outcome.
TEST_F(Channels, DroppedConnectionIsTransient) {
  mock_.add_rule(R"({"provider":"waba","action":"drop_after","times":1})");
  auto o = send("waba");
  EXPECT_EQ(o.kind, Kind::transient);
  EXPECT_TRUE(o.unknown);
  EXPECT_EQ(mock_.request_list("waba").size(), 1u);
}

// --- configuration ---------------------------------------------------------------------

// api_base setting > global override > provider default.
TEST_F(Channels, ChannelKeyApiBaseWinsOverGlobalOverride) {
  ChannelContext ctx;
  ctx.http = &http_;
  ctx.api_base_overrides["telegram"] = "http://127.0.0.1:9";  // nothing listens there
  auto channel = ChannelRegistry::with_builtins().factories().at("telegram")(ctx);
  channels_["telegram-overridden"] = std::move(channel);
  auto o = send("telegram-overridden", settings("telegram"), "123456789");
  EXPECT_EQ(o.kind, Kind::sent) << o.error;

  auto without_base = settings("telegram");
  without_base.erase("api_base");
  auto o2 = send("telegram-overridden", without_base, "123456789");
  EXPECT_EQ(o2.kind, Kind::transient);  // went to the override: connection refused
  EXPECT_EQ(o2.cause, Cause::network);
}

TEST_F(Channels, GlobalOverrideWinsOverDefault) {
  ChannelContext ctx;
  ctx.http = &http_;
  ctx.api_base_overrides["email"] = mock_.base_url();
  channels_["email-overridden"] = ChannelRegistry::with_builtins().factories().at("email")(ctx);
  auto s = settings("email");
  s.erase("api_base");
  auto o = send("email-overridden", s, "ana@example.com");
  EXPECT_EQ(o.kind, Kind::sent) << o.error;
  EXPECT_EQ(mock_.request_list("postmark").size(), 1u);
}

TEST_F(Channels, InsecureHttpBaseIsRefusedUnlessAllowed) {
  auto s = settings("waba");
  s["api_base"] = "http://graph.example.com";
  auto o = send("waba", s, "+33612345678");
  EXPECT_EQ(o.kind, Kind::permanent);
  EXPECT_EQ(o.cause, Cause::config);
  EXPECT_EQ(o.error, "insecure http base refused");
  EXPECT_EQ(http_.connections_opened(), 0u);

  // Allowed explicitly: a request is built (not sent here: the host is not loopback).
  s = settings("telegram");
  s["api_base"] = "http://gateway.internal:8080/tg";
  s["allow_insecure_http"] = "1";
  SendRequest req;
  req.settings = &s;
  req.recipient = "1";
  req.message = &message_;
  auto built = TelegramChannel::build(req, "");
  ASSERT_TRUE(built.request);
  EXPECT_EQ(built.request->url.host, "gateway.internal");
  EXPECT_EQ(built.request->target, std::string("/tg/bot") + kBotToken + "/sendMessage");
  // Default base when nothing overrides it.
  s.erase("api_base");
  s.erase("allow_insecure_http");
  built = TelegramChannel::build(req, "");
  ASSERT_TRUE(built.request);
  EXPECT_EQ(built.request->url.origin(), "https://api.telegram.org:443");
}

// A channel key's max_connections becomes its requests' cap, keyed by the channel key id
// (the HTTP client holds further requests of that key back); malformed, a config error.
TEST_F(Channels, MaxConnectionsSettingCapsTheKeysRequests) {
  using Build = BuiltRequest (*)(const SendRequest&, std::string_view);
  auto telegram = [](const SendRequest& r, std::string_view base) {
    return TelegramChannel::build(r, base);
  };
  for (auto [type, build] : {std::pair<std::string, Build>{"telegram", telegram},
                             std::pair<std::string, Build>{"waba", &WabaChannel::build},
                             std::pair<std::string, Build>{"whatsapp", &WhatsAppChannel::build},
                             std::pair<std::string, Build>{"email", &PostmarkChannel::build}}) {
    auto s = settings(type);
    SendRequest req;
    req.channel_key_id = "chk_capped";
    req.settings = &s;
    req.recipient = recipient_for(type);
    req.message = &message_;
    auto built = build(req, "");
    ASSERT_TRUE(built.request) << type << ": " << built.error.error;
    EXPECT_EQ(built.request->max_in_flight, 0u) << type;  // no setting: no cap

    s["max_connections"] = "3";
    built = build(req, "");
    ASSERT_TRUE(built.request) << type << ": " << built.error.error;
    EXPECT_EQ(built.request->cap_key, "chk_capped") << type;
    EXPECT_EQ(built.request->max_in_flight, 3u) << type;

    s["max_connections"] = "3x";
    built = build(req, "");
    EXPECT_FALSE(built.request) << type;
    EXPECT_EQ(built.error.cause, Cause::config) << type;
    EXPECT_NE(built.error.error.find("malformed max_connections"), std::string::npos)
        << built.error.error;
  }
}

TEST_F(Channels, MissingCredentialsAreConfigErrors) {
  for (auto [type, key] : {std::pair{"telegram", "bot_token"}, std::pair{"waba", "access_token"},
                           std::pair{"email", "server_token"}}) {
    auto s = settings(type);
    s.erase(key);
    auto o = send(type, s, recipient_for(type));
    EXPECT_EQ(o.kind, Kind::permanent) << type;
    EXPECT_EQ(o.cause, Cause::config) << type << ": " << o.error;
  }
  EXPECT_EQ(mock_.request_list().size(), 0u);
}

TEST_F(Channels, BadRecipientsArePermanentRecipientErrors) {
  EXPECT_EQ(send("whatsapp", settings("whatsapp"), "not a phone").cause, Cause::recipient);
  EXPECT_EQ(send("waba", settings("waba"), "+12").cause, Cause::recipient);
  EXPECT_EQ(send("email", settings("email"), "nobody").cause, Cause::recipient);
  EXPECT_EQ(mock_.request_list().size(), 0u);
}

// provider=smtp dispatches to the SMTP client (tests/it_smtp.cpp); without a host it is a
// configuration error, and plain SMTP is refused to a non-loopback host.
TEST_F(Channels, SmtpEmailSettingsChecked) {
  auto s = settings("email");
  s["provider"] = "smtp";
  auto o = send("email", s, "ana@example.com");
  EXPECT_EQ(o.kind, Kind::permanent);
  EXPECT_EQ(o.cause, Cause::config);
  EXPECT_EQ(o.error, "smtp: smtp_host not set");
  s["smtp_host"] = "smtp.example.com";
  s["smtp_tls"] = "none";
  o = send("email", s, "ana@example.com");
  EXPECT_EQ(o.cause, Cause::config);
  EXPECT_EQ(o.error, "smtp: smtp_tls=none is only allowed to loopback hosts");
}

TEST(EmailSubject, FirstSeventyEightCharactersOfText) {
  Message m;
  m.text = std::string(100, 'a');
  EXPECT_EQ(email_subject(m), std::string(78, 'a'));
  m.text = "line one\nline two";
  EXPECT_EQ(email_subject(m), "line one line two");
  std::string accents;
  for (int i = 0; i < 100; ++i)
    accents += "\xC3\xA9";
  m.text = accents;
  EXPECT_EQ(email_subject(m).size(), 78u * 2);
  m.subject = "Given";
  EXPECT_EQ(email_subject(m), "Given");
}

}  // namespace
}  // namespace cascade
