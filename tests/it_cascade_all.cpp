// The full cascade with all four channel types through the engine: tier 0 WhatsApp
// (gateway 503) + WABA (error 131026) fail, tier 1 Telegram fails permanently, tier 2 email
// over SMTP (a real aiosmtpd server) delivers.
#include <gtest/gtest.h>
#include <simdjson.h>

#include "support/harness.hpp"
#include "support/mock_provider.hpp"
#include "support/redis_server.hpp"
#include "support/smtp_server.hpp"

using namespace cascade;
using namespace std::chrono_literals;

namespace {
constexpr const char* kPrefix = "all";

std::string str(simdjson::dom::element e, const char* key) {
  std::string_view v;
  if (e[key].get(v)) return "";
  return std::string(v);
}
}  // namespace

TEST(CascadeAll, ThreeTiersFourChannelTypesEmailDelivers) {
  test::RedisServer redis;
  test::MockProvider mock;
  test::SmtpServer smtp;
  test::Admin admin(redis.url(), kPrefix);
  auto account = admin.create_account("acme");
  auto api_key = admin.create_api_key(account, {"send"});
  auto wa = admin.create_channel_key(
      account, "whatsapp",
      {{"api_base", mock.base_url()}, {"session", "default"}, {"gateway_key", "gw-secret"}});
  auto waba = admin.create_channel_key(account, "waba",
                                       {{"api_base", mock.base_url()},
                                        {"phone_number_id", "1234567890"},
                                        {"access_token", "EAAGwabasecret"}});
  auto tg = admin.create_channel_key(
      account, "telegram", {{"api_base", mock.base_url()}, {"bot_token", "333:tg-secret"}});
  std::string email_id;
  auto email = admin.create_channel_key(account, "email",
                                        {{"provider", "smtp"},
                                         {"from", "alerts@shop.example"},
                                         {"smtp_host", "127.0.0.1"},
                                         {"smtp_port", std::to_string(smtp.port())},
                                         {"smtp_tls", "none"}},
                                        &email_id);
  mock.add_rule(R"({"provider":"whatsapp","status":503})");
  mock.add_rule(R"({"provider":"waba","error_code":131026})");
  mock.add_rule(
      R"({"provider":"telegram","status":403,"description":"Forbidden: bot was blocked by the user"})");

  EngineConfig cfg;
  cfg.redis_url = redis.url();
  cfg.prefix = kPrefix;
  cfg.attempt_timeout = 3s;
  cfg.channel_timeout = 10s;
  cfg.retry.base = 20ms;
  test::EngineThread engine(cfg);
  test::SyncRedis producer(redis.url());

  auto body = R"({"keys":{"whatsapp":{"token":")" + wa + R"("},"waba":{"token":")" + waba +
              R"("},"telegram":{"token":")" + tg +
              R"(","fallback":true,"fallback_sequence":1},"email":{"token":")" + email +
              R"(","fallback":true,"fallback_sequence":2}},)" +
              R"("to":{"phone":"+33612345678","telegram":"42","email":"ann@example.com"},)" +
              R"("message":{"text":"Your order A-1042 has shipped","subject":"Order A-1042"},)" +
              R"("metadata":{"order":"A-1042"}})";
  auto id =
      test::push_job(producer, kPrefix, {{"authorization", "Bearer " + api_key}, {"body", body}});
  auto json = test::wait_result(producer, kPrefix, id);
  ASSERT_TRUE(json);
  simdjson::dom::parser parser;
  auto root = parser.parse(*json).value();
  EXPECT_EQ(root["status"].get_int64().value(), 200) << *json;
  EXPECT_EQ(str(root, "state"), "delivered");
  auto via = root["delivered_via"].get_array().value();
  ASSERT_EQ(via.size(), 1u);
  EXPECT_EQ(std::string_view(via.at(0).value()), "email");

  auto attempts = root["attempts"].get_array().value();
  ASSERT_EQ(attempts.size(), 4u) << *json;
  std::map<std::string, simdjson::dom::element> by;
  for (auto a : attempts)
    by[str(a, "channel")] = a;
  ASSERT_EQ(by.size(), 4u);
  // Tier 0: both primaries, in parallel; the gateway's 503 retried twice, WABA's 131026
  // (undeliverable) permanent.
  EXPECT_EQ(by["whatsapp"]["tier"].get_int64().value(), 0);
  EXPECT_FALSE(by["whatsapp"]["ok"].get_bool().value());
  EXPECT_TRUE(by["whatsapp"]["retryable"].get_bool().value());
  EXPECT_EQ(by["whatsapp"]["tries"].get_int64().value(), 3);
  EXPECT_EQ(by["waba"]["tier"].get_int64().value(), 0);
  EXPECT_FALSE(by["waba"]["retryable"].get_bool().value());
  EXPECT_EQ(by["waba"]["tries"].get_int64().value(), 1);
  EXPECT_NE(str(by["waba"], "error").find("131026"), std::string::npos);
  // Tier 1: Telegram blocked, permanent.
  EXPECT_EQ(by["telegram"]["tier"].get_int64().value(), 1);
  EXPECT_FALSE(by["telegram"]["ok"].get_bool().value());
  EXPECT_EQ(by["telegram"]["tries"].get_int64().value(), 1);
  EXPECT_NE(str(by["telegram"], "error").find("blocked"), std::string::npos);
  // Tier 2: email over SMTP.
  EXPECT_EQ(by["email"]["tier"].get_int64().value(), 2);
  EXPECT_TRUE(by["email"]["ok"].get_bool().value());
  EXPECT_FALSE(str(by["email"], "provider_id").empty());

  // The providers saw it in tier order.
  auto wa_reqs = mock.request_list("whatsapp");
  auto waba_reqs = mock.request_list("waba");
  auto tg_reqs = mock.request_list("telegram");
  ASSERT_EQ(wa_reqs.size(), 3u);
  ASSERT_EQ(waba_reqs.size(), 1u);
  ASSERT_EQ(tg_reqs.size(), 1u);
  EXPECT_GE(tg_reqs[0].received_us, wa_reqs.back().responded_us);
  auto mail = smtp.wait_for("message", 1);
  ASSERT_EQ(mail.size(), 1u);
  EXPECT_EQ(mail[0].rcpt_tos, std::vector<std::string>{"ann@example.com"});
  EXPECT_EQ(mail[0].subject, "Order A-1042");
  EXPECT_NE(mail[0].text.find("Your order A-1042 has shipped"), std::string::npos);
  EXPECT_EQ(mail[0].message_id, "<" + id + "." + email_id + "@shop.example>");
  // No secret in the result.
  for (auto secret : {"gw-secret", "EAAGwabasecret", "333:tg-secret"})
    EXPECT_EQ(json->find(secret), std::string::npos) << secret;
}
