// Unit tests of cascade-mock-provider's logic without sockets: rule parsing and matching,
// recipient normalization, the providers' success and error bodies, request records and
// the control API, driven through MockCore::handle with literal requests.
#include <gtest/gtest.h>
#include <simdjson.h>

#include <string>

#include "tools/mock_provider/mock_core.hpp"
#include "tools/mock_provider/options.hpp"
#include "tools/mock_provider/provider.hpp"
#include "tools/mock_provider/rules.hpp"

namespace cascade::mock {
namespace {

constexpr std::int64_t kNow = 1'700'000'000'123'456;  // unix µs

// A parsed JSON document that outlives the expression using it.
struct Json {
  explicit Json(const std::string& text) : root(parser.parse(text)) {}
  simdjson::dom::element operator[](const char* key) const { return root[key]; }
  simdjson::dom::parser parser;
  simdjson::dom::element root;
};

RuleParse parse(std::string_view json) {
  JsonScratch scratch;
  return parse_rule(json, scratch);
}

Rule rule(std::string_view json) {
  auto parsed = parse(json);
  if (!parsed.rule) ADD_FAILURE() << json << ": " << parsed.error;
  return parsed.rule.value_or(Rule{});
}

HttpRequest post(std::string_view target, std::string_view body) {
  HttpRequest r;
  r.method = "POST";
  r.target = target;
  r.content_type = "application/json";
  r.body = body;
  return r;
}

HttpRequest telegram(std::string_view body) {
  return post("/bot123:AAA/sendMessage", body);
}

HttpRequest waha(std::string_view body) {
  auto r = post("/api/sendText", body);
  r.x_api_key = "secret";
  return r;
}

HttpRequest waba(std::string_view body) {
  auto r = post("/v23.0/1055/messages", body);
  r.authorization = "Bearer EAAG";
  return r;
}

HttpRequest postmark(std::string_view body) {
  auto r = post("/email", body);
  r.postmark_token = "server-token";
  return r;
}

constexpr std::string_view kTelegramBody = R"({"chat_id":4242,"text":"code 123"})";
constexpr std::string_view kWahaBody =
    R"({"session":"default","chatId":"33612345678@c.us","text":"code 123"})";
constexpr std::string_view kWabaBody =
    R"({"messaging_product":"whatsapp","to":"+33612345678","type":"text","text":{"body":"code 123"}})";
constexpr std::string_view kPostmarkBody =
    R"({"From":"n@x.com","To":"Ana <Ana@Example.com>","Subject":"Code","TextBody":"code 123","MessageStream":"outbound"})";

ProviderRequest request_for(Provider p, std::string recipient, std::string session = "default") {
  ProviderRequest pr;
  pr.provider = p;
  pr.raw_recipient = recipient;
  pr.recipient = normalize_recipient(p, recipient);
  pr.session = std::move(session);
  return pr;
}

// ---- rule parsing --------------------------------------------------------------------

// Every documented field is read.
TEST(MockRules, ParsesEveryField) {
  auto r = rule(R"({"provider":"telegram","recipient":"42","status":503,"body":"<html>x</html>",
                   "error_code":503,"description":"down","delay_ms":300,"retry_after":2,
                   "action":"respond","times":3})");
  ASSERT_TRUE(r.provider);
  EXPECT_EQ(*r.provider, Provider::telegram);
  EXPECT_EQ(r.recipient, "42");
  EXPECT_EQ(r.status, 503);
  EXPECT_EQ(r.body.value_or(""), "<html>x</html>");
  EXPECT_EQ(r.error_code.value_or(0), 503);
  EXPECT_EQ(r.description, "down");
  EXPECT_EQ(r.delay_ms, 300);
  EXPECT_EQ(r.retry_after, 2);
  EXPECT_EQ(r.action, Action::respond);
  EXPECT_EQ(r.times.value_or(0), 3);
  EXPECT_FALSE(rule(R"({"provider":"*"})").provider);
  EXPECT_EQ(rule(R"({"provider":"waba","action":"drop_after"})").action, Action::drop_after);
  // A telegram chat id may be a number.
  EXPECT_EQ(rule(R"({"provider":"telegram","recipient":-1001234})").recipient, "-1001234");
}

// Mistakes in a rule are refused with a message, never silently ignored.
TEST(MockRules, RejectsUnknownFieldsAndBadValues) {
  for (auto bad :
       {R"({"provider":"telegram","delay":300})",      // typo of delay_ms
        R"({"provider":"sms"})", R"({"status":503})",  // provider missing
        R"({"provider":"telegram","status":"503"})", R"({"provider":"*","status":99})",
        R"({"provider":"*","status":200})",  // success status without a body
        R"({"provider":"*","action":"explode"})", R"({"provider":"*","times":0})",
        R"({"provider":"*","delay_ms":-1})",
        R"({"provider":"*","action":"drop_before","status":503})", R"([1,2])", R"(not json)"}) {
    auto parsed = parse(bad);
    EXPECT_FALSE(parsed.rule) << bad;
    EXPECT_FALSE(parsed.error.empty()) << bad;
  }
  EXPECT_NE(parse(R"({"provider":"telegram","delay":1})").error.find("delay"), std::string::npos);
}

// ---- matching ------------------------------------------------------------------------

// The first matching rule in insertion order wins; others are not consumed.
TEST(MockRules, FirstMatchInInsertionOrderWins) {
  RuleSet rules;
  int first = rules.add(rule(R"({"provider":"telegram","status":500})"));
  int second = rules.add(rule(R"({"provider":"telegram","status":503})"));
  EXPECT_LT(first, second);
  auto match = rules.match(Provider::telegram, "42");
  ASSERT_TRUE(match);
  EXPECT_EQ(match->id, first);
  EXPECT_EQ(match->status, 500);
  EXPECT_EQ(rules.rules()[1].matched, 0);
}

// A rule names one provider or "*".
TEST(MockRules, ProviderFilter) {
  RuleSet rules;
  rules.add(rule(R"({"provider":"waba","status":500})"));
  EXPECT_FALSE(rules.match(Provider::telegram, "1"));
  EXPECT_FALSE(rules.match(Provider::whatsapp, "1"));
  EXPECT_TRUE(rules.match(Provider::waba, "1"));
  rules.add(rule(R"({"provider":"*","status":503})"));
  for (auto p : kAllProviders)
    EXPECT_TRUE(rules.match(p, "1")) << provider_name(p);
}

// Recipients compare in each provider's canonical form.
TEST(MockRules, RecipientNormalization) {
  EXPECT_EQ(normalize_recipient(Provider::telegram, "-100123"), "-100123");
  EXPECT_EQ(normalize_recipient(Provider::telegram, "@channel"), "@channel");
  EXPECT_EQ(normalize_recipient(Provider::whatsapp, "33612345678@c.us"), "33612345678");
  EXPECT_EQ(normalize_recipient(Provider::whatsapp, "+33612345678"), "33612345678");
  EXPECT_EQ(normalize_recipient(Provider::waba, "+33612345678"), "33612345678");
  EXPECT_EQ(normalize_recipient(Provider::postmark, "Ana <Ana@Example.COM>"), "ana@example.com");

  RuleSet rules;
  rules.add(rule(R"({"provider":"*","recipient":"+33612345678","status":503})"));
  EXPECT_TRUE(
      rules.match(Provider::whatsapp, normalize_recipient(Provider::whatsapp, "33612345678@c.us")));
  EXPECT_TRUE(rules.match(Provider::waba, normalize_recipient(Provider::waba, "33612345678")));
  EXPECT_TRUE(rules.match(Provider::waba, normalize_recipient(Provider::waba, "+33612345678")));
  EXPECT_FALSE(rules.match(Provider::waba, normalize_recipient(Provider::waba, "+33600000000")));
  rules.clear();
  rules.add(rule(R"({"provider":"whatsapp","recipient":"33612345678@c.us","status":503})"));
  EXPECT_TRUE(rules.match(Provider::whatsapp, "33612345678"));
  rules.clear();
  rules.add(rule(R"({"provider":"telegram","recipient":4242,"status":503})"));
  EXPECT_TRUE(rules.match(Provider::telegram, "4242"));
  EXPECT_FALSE(rules.match(Provider::telegram, "42"));
  rules.clear();
  rules.add(rule(R"({"provider":"postmark","recipient":"ANA@example.com","status":503})"));
  EXPECT_TRUE(rules.match(Provider::postmark,
                          normalize_recipient(Provider::postmark, "Ana <ana@example.com>")));
  EXPECT_FALSE(rules.match(Provider::postmark, "bob@example.com"));
}

// A rule with times=N is removed after N matches.
TEST(MockRules, TimesExpire) {
  RuleSet rules;
  rules.add(rule(R"({"provider":"telegram","status":503,"times":2})"));
  EXPECT_TRUE(rules.match(Provider::telegram, "1"));
  ASSERT_EQ(rules.rules().size(), 1u);
  EXPECT_EQ(rules.rules()[0].times.value_or(-1), 1);
  EXPECT_TRUE(rules.match(Provider::telegram, "1"));
  EXPECT_TRUE(rules.rules().empty());
  EXPECT_FALSE(rules.match(Provider::telegram, "1"));
}

TEST(MockRules, RemoveAndClear) {
  RuleSet rules;
  int a = rules.add(rule(R"({"provider":"*","status":500})"));
  int b = rules.add(rule(R"({"provider":"*","status":503})"));
  EXPECT_TRUE(rules.remove(a));
  EXPECT_FALSE(rules.remove(a));
  EXPECT_EQ(rules.match(Provider::waba, "")->id, b);
  EXPECT_EQ(rules.clear(), 1u);
  EXPECT_FALSE(rules.match(Provider::waba, ""));
  EXPECT_GT(rules.add(rule(R"({"provider":"*"})")), b);  // ids are never reused
}

// ---- error bodies ----------------------------------------------------------------------

// Telegram: HTTP status == error_code, "<Prefix>: detail" descriptions, retry_after.
TEST(MockReplies, TelegramErrors) {
  Responder responder;
  auto pr = request_for(Provider::telegram, "42");
  auto r503 = responder.error(pr, Fault{503, {}, "", 0}, "", kNow);
  EXPECT_EQ(r503.status, 503);
  EXPECT_EQ(r503.body, R"({"ok":false,"error_code":503,"description":"Service Unavailable"})");
  EXPECT_EQ(r503.retry_after, 0);

  auto r429 = responder.error(pr, Fault{429, {}, "", 7}, "", kNow);
  EXPECT_EQ(r429.status, 429);
  EXPECT_EQ(r429.retry_after, 7);
  EXPECT_EQ(r429.body,
            R"({"ok":false,"error_code":429,"description":"Too Many Requests: retry after 7",)"
            R"("parameters":{"retry_after":7}})");
  // The Bot API's 429 always carries a wait.
  EXPECT_EQ(responder.error(pr, Fault{429, {}, "", 0}, "", kNow).retry_after, 1);

  auto r400 = responder.error(pr, Fault{400, {}, "chat not found", 0}, "", kNow);
  EXPECT_EQ(r400.body,
            R"({"ok":false,"error_code":400,"description":"Bad Request: chat not found"})");
  auto r403 =
      responder.error(pr, Fault{0, 403, "Forbidden: bot was blocked by the user", 0}, "", kNow);
  EXPECT_EQ(r403.status, 403);  // status from error_code
  EXPECT_EQ(Json(r403.body)["description"].get_string().value(),
            "Forbidden: bot was blocked by the user");
}

// WABA: the Graph error object, code by status or status by code.
TEST(MockReplies, WabaErrors) {
  Responder responder;
  auto pr = request_for(Provider::waba, "+33612345678");
  auto r401 = responder.error(pr, Fault{401, {}, "", 0}, "", kNow);
  EXPECT_EQ(r401.status, 401);
  Json j401(r401.body);
  EXPECT_EQ(j401["error"]["code"].get_int64().value(), 190);
  EXPECT_EQ(j401["error"]["type"].get_string().value(), "OAuthException");
  EXPECT_FALSE(j401["error"]["fbtrace_id"].get_string().value().empty());

  auto undeliverable = responder.error(pr, Fault{0, 131026, "", 0}, "", kNow);
  EXPECT_EQ(undeliverable.status, 400);
  Json ju(undeliverable.body);
  EXPECT_EQ(ju["error"]["code"].get_int64().value(), 131026);
  EXPECT_EQ(ju["error"]["message"].get_string().value(), "(#131026) Message undeliverable");
  EXPECT_EQ(ju["error"]["error_data"]["details"].get_string().value(), "Message undeliverable");

  auto throttled = responder.error(pr, Fault{429, {}, "slow down", 0}, "", kNow);
  Json jt(throttled.body);
  EXPECT_EQ(jt["error"]["code"].get_int64().value(), 130429);
  EXPECT_EQ(jt["error"]["error_subcode"].get_int64().value(), 2494055);
  EXPECT_EQ(jt["error"]["message"].get_string().value(), "(#130429) Rate limit hit");
  EXPECT_EQ(jt["error"]["error_data"]["details"].get_string().value(), "slow down");

  pr.object_id = "1055";
  auto unknown_number = responder.error(pr, Fault{404, {}, "", 0}, "", kNow);
  EXPECT_EQ(unknown_number.status, 404);
  Json jn(unknown_number.body);
  EXPECT_EQ(jn["error"]["code"].get_int64().value(), 100);
  EXPECT_NE(std::string(jn["error"]["message"].get_string().value()).find("Object with ID '1055'"),
            std::string::npos);

  auto generic = responder.error(pr, Fault{400, 100, "Invalid parameter x", 0}, "", kNow);
  EXPECT_EQ(Json(generic.body)["error"]["message"].get_string().value(),
            "(#100) Invalid parameter x");
  // Two errors get different trace ids.
  EXPECT_NE(Json(responder.error(pr, Fault{500, {}, "", 0}, "", kNow).body)["error"]["fbtrace_id"]
                .get_string()
                .value(),
            j401["error"]["fbtrace_id"].get_string().value());
}

// Postmark: {"ErrorCode","Message"}, 406 inactive recipient under HTTP 422.
TEST(MockReplies, PostmarkErrors) {
  Responder responder;
  auto pr = request_for(Provider::postmark, "ana@example.com");
  auto inactive = responder.error(pr, Fault{0, 406, "", 0}, "", kNow);
  EXPECT_EQ(inactive.status, 422);
  Json ji(inactive.body);
  EXPECT_EQ(ji["ErrorCode"].get_int64().value(), 406);
  EXPECT_NE(std::string(ji["Message"].get_string().value()).find("ana@example.com"),
            std::string::npos);
  auto token = responder.error(pr, Fault{401, {}, "", 0}, "", kNow);
  EXPECT_EQ(Json(token.body)["ErrorCode"].get_int64().value(), 10);
  auto limited = responder.error(pr, Fault{429, {}, "", 3}, "", kNow);
  EXPECT_EQ(limited.status, 429);
  EXPECT_EQ(limited.retry_after, 3);
  EXPECT_EQ(Json(limited.body)["ErrorCode"].get_int64().value(), 429);
  auto maintenance = responder.error(pr, Fault{503, {}, "", 0}, "", kNow);
  EXPECT_EQ(Json(maintenance.body)["ErrorCode"].get_int64().value(), 100);
  auto custom = responder.error(pr, Fault{422, 300, "Invalid 'To' address", 0}, "", kNow);
  EXPECT_EQ(custom.body, R"({"ErrorCode":300,"Message":"Invalid 'To' address"})");
}

// WAHA: the bodies its guards, managers and exception filter produce.
TEST(MockReplies, WhatsappErrors) {
  Responder responder;
  auto pr = request_for(Provider::whatsapp, "33612345678@c.us", "main");
  auto r422 = responder.error(pr, Fault{422, {}, "", 0}, "", kNow);
  EXPECT_EQ(r422.status, 422);
  Json j422(r422.body);
  EXPECT_EQ(j422["session"].get_string().value(), "main");
  EXPECT_EQ(j422["status"].get_string().value(), "SCAN_QR_CODE");
  EXPECT_EQ(j422["expected"].at(0).get_string().value(), "WORKING");

  auto r404 = responder.error(pr, Fault{404, {}, "", 0}, "", kNow);
  Json j404(r404.body);
  EXPECT_EQ(j404["statusCode"].get_int64().value(), 404);
  EXPECT_EQ(j404["error"].get_string().value(), "Not Found");
  EXPECT_EQ(j404["message"].get_string().value(),
            "We didn't find a session with name 'main'.\nPlease start it first by using POST "
            "/api/sessions/main/start request");

  auto r400 = responder.error(pr, Fault{400, {}, "", 0}, "", kNow);
  Json j400(r400.body);
  EXPECT_EQ(j400["error"].get_string().value(), "Bad Request");
  EXPECT_TRUE(j400["message"].is_array());

  auto r500 = responder.error(pr, Fault{500, {}, "engine crashed", 0}, kWahaBody, kNow);
  Json j500(r500.body);
  EXPECT_EQ(j500["statusCode"].get_int64().value(), 500);
  EXPECT_EQ(j500["exception"]["message"].get_string().value(), "engine crashed");
  EXPECT_EQ(j500["request"]["path"].get_string().value(), "/api/sendText");
  EXPECT_EQ(j500["request"]["body"]["chatId"].get_string().value(), "33612345678@c.us");

  EXPECT_EQ(responder.error(pr, Fault{401, {}, "", 0}, "", kNow).body,
            R"({"message":"Unauthorized","statusCode":401})");
}

// ---- MockCore: provider requests ------------------------------------------------------------

// Success bodies have each provider's shape and number messages.
TEST(MockCore, SuccessBodies) {
  MockCore core;
  auto tg = core.handle(telegram(kTelegramBody), kNow);
  EXPECT_EQ(tg.action, Action::respond);
  EXPECT_EQ(tg.reply.status, 200);
  Json jt(tg.reply.body);
  EXPECT_TRUE(jt["ok"].get_bool().value());
  EXPECT_EQ(jt["result"]["message_id"].get_int64().value(), 1);
  EXPECT_EQ(jt["result"]["chat"]["id"].get_int64().value(), 4242);
  EXPECT_EQ(jt["result"]["chat"]["type"].get_string().value(), "private");
  EXPECT_EQ(jt["result"]["date"].get_int64().value(), kNow / 1'000'000);
  EXPECT_EQ(jt["result"]["text"].get_string().value(), "code 123");
  auto tg2 = core.handle(telegram(kTelegramBody), kNow);
  EXPECT_EQ(Json(tg2.reply.body)["result"]["message_id"].get_int64().value(), 2);

  auto wa = core.handle(waha(kWahaBody), kNow);
  EXPECT_EQ(wa.reply.status, 201);
  Json jw(wa.reply.body);
  EXPECT_EQ(jw["id"].get_string().value(), "true_33612345678@c.us_1");
  EXPECT_EQ(jw["to"].get_string().value(), "33612345678@c.us");
  EXPECT_EQ(jw["body"].get_string().value(), "code 123");
  EXPECT_TRUE(jw["fromMe"].get_bool().value());

  auto wb = core.handle(waba(kWabaBody), kNow);
  EXPECT_EQ(wb.reply.status, 200);
  Json jb(wb.reply.body);
  EXPECT_EQ(jb["messaging_product"].get_string().value(), "whatsapp");
  EXPECT_EQ(jb["contacts"].at(0)["input"].get_string().value(), "+33612345678");
  EXPECT_EQ(jb["contacts"].at(0)["wa_id"].get_string().value(), "33612345678");
  EXPECT_EQ(jb["messages"].at(0)["id"].get_string().value(), "wamid.1");

  auto pm = core.handle(postmark(kPostmarkBody), kNow);
  EXPECT_EQ(pm.reply.status, 200);
  Json jp(pm.reply.body);
  EXPECT_EQ(jp["ErrorCode"].get_int64().value(), 0);
  EXPECT_EQ(jp["Message"].get_string().value(), "OK");
  EXPECT_EQ(jp["To"].get_string().value(), "Ana <Ana@Example.com>");
  EXPECT_EQ(jp["MessageID"].get_string().value().size(), 36u);
}

// Telegram's own validation errors and alternative parameter encodings.
TEST(MockCore, TelegramValidation) {
  MockCore core;
  auto expect = [&](const HttpRequest& r, int status, std::string_view description) {
    auto d = core.handle(r, kNow);
    EXPECT_EQ(d.reply.status, status) << r.target << " " << r.body;
    EXPECT_EQ(Json(d.reply.body)["description"].get_string().value(), description) << r.body;
  };
  expect(telegram(R"({"text":"x"})"), 400, "Bad Request: chat_id is empty");
  expect(telegram(R"({"chat_id":"","text":"x"})"), 400, "Bad Request: chat_id is empty");
  expect(telegram(R"({"chat_id":1,"text":""})"), 400, "Bad Request: message text is empty");
  expect(telegram(R"({"chat_id":1)"), 400, "Bad Request: can't parse JSON object");
  std::string long_text = R"({"chat_id":1,"text":")";
  long_text.append(4097, 'a').append("\"}");
  expect(telegram(long_text), 400, "Bad Request: message is too long");
  expect(post("/bot123:AAA/getMe", ""), 404, "Not Found: method not found");
  expect(post("/bot/sendMessage", kTelegramBody), 401, "Unauthorized: invalid token specified");
  expect(post("/nobot", kTelegramBody), 404, "Not Found");

