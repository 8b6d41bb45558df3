// Provider reply classification: every row of shared/reference/provider-apis.md, with the
// providers' real reply bodies, plus transport errors and secret masking.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "channels/classify.hpp"

namespace cascade {
namespace {

using namespace std::chrono_literals;
using Kind = Outcome::Kind;
using Cause = Outcome::Cause;

enum class Provider { telegram, waha, waba, postmark };

struct Case {
  Case(const char* name, Provider provider, int status, std::string body,
       std::string retry_after_header, Kind kind, Cause cause, std::string error = {},
       std::string provider_id = {}, std::chrono::milliseconds retry_after = {})
      : name(name),
        provider(provider),
        status(status),
        body(std::move(body)),
        retry_after_header(std::move(retry_after_header)),
        kind(kind),
        cause(cause),
        error(std::move(error)),
        provider_id(std::move(provider_id)),
        retry_after(retry_after) {}
  const char* name;
  Provider provider;
  int status;
  std::string body;
  std::string retry_after_header;
  Kind kind;
  Cause cause;
  std::string error;        // exact expected text ("" = not checked)
  std::string provider_id;  // for sent
  std::chrono::milliseconds retry_after;
};

Outcome classify(const Case& c, Secrets secrets = {}) {
  switch (c.provider) {
    case Provider::telegram:
      return classify_telegram(c.status, c.body, c.retry_after_header, secrets);
    case Provider::waha:
      return classify_whatsapp_waha(c.status, c.body, c.retry_after_header, secrets);
    case Provider::waba:
      return classify_waba(c.status, c.body, c.retry_after_header, secrets);
    case Provider::postmark:
      return classify_postmark(c.status, c.body, c.retry_after_header, secrets);
  }
  return {};
}

const std::string tg_ok =
    R"({"ok":true,"result":{"message_id":42,"date":1746268800,"chat":{"id":123456789,"type":"private","first_name":"Ana"},"from":{"id":987,"is_bot":true,"first_name":"Bot"},"text":"Your code is 123456"}})";
std::string tg_err(int code, const std::string& description, const std::string& params = "") {
  return R"({"ok":false,"error_code":)" + std::to_string(code) + R"(,"description":")" +
         description + "\"" + (params.empty() ? "" : ",\"parameters\":" + params) + "}";
}
std::string graph_err(int code, const std::string& message, const std::string& extra = "") {
  return R"({"error":{"message":")" + message + R"(","type":"OAuthException","code":)" +
         std::to_string(code) + extra + R"(,"fbtrace_id":"Az8or2yhqkZfEZ-_4Qn_Bam"}})";
}
std::string pm_err(int code, const std::string& message) {
  return R"({"ErrorCode":)" + std::to_string(code) + R"(,"Message":")" + message + "\"}";
}