  HttpRequest query;
  query.method = "GET";
  query.target = "/bot1:A/SENDMESSAGE?chat_id=%40chan&text=hello+world";
  auto d = core.handle(query, kNow);
  EXPECT_EQ(d.reply.status, 200);
  Json j(d.reply.body);
  EXPECT_EQ(j["result"]["text"].get_string().value(), "hello world");
  EXPECT_EQ(j["result"]["chat"]["type"].get_string().value(), "channel");
  auto form = post("/bot1:A/sendMessage", "chat_id=-100777&text=hi");
  form.content_type = "application/x-www-form-urlencoded";
  EXPECT_EQ(Json(core.handle(form, kNow).reply.body)["result"]["chat"]["type"].get_string().value(),
            "supergroup");
}

// Missing credentials get each provider's 401; malformed bodies their validation errors.
TEST(MockCore, CredentialsAndValidation) {
  MockCore core;
  auto no_key = post("/api/sendText", kWahaBody);
  EXPECT_EQ(core.handle(no_key, kNow).reply.body, R"({"message":"Unauthorized","statusCode":401})");
  auto no_bearer = post("/v23.0/1055/messages", kWabaBody);
  auto d = core.handle(no_bearer, kNow);
  EXPECT_EQ(d.reply.status, 401);
  EXPECT_EQ(Json(d.reply.body)["error"]["code"].get_int64().value(), 190);
  auto no_token = post("/email", kPostmarkBody);
  d = core.handle(no_token, kNow);
  EXPECT_EQ(d.reply.status, 401);
  EXPECT_EQ(Json(d.reply.body)["ErrorCode"].get_int64().value(), 10);

  d = core.handle(waha(R"({"session":"default","text":"x"})"), kNow);
  EXPECT_EQ(d.reply.status, 400);
  EXPECT_EQ(Json(d.reply.body)["message"].at(0).get_string().value(), "chatId must be a string");
  d = core.handle(waba(R"({"to":"+33612345678","type":"text","text":{"body":"x"}})"), kNow);
  EXPECT_EQ(d.reply.status, 400);
  EXPECT_EQ(Json(d.reply.body)["error"]["code"].get_int64().value(), 100);
  d = core.handle(waba(R"({"messaging_product":"whatsapp","to":"+1","type":"text"})"), kNow);
  EXPECT_EQ(Json(d.reply.body)["error"]["code"].get_int64().value(), 131008);
  d = core.handle(postmark(R"({"From":"a@b.c","To":"c@d.e"})"), kNow);
  EXPECT_EQ(d.reply.status, 422);
  EXPECT_EQ(Json(d.reply.body)["ErrorCode"].get_int64().value(), 300);
  d = core.handle(postmark("{nope"), kNow);
  EXPECT_EQ(Json(d.reply.body)["ErrorCode"].get_int64().value(), 402);
  // Unknown paths are not provider requests and are not recorded.
  d = core.handle(post("/v1/unknown", "{}"), kNow);
  EXPECT_EQ(d.reply.status, 404);
  EXPECT_EQ(d.record, 0u);
}

// A provider request is recorded at once and completed by finished().
TEST(MockCore, RecordsRequests) {
  MockCore core;
  auto d = core.handle(postmark(kPostmarkBody), kNow);
  ASSERT_NE(d.record, 0u);
  auto* r = core.recorder().find(d.record);
  ASSERT_NE(r, nullptr);
  EXPECT_EQ(r->provider, Provider::postmark);
  EXPECT_EQ(r->path, "/email");
  EXPECT_EQ(r->token, "server-token");
  EXPECT_EQ(r->recipient, "ana@example.com");
  EXPECT_EQ(r->text, "code 123");
  EXPECT_EQ(r->subject, "Code");
  EXPECT_EQ(r->body, kPostmarkBody);
  EXPECT_EQ(r->received_us, kNow);
  EXPECT_EQ(r->status, 0);
  core.finished(d.record, 200, kNow + 50);
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->responded_us, kNow + 50);

  auto t = core.handle(telegram(kTelegramBody), kNow);
  EXPECT_EQ(core.recorder().find(t.record)->token, "123:AAA");
  EXPECT_EQ(core.recorder().find(t.record)->recipient, "4242");
  auto w = core.handle(waha(kWahaBody), kNow);
  EXPECT_EQ(core.recorder().find(w.record)->token, "secret");
  EXPECT_EQ(core.recorder().find(w.record)->recipient, "33612345678");
  auto b = core.handle(waba(kWabaBody), kNow);
  EXPECT_EQ(core.recorder().find(b.record)->token, "EAAG");
  EXPECT_EQ(core.recorder().find(b.record)->recipient, "33612345678");
}