const std::vector<Case>& cases() {
  static const std::vector<Case> all = {
      // --- Telegram ---------------------------------------------------------------------
      {"tg_sent", Provider::telegram, 200, tg_ok, "", Kind::sent, Cause::none, "", "42"},
      {"tg_429_retry_after", Provider::telegram, 429,
       tg_err(429, "Too Many Requests: retry after 30", R"({"retry_after":30})"), "30",
       Kind::retry_after, Cause::throttled, "telegram: too many requests, retry after 30 s (429)",
       "", 30s},
      {"tg_429_header_only", Provider::telegram, 429, "", "7", Kind::retry_after, Cause::throttled,
       "", "", 7s},
      {"tg_429_description_only", Provider::telegram, 429,
       R"({"ok":false,"error_code":429,"description":"Too Many Requests: retry after 5"})", "",
       Kind::retry_after, Cause::throttled, "", "", 5s},
      {"tg_429_no_hint", Provider::telegram, 429,
       R"({"ok":false,"error_code":429,"description":"Too Many Requests"})", "", Kind::transient,
       Cause::throttled, "telegram: too many requests (429)"},
      {"tg_500_json", Provider::telegram, 500, tg_err(500, "Internal Server Error: restart"), "",
       Kind::transient, Cause::provider, "telegram: restart (500)"},
      {"tg_502_html", Provider::telegram, 502,
       "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n<center><h1>502 Bad "
       "Gateway</h1></center>\r\n<hr><center>nginx/1.18.0</center>\r\n</body>\r\n</html>\r\n",
       "", Kind::transient, Cause::provider, "provider returned 502"},
      {"tg_503_empty", Provider::telegram, 503, "", "", Kind::transient, Cause::provider,
       "provider returned 503"},
      {"tg_504_html", Provider::telegram, 504, "<html><body>504 Gateway Time-out</body></html>", "",
       Kind::transient, Cause::provider, "provider returned 504"},
      {"tg_chat_not_found", Provider::telegram, 400, tg_err(400, "Bad Request: chat not found"), "",
       Kind::permanent, Cause::recipient, "telegram: chat not found (400)"},
      {"tg_user_not_found", Provider::telegram, 400, tg_err(400, "Bad Request: user not found"), "",
       Kind::permanent, Cause::recipient, "telegram: user not found (400)"},
      {"tg_migrated", Provider::telegram, 400,
       tg_err(400, "Bad Request: group chat was upgraded to a supergroup chat",
              R"({"migrate_to_chat_id":-1001234567890})"),
       "", Kind::permanent, Cause::recipient,
       "telegram: group chat was upgraded to a supergroup chat (400)"},
      {"tg_blocked", Provider::telegram, 403, tg_err(403, "Forbidden: bot was blocked by the user"),
       "", Kind::permanent, Cause::recipient, "telegram: bot was blocked by the user (403)"},
      {"tg_deactivated", Provider::telegram, 403, tg_err(403, "Forbidden: user is deactivated"), "",
       Kind::permanent, Cause::recipient},
      {"tg_kicked", Provider::telegram, 403,
       tg_err(403, "Forbidden: bot was kicked from the group chat"), "", Kind::permanent,
       Cause::recipient},
      {"tg_not_member", Provider::telegram, 403,
       tg_err(403, "Forbidden: bot is not a member of the channel chat"), "", Kind::permanent,
       Cause::recipient},
      {"tg_cant_initiate", Provider::telegram, 403,
       tg_err(403, "Forbidden: bot can't initiate conversation with a user"), "", Kind::permanent,
       Cause::recipient},
      {"tg_text_empty", Provider::telegram, 400, tg_err(400, "Bad Request: message text is empty"),
       "", Kind::permanent, Cause::content, "telegram: message text is empty (400)"},
      {"tg_text_too_long", Provider::telegram, 400, tg_err(400, "Bad Request: message is too long"),
       "", Kind::permanent, Cause::content},
      {"tg_parse_entities", Provider::telegram, 400,
       tg_err(400,
              "Bad Request: can't parse entities: Can't find end of the entity starting at byte "
              "offset 4"),
       "", Kind::permanent, Cause::content},
      {"tg_chat_id_empty", Provider::telegram, 400, tg_err(400, "Bad Request: chat_id is empty"),
       "", Kind::permanent, Cause::content},
      {"tg_unauthorized", Provider::telegram, 401, tg_err(401, "Unauthorized"), "", Kind::permanent,
       Cause::config, "telegram: Unauthorized (401)"},
      {"tg_invalid_token", Provider::telegram, 401,
       tg_err(401, "Unauthorized: invalid token specified"), "", Kind::permanent, Cause::config,
       "telegram: invalid token specified (401)"},
      {"tg_not_found", Provider::telegram, 404, tg_err(404, "Not Found"), "", Kind::permanent,
       Cause::config, "telegram: Not Found (404)"},
      {"tg_method_not_found", Provider::telegram, 404, tg_err(404, "Not Found: method not found"),
       "", Kind::permanent, Cause::config},
      {"tg_200_not_json", Provider::telegram, 200, "OK", "", Kind::transient, Cause::provider,
       "telegram: unreadable reply (200)"},

      // --- WAHA -------------------------------------------------------------------------
      {"waha_sent_docs", Provider::waha, 201,
       R"({"id":"true_111@c.us_AAAA","timestamp":1666943582,"from":"222@c.us","fromMe":true,"to":"111@c.us","body":"Hi there!"})",
       "", Kind::sent, Cause::none, "", "true_111@c.us_AAAA"},
      {"waha_sent_webjs", Provider::waha, 201,
       R"({"_data":{"body":"Hi"},"id":{"fromMe":true,"remote":"628123@c.us","id":"3EB0B4","_serialized":"true_628123@c.us_3EB0B4"},"ack":0,"hasMedia":false})",
       "", Kind::sent, Cause::none, "", "true_628123@c.us_3EB0B4"},
      {"waha_sent_noweb", Provider::waha, 201,
       R"({"key":{"remoteJid":"111@s.whatsapp.net","fromMe":true,"id":"3EB0C767D71D"},"message":{"extendedTextMessage":{"text":"Hi there!"}},"messageTimestamp":"1738070128","status":"PENDING"})",
       "", Kind::sent, Cause::none, "", "3EB0C767D71D"},
      {"waha_sent_empty", Provider::waha, 201, "", "", Kind::sent, Cause::none, "", ""},
      {"waha_401", Provider::waha, 401, R"({"message":"Unauthorized","statusCode":401})", "",
       Kind::permanent, Cause::config, "whatsapp: Unauthorized (401)"},
      {"waha_403", Provider::waha, 403,
       R"({"statusCode":403,"message":"Forbidden resource","error":"Forbidden"})", "",
       Kind::permanent, Cause::config, "whatsapp: Forbidden resource (403)"},
      {"waha_404_session", Provider::waha, 404,
       R"({"statusCode":404,"message":"We didn't find a session with name 'x'.\nPlease start it first by using POST /api/sessions/x/start request","error":"Not Found"})",
       "", Kind::permanent, Cause::config,
       "whatsapp: We didn't find a session with name 'x'. (404)"},
      {"waha_422_not_working", Provider::waha, 422,
       R"({"error":"Session status is not as expected. Try again later or restart the session","session":"default","status":"SCAN_QR_CODE","expected":["WORKING"]})",
       "", Kind::transient, Cause::provider,
       "whatsapp: session status SCAN_QR_CODE, expected WORKING (422)"},
      {"waha_400_validation", Provider::waha, 400,
       R"({"statusCode":400,"message":["text should not be empty","chatId must be a string"],"error":"Bad Request"})",
       "", Kind::permanent, Cause::content,
       "whatsapp: text should not be empty; chatId must be a string (400)"},
      {"waha_400_not_on_whatsapp", Provider::waha, 400,
       R"({"status":400,"error":"Bad Request","response":{"message":[{"jid":"5511999999999@s.whatsapp.net","exists":false,"number":"5511999999999"}]}})",
       "", Kind::permanent, Cause::recipient, "whatsapp: number is not on WhatsApp (400)"},
      {"waha_500", Provider::waha, 500,
       R"({"statusCode":500,"timestamp":"2025-01-28T13:15:28.000Z","exception":{"message":"Session 'default' is not connected","name":"Error"},"request":{"path":"/api/sendText","method":"POST","body":{"session":"default"}},"version":"2024.10.1"})",
       "", Kind::transient, Cause::provider, "whatsapp: Session 'default' is not connected (500)"},
      {"waha_503_html", Provider::waha, 503, "<html>Service Unavailable</html>", "",
       Kind::transient, Cause::provider, "provider returned 503"},

      // --- WABA -------------------------------------------------------------------------
      {"waba_sent", Provider::waba, 200,
       R"({"messaging_product":"whatsapp","contacts":[{"input":"+16505551234","wa_id":"16505551234"}],"messages":[{"id":"wamid.HBgLMTY1MDM4Nzk0MzkVAgARGBI5QTNDQTVCM0Q0Q0Q2RTY3RTcA","message_status":"accepted"}]})",
       "", Kind::sent, Cause::none, "",
       "wamid.HBgLMTY1MDM4Nzk0MzkVAgARGBI5QTNDQTVCM0Q0Q0Q2RTY3RTcA"},
      {"waba_4", Provider::waba, 400, graph_err(4, "(#4) Application request limit reached"), "",
       Kind::transient, Cause::throttled, "waba: (#4) Application request limit reached"},
      {"waba_80007", Provider::waba, 429,
       graph_err(80007, "(#80007) Rate limit issues", R"(,"is_transient":true)"), "",
       Kind::transient, Cause::throttled},
      {"waba_130429", Provider::waba, 400,
       graph_err(
           130429, "(#130429) Rate limit hit",
           R"(,"error_data":{"messaging_product":"whatsapp","details":"Message failed to send because there were too many messages sent from this phone number in a short period of time"},"error_subcode":2494055)"),
       "", Kind::transient, Cause::throttled, "waba: (#130429) Rate limit hit"},
      {"waba_131056", Provider::waba, 400,
       graph_err(131056, "(#131056) (Business Account, Consumer Account) pair rate limit hit",
                 R"(,"error_subcode":2494071)"),
       "", Kind::retry_after, Cause::throttled, "", "", 6s},
      {"waba_131048", Provider::waba, 400, graph_err(131048, "(#131048) Spam rate limit hit"), "",
       Kind::transient, Cause::throttled},
      {"waba_131057", Provider::waba, 400,
       graph_err(131057, "(#131057) Account in maintenance mode"), "", Kind::transient,
       Cause::provider},
      {"waba_1", Provider::waba, 400, graph_err(1, "An unknown error occurred"), "",
       Kind::transient, Cause::provider, "waba: (#1) An unknown error occurred"},
      {"waba_2", Provider::waba, 503, graph_err(2, "Service temporarily unavailable"), "",
       Kind::transient, Cause::provider},
      {"waba_131000", Provider::waba, 500, graph_err(131000, "(#131000) Something went wrong"), "",
       Kind::transient, Cause::provider},
      {"waba_131016", Provider::waba, 503, graph_err(131016, "(#131016) Service unavailable"), "",
       Kind::transient, Cause::provider},
      {"waba_131026", Provider::waba, 400, graph_err(131026, "(#131026) Message undeliverable"), "",
       Kind::permanent, Cause::recipient, "waba: (#131026) Message undeliverable"},
      {"waba_131021", Provider::waba, 400,
       graph_err(131021, "(#131021) Recipient cannot be sender"), "", Kind::permanent,
       Cause::recipient},
      {"waba_131050", Provider::waba, 400,
       graph_err(131050, "(#131050) User has stopped receiving marketing messages"), "",
       Kind::permanent, Cause::recipient},
      {"waba_131049", Provider::waba, 400,
       graph_err(131049,
                 "(#131049) This message was not delivered to maintain healthy ecosystem "
                 "engagement"),
       "", Kind::retry_after, Cause::throttled, "", "", 24h},
      {"waba_131047", Provider::waba, 400, graph_err(131047, "(#131047) Re-engagement message"), "",
       Kind::permanent, Cause::content},
      {"waba_131051", Provider::waba, 400, graph_err(131051, "(#131051) Unsupported message type"),
       "", Kind::permanent, Cause::content},
      {"waba_100", Provider::waba, 400, graph_err(100, "(#100) Invalid parameter"), "",
       Kind::permanent, Cause::content},
      {"waba_100_33", Provider::waba, 400,
       R"({"error":{"message":"Unsupported post request. Object with ID '1234567890' does not exist, cannot be loaded due to missing permissions, or does not support this operation.","type":"GraphMethodException","code":100,"error_subcode":33,"fbtrace_id":"AbC"}})",
       "", Kind::permanent, Cause::config},
      {"waba_131008", Provider::waba, 400,
       graph_err(131008, "(#131008) Required parameter is missing"), "", Kind::permanent,
       Cause::content},
      {"waba_131009_to", Provider::waba, 400,
       graph_err(
           131009, "(#131009) Parameter value is not valid",
           R"(,"error_data":{"messaging_product":"whatsapp","details":"Invalid phone number in 'to'"})"),
       "", Kind::permanent, Cause::recipient},
      {"waba_131009_other", Provider::waba, 400,
       graph_err(
           131009, "(#131009) Parameter value is not valid",
           R"(,"error_data":{"messaging_product":"whatsapp","details":"preview_url must be a boolean"})"),
       "", Kind::permanent, Cause::content},
      {"waba_131030", Provider::waba, 400,
       graph_err(131030, "(#131030) Recipient phone number not in allowed list"), "",
       Kind::permanent, Cause::config},
      {"waba_132001", Provider::waba, 404,
       graph_err(132001, "(#132001) Template name does not exist in the translation"), "",
       Kind::permanent, Cause::content},
      {"waba_132000", Provider::waba, 400,
       graph_err(132000, "(#132000) Number of parameters does not match the expected number"), "",
       Kind::permanent, Cause::content},
      {"waba_132015", Provider::waba, 400, graph_err(132015, "(#132015) Template is paused"), "",
       Kind::permanent, Cause::content},
      {"waba_190", Provider::waba, 401,
       graph_err(190, "Error validating access token: Session has expired on Tuesday, 01-Aug-23",
                 R"(,"error_subcode":463)"),
       "", Kind::permanent, Cause::config,
       "waba: (#190) Error validating access token: Session has expired on Tuesday, 01-Aug-23"},
      {"waba_0", Provider::waba, 401, graph_err(0, "AuthException"), "", Kind::permanent,
       Cause::config},
      {"waba_10", Provider::waba, 403, graph_err(10, "(#10) Permission denied"), "",
       Kind::permanent, Cause::config},
      {"waba_200", Provider::waba, 403,
       graph_err(200, "(#200) Requires whatsapp_business_messaging permission"), "",
       Kind::permanent, Cause::config},
      {"waba_368", Provider::waba, 403,
       graph_err(368, "(#368) Temporarily blocked for policies violations"), "", Kind::permanent,
       Cause::config},
      {"waba_131031", Provider::waba, 403, graph_err(131031, "(#131031) Account has been locked"),
       "", Kind::permanent, Cause::config},
      {"waba_133010", Provider::waba, 400,
       graph_err(133010, "(#133010) Phone number Not Registered"), "", Kind::permanent,
       Cause::config},
      {"waba_unknown_code_transient_flag", Provider::waba, 400,
       graph_err(17, "(#17) User request limit reached", R"(,"is_transient":true)"), "",
       Kind::transient, Cause::provider},
      {"waba_502_html", Provider::waba, 502, "<html>Bad Gateway</html>", "", Kind::transient,
       Cause::provider, "provider returned 502"},

      // --- Postmark ---------------------------------------------------------------------
      {"pm_sent", Provider::postmark, 200,
       R"({"To":"a@example.com","SubmittedAt":"2011-07-13T16:50:08.54+01:00","MessageID":"bcc6e534-e67d-4f78-a9fd-a1c4540b4dcb","ErrorCode":0,"Message":"OK"})",
       "", Kind::sent, Cause::none, "", "bcc6e534-e67d-4f78-a9fd-a1c4540b4dcb"},
      {"pm_401_token", Provider::postmark, 401,
       pm_err(10,
              "The Server Token you provided in the X-Postmark-Server-Token request header "
              "was invalid."),
       "", Kind::permanent, Cause::config},
      {"pm_406_inactive", Provider::postmark, 422,
       pm_err(406,
              "You tried to send to recipient(s) that have been marked as inactive. Found "
              "inactive addresses: x@y. Inactive recipients are ones that have generated a "
              "hard bounce, a spam complaint, or a manual suppression."),
       "", Kind::permanent, Cause::recipient},
      {"pm_300_invalid", Provider::postmark, 422, pm_err(300, "Invalid email request"), "",
       Kind::permanent, Cause::content, "postmark: Invalid email request (ErrorCode 300)"},
      {"pm_402_json", Provider::postmark, 422, pm_err(402, "Invalid JSON"), "", Kind::permanent,
       Cause::content},
      {"pm_411_attachment", Provider::postmark, 422, pm_err(411, "Forbidden attachment type"), "",
       Kind::permanent, Cause::content},
      {"pm_400_signature", Provider::postmark, 422,
       pm_err(400,
              "The 'From' address you supplied (x@y) is not a Sender Signature on your "
              "account."),
       "", Kind::permanent, Cause::config},
      {"pm_401_not_confirmed", Provider::postmark, 422,
       pm_err(401, "Sender signature not confirmed"), "", Kind::permanent, Cause::config},
      {"pm_405_not_allowed", Provider::postmark, 422, pm_err(405, "Not allowed to send"), "",
       Kind::permanent, Cause::config},
      {"pm_412_pending", Provider::postmark, 422, pm_err(412, "Account pending approval"), "",
       Kind::permanent, Cause::config},
      {"pm_413_may_not_send", Provider::postmark, 422, pm_err(413, "Account may not send"), "",
       Kind::permanent, Cause::config},
      {"pm_429", Provider::postmark, 429, pm_err(429, "Rate limit exceeded"), "", Kind::transient,
       Cause::throttled},
      {"pm_429_retry_after", Provider::postmark, 429, pm_err(429, "Rate limit exceeded"), "12",
       Kind::retry_after, Cause::throttled, "", "", 12s},
      {"pm_500", Provider::postmark, 500, pm_err(0, "Internal Server Error"), "", Kind::transient,
       Cause::provider},
      {"pm_503_empty", Provider::postmark, 503, "", "", Kind::transient, Cause::provider,
       "provider returned 503"},
      {"pm_100_maintenance", Provider::postmark, 422, pm_err(100, "Maintenance"), "",
       Kind::transient, Cause::provider},
      {"pm_413_http_too_large", Provider::postmark, 413, "", "", Kind::permanent, Cause::content,
       "provider returned 413"},
      {"pm_404", Provider::postmark, 404, "", "", Kind::permanent, Cause::config},
  };
  return all;
}