// Rules turn into decisions: raw bodies, built errors, delays, drops.
TEST(MockCore, RulesDecide) {
  MockCore core;
  JsonScratch scratch;
  auto add = [&](std::string_view json) { core.rules().add(*parse_rule(json, scratch).rule); };

  add(R"({"provider":"telegram","recipient":"1","status":502,"body":"<html>502 Bad Gateway</html>"})");
  auto d = core.handle(telegram(R"({"chat_id":1,"text":"x"})"), kNow);
  EXPECT_EQ(d.reply.status, 502);
  EXPECT_EQ(d.reply.body, "<html>502 Bad Gateway</html>");
  EXPECT_EQ(d.reply.content_type, "text/html");

  add(R"({"provider":"telegram","recipient":"2","delay_ms":300})");
  d = core.handle(telegram(R"({"chat_id":2,"text":"x"})"), kNow);
  EXPECT_EQ(d.delay, std::chrono::milliseconds(300));
  EXPECT_EQ(d.reply.status, 200);  // delay only: the normal answer, later
  EXPECT_TRUE(Json(d.reply.body)["ok"].get_bool().value());

  add(R"({"provider":"telegram","recipient":"3","action":"drop_before","delay_ms":5})");
  d = core.handle(telegram(R"({"chat_id":3,"text":"x"})"), kNow);
  EXPECT_EQ(d.action, Action::drop_before);
  EXPECT_EQ(d.delay, std::chrono::milliseconds(5));
  core.finished(d.record, 0, 0);
  EXPECT_EQ(core.recorder().find(d.record)->action, Action::drop_before);
  EXPECT_EQ(core.recorder().find(d.record)->responded_us, 0);

  // drop_after processed the message: the next message id skips one.
  add(R"({"provider":"telegram","recipient":"4","action":"drop_after","times":1})");
  EXPECT_EQ(core.handle(telegram(R"({"chat_id":4,"text":"x"})"), kNow).action, Action::drop_after);
  d = core.handle(telegram(R"({"chat_id":4,"text":"x"})"), kNow);
  EXPECT_EQ(d.action, Action::respond);
  EXPECT_EQ(Json(d.reply.body)["result"]["message_id"].get_int64().value(), 3);

  add(R"({"provider":"waba","error_code":131026})");
  d = core.handle(waba(kWabaBody), kNow);
  EXPECT_EQ(d.reply.status, 400);
  EXPECT_EQ(Json(d.reply.body)["error"]["code"].get_int64().value(), 131026);

  add(R"({"provider":"whatsapp","status":422,"retry_after":4})");
  d = core.handle(waha(kWahaBody), kNow);
  EXPECT_EQ(d.reply.status, 422);
  EXPECT_EQ(d.reply.retry_after, 4);
  EXPECT_EQ(Json(d.reply.body)["expected"].at(0).get_string().value(), "WORKING");
}

// ---- MockCore: control API ------------------------------------------------------------------

HttpRequest control(std::string_view method, std::string_view target, std::string_view body = {}) {
  HttpRequest r;
  r.method = method;
  r.target = target;
  r.body = body;
  return r;
}

TEST(MockCore, ControlApi) {
  MockCore core;
  EXPECT_EQ(core.handle(control("GET", "/__mock/health"), kNow).reply.body, R"({"ok":true})");
  auto added =
      core.handle(control("POST", "/__mock/rules", R"({"provider":"waba","status":503})"), kNow);
  EXPECT_EQ(added.reply.status, 200);
  EXPECT_EQ(added.reply.body, R"({"id":1})");
  EXPECT_EQ(added.record, 0u);
  auto refused = core.handle(control("POST", "/__mock/rules", R"({"provider":"fax"})"), kNow);
  EXPECT_EQ(refused.reply.status, 400);
  EXPECT_NE(refused.reply.body.find("fax"), std::string::npos);
  auto listed = core.handle(control("GET", "/__mock/rules"), kNow);
  EXPECT_EQ(Json(listed.reply.body).root.at(0)["status"].get_int64().value(), 503);

  core.handle(telegram(kTelegramBody), kNow);
  core.handle(waba(kWabaBody), kNow);
  auto all = core.handle(control("GET", "/__mock/requests"), kNow);
  EXPECT_EQ(Json(all.reply.body).root.get_array().size(), 2u);
  auto only = core.handle(control("GET", "/__mock/requests?provider=waba"), kNow);
  Json jo(only.reply.body);
  ASSERT_EQ(jo.root.get_array().size(), 1u);
  EXPECT_EQ(jo.root.at(0)["provider"].get_string().value(), "waba");
  EXPECT_EQ(jo.root.at(0)["status"].get_int64().value(), 0);  // never finished
  EXPECT_EQ(core.handle(control("GET", "/__mock/requests?provider=fax"), kNow).reply.status, 400);

  EXPECT_EQ(core.handle(control("DELETE", "/__mock/rules/1"), kNow).reply.status, 200);
  EXPECT_EQ(core.handle(control("DELETE", "/__mock/rules/1"), kNow).reply.status, 404);
  EXPECT_EQ(core.handle(control("DELETE", "/__mock/requests"), kNow).reply.status, 200);
  EXPECT_EQ(core.handle(control("GET", "/__mock/requests"), kNow).reply.body, "[]");
  Json stats(core.handle(control("GET", "/__mock/stats"), kNow).reply.body);
  EXPECT_EQ(stats["requests"].get_int64().value(), 2);  // counters survive the clear
  EXPECT_EQ(stats["by_provider"]["telegram"].get_int64().value(), 1);
  EXPECT_EQ(stats["by_provider"]["waba"].get_int64().value(), 1);
  EXPECT_EQ(stats["recorded"].get_int64().value(), 0);
  EXPECT_EQ(core.handle(control("PUT", "/__mock/stats"), kNow).reply.status, 405);
  EXPECT_EQ(core.handle(control("GET", "/__mock/nothing"), kNow).reply.status, 404);
}