class Classify : public ::testing::TestWithParam<Case> {};

TEST_P(Classify, MatchesReferenceTable) {
  const Case& c = GetParam();
  Outcome o = classify(c);
  EXPECT_EQ(o.kind, c.kind) << o.error;
  EXPECT_EQ(o.cause, c.cause) << o.error;
  if (!c.error.empty()) {
    EXPECT_EQ(o.error, c.error);
  }
  if (c.kind == Kind::sent) {
    EXPECT_EQ(o.provider_id, c.provider_id);
    EXPECT_TRUE(o.error.empty());
  } else {
    EXPECT_FALSE(o.error.empty());
    EXPECT_LE(o.error.size(), 200u) << o.error;
    EXPECT_EQ(o.error.find('\n'), std::string::npos) << o.error;
  }
  if (c.kind == Kind::retry_after) {
    EXPECT_EQ(o.retry_after, c.retry_after);
  }
}

INSTANTIATE_TEST_SUITE_P(ProviderReplies, Classify, ::testing::ValuesIn(cases()),
                         [](const auto& info) { return std::string(info.param.name); });

TEST(Classify, TableCoversEnoughRows) {
  EXPECT_GE(cases().size(), 40u);
}

// Whatever the provider echoes, a token passed in never reaches the error text.
TEST(Classify, ErrorTextsNeverContainSecrets) {
  const std::string token = "123456:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw";
  std::string_view secrets[] = {token};
  std::vector<std::pair<Provider, std::pair<int, std::string>>> echoing = {
      {Provider::telegram, {401, tg_err(401, "Unauthorized: invalid token " + token)}},
      {Provider::telegram, {400, tg_err(400, "Bad Request: chat not found for bot" + token)}},
      {Provider::telegram, {500, tg_err(500, "Internal Server Error: " + token)}},
      {Provider::waha, {401, R"({"message":"bad key )" + token + R"(","statusCode":401})"}},
      {Provider::waha, {500, R"({"exception":{"message":")" + token + R"("}})"}},
      {Provider::waba, {401, graph_err(190, "Invalid OAuth access token - " + token)}},
      {Provider::postmark, {401, pm_err(10, "Bad token " + token + " in header")}},
  };
  // Also every table row, with the token handed in as a secret.
  for (const auto& [provider, reply] : echoing) {
    Case c{"echo", provider, reply.first, reply.second, "", Kind::sent, Cause::none};
    Outcome o = classify(c, secrets);
    EXPECT_FALSE(o.error.empty());
    EXPECT_EQ(o.error.find(token), std::string::npos) << o.error;
    EXPECT_EQ(o.error.find("AAHdqTcvCH1vGWJx"), std::string::npos) << o.error;
    EXPECT_NE(o.error.find("***"), std::string::npos) << o.error;
  }
  for (const auto& c : cases()) {
    Outcome o = classify(c, secrets);
    EXPECT_EQ(o.error.find(token), std::string::npos);
  }
}