// The record keeps the newest N; counters count all.
TEST(MockCore, RecordLimit) {
  MockCore core(2);
  std::uint64_t last = 0;
  for (int i = 0; i < 5; ++i)
    last = core.handle(telegram(kTelegramBody), kNow + i).record;
  EXPECT_EQ(core.recorder().size(), 2u);
  EXPECT_EQ(core.recorder().total(), 5u);
  EXPECT_EQ(core.recorder().find(last - 2), nullptr);
  ASSERT_NE(core.recorder().find(last), nullptr);
  EXPECT_EQ(core.recorder().find(last)->received_us, kNow + 4);
  MockCore none(0);
  auto d = none.handle(telegram(kTelegramBody), kNow);
  none.finished(d.record, 200, kNow);  // harmless without a record
  EXPECT_EQ(none.recorder().size(), 0u);
  EXPECT_EQ(none.recorder().total(), 1u);
}

TEST(MockCore, SniffContentType) {
  EXPECT_EQ(sniff_content_type(R"({"a":1})"), "application/json");
  EXPECT_EQ(sniff_content_type(" [1]"), "application/json");
  EXPECT_EQ(sniff_content_type("<html>502 Bad Gateway</html>"), "text/html");
  EXPECT_EQ(sniff_content_type(""), "text/plain");
}

// ---- command line ------------------------------------------------------------------------

TEST(MockOptions, ListenMustBeLoopback) {
  auto ok = parse_options({"--listen", "127.0.0.1:8089", "--record-limit", "10"});
  ASSERT_TRUE(ok.options) << ok.error;
  EXPECT_EQ(ok.options->host, "127.0.0.1");
  EXPECT_EQ(ok.options->port, 8089);
  EXPECT_EQ(ok.options->record_limit, 10u);
  EXPECT_TRUE(parse_options({"--listen=[::1]:0"}).options);
  EXPECT_EQ(parse_options({"--listen", "localhost:0"}).options->host, "127.0.0.1");
  auto defaults = parse_options({});
  EXPECT_EQ(defaults.options->port, 0);
  EXPECT_EQ(defaults.options->record_limit, 1'000'000u);
  for (auto bad :
       {"0.0.0.0:80", "10.1.2.3:80", "[::]:80", "example.com:80", "127.0.0.1", "127.0.0.1:70000"}) {
    auto parsed = parse_options({"--listen", bad});
    EXPECT_FALSE(parsed.options) << bad;
    EXPECT_FALSE(parsed.error.empty());
  }
  EXPECT_NE(parse_options({"--listen", "0.0.0.0:80"}).error.find("loopback"), std::string::npos);
  EXPECT_FALSE(parse_options({"--record-limit", "-1"}).options);
  EXPECT_FALSE(parse_options({"--bogus"}).options);
  EXPECT_TRUE(parse_options({"--help"}).options->help);
  EXPECT_FALSE(defaults.options->exit_with_parent);
  EXPECT_TRUE(parse_options({"--exit-with-parent"}).options->exit_with_parent);
  EXPECT_EQ(format_address("::1", 80), "[::1]:80");
  EXPECT_EQ(format_address("127.0.0.1", 80), "127.0.0.1:80");
}