// A long description is cut, and the cut cannot leave a token's prefix behind.
TEST(Classify, LongProviderTextsAreCut) {
  std::string long_text(400, 'a');
  auto o = classify_telegram(400, tg_err(400, "Bad Request: " + long_text), "");
  EXPECT_LT(o.error.size(), 200u);
  EXPECT_NE(o.error.find("..."), std::string::npos);
  // Multi-byte characters are not split.
  std::string accents;
  for (int i = 0; i < 120; ++i)
    accents += "\xC3\xA9";  // é
  auto o2 = classify_telegram(400, tg_err(400, "Bad Request: " + accents), "");
  auto cut = o2.error.find("...");
  ASSERT_NE(cut, std::string::npos);
  EXPECT_EQ((static_cast<unsigned char>(o2.error[cut - 1]) & 0xC0), 0x80u);
}

TEST(Classify, TelegramMigrateToChatId) {
  EXPECT_EQ(telegram_migrate_to_chat_id(tg_err(400,
                                               "Bad Request: group chat was upgraded to a "
                                               "supergroup chat",
                                               R"({"migrate_to_chat_id":-1001234567890})")),
            -1001234567890);
  EXPECT_EQ(telegram_migrate_to_chat_id(tg_err(400, "Bad Request: chat not found")), std::nullopt);
  EXPECT_EQ(telegram_migrate_to_chat_id("<html>"), std::nullopt);
}