TEST(MockOptions, TlsAndControlListener) {
  auto defaults = parse_options({});
  EXPECT_TRUE(defaults.options->tls_cert.empty());
  EXPECT_FALSE(defaults.options->control_host);
  auto tls =
      parse_options({"--tls-cert", "c.pem", "--tls-key=k.pem", "--control-listen", "localhost:0"});
  ASSERT_TRUE(tls.options) << tls.error;
  EXPECT_EQ(tls.options->tls_cert, "c.pem");
  EXPECT_EQ(tls.options->tls_key, "k.pem");
  EXPECT_EQ(tls.options->control_host, "127.0.0.1");
  EXPECT_EQ(tls.options->control_port, 0);
  EXPECT_EQ(parse_options({"--control-listen", "[::1]:9001"}).options->control_port, 9001);
  // Both TLS files or neither; the control listener is loopback-only like --listen.
  EXPECT_NE(parse_options({"--tls-cert", "c.pem"}).error.find("together"), std::string::npos);
  EXPECT_FALSE(parse_options({"--tls-key", "k.pem"}).options);
  EXPECT_FALSE(parse_options({"--tls-cert"}).options);
  auto open = parse_options({"--control-listen", "0.0.0.0:9001"});
  EXPECT_FALSE(open.options);
  EXPECT_NE(open.error.find("--control-listen"), std::string::npos) << open.error;
  EXPECT_NE(open.error.find("loopback"), std::string::npos) << open.error;
  auto help = usage();
  for (auto flag : {"--tls-cert FILE", "--tls-key FILE", "--control-listen HOST:PORT", "(https)"})
    EXPECT_NE(help.find(flag), std::string::npos) << flag;
}

}  // namespace
}  // namespace cascade::mock