TEST(Classify, RetryAfterHeader) {
  EXPECT_EQ(parse_retry_after("30"), 30s);
  EXPECT_EQ(parse_retry_after(" 5 "), 5s);
  EXPECT_EQ(parse_retry_after(""), std::nullopt);
  EXPECT_EQ(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), std::nullopt);
  EXPECT_EQ(parse_retry_after("-3"), std::nullopt);
}

// --- transport ---------------------------------------------------------------------------

HttpResponse failed(HttpResponse::Error e, bool written, std::string text) {
  HttpResponse r;
  r.error = e;
  r.request_written = written;
  r.error_text = std::move(text);
  return r;
}

TEST(ClassifyTransport, ConnectErrorIsTransientNetwork) {
  auto o = classify_transport(failed(HttpResponse::Error::connect, false,
                                     "connect to http://127.0.0.1:9: connection refused"));
  EXPECT_EQ(o.kind, Kind::transient);
  EXPECT_EQ(o.cause, Cause::network);
  EXPECT_FALSE(o.unknown);
  EXPECT_NE(o.error.find("connection refused"), std::string::npos);
}

TEST(ClassifyTransport, TimeoutBeforeWriteIsNotUnknown) {
  auto o = classify_transport(
      failed(HttpResponse::Error::timeout, false, "timed out connecting to https://x:443"));
  EXPECT_EQ(o.kind, Kind::transient);
  EXPECT_FALSE(o.unknown);
  EXPECT_EQ(o.error, "timed out connecting to https://x:443");
}

TEST(ClassifyTransport, TimeoutAfterWriteIsUnknown) {
  auto o = classify_transport(failed(HttpResponse::Error::timeout, true, "whatever"));
  EXPECT_EQ(o.kind, Kind::transient);
  EXPECT_TRUE(o.unknown);
  EXPECT_EQ(o.error, "timed out after request was sent (outcome unknown)");
}

TEST(ClassifyTransport, BrokenConnectionAfterWriteIsUnknown) {
  auto o = classify_transport(
      failed(HttpResponse::Error::io, true, "connection to http://h:80 lost: end of stream"));
  EXPECT_TRUE(o.unknown);
  EXPECT_EQ(o.error, "connection to http://h:80 lost: end of stream (outcome unknown)");
  auto o2 = classify_transport(failed(HttpResponse::Error::io, false, "sending failed: reset"));
  EXPECT_FALSE(o2.unknown);
}

TEST(ClassifyTransport, TooLargeAndCancelled) {
  auto o =
      classify_transport(failed(HttpResponse::Error::too_large, true, "response over 1 bytes"));
  EXPECT_EQ(o.kind, Kind::transient);
  EXPECT_TRUE(o.unknown);
  auto c = classify_transport(failed(HttpResponse::Error::cancelled, false, "cancelled"));
  EXPECT_EQ(c.kind, Kind::transient);
  EXPECT_EQ(c.error, "cancelled");
  EXPECT_FALSE(c.unknown);
}

}  // namespace
}  // namespace cascade
