// Integration tests of cascade-mock-provider: the real binary on a loopback port, driven
// through the MockProvider fixture and raw HTTP connections. Ordering is asserted from the
// mock's own records (received_us / responded_us), never from sleeps.
#include <gtest/gtest.h>
#include <signal.h>
#include <simdjson.h>

#include <algorithm>
#include <chrono>
#include <string>

#include "support/mock_provider.hpp"

namespace {

using cascade::test::Headers;
using cascade::test::HttpConnection;
using cascade::test::MockRequest;
using cascade::test::Process;
using cascade::test::tool_path;
using Mock = cascade::test::MockProvider;

struct Json {
  explicit Json(const std::string& text) : root(parser.parse(text)) {}
  simdjson::dom::element operator[](const char* key) const { return root[key]; }
  simdjson::dom::parser parser;
  simdjson::dom::element root;
};

constexpr std::string_view kTelegramPath = "/bot123456:ABC-def/sendMessage";
const Headers kWahaKey{{"X-Api-Key", "waha-key"}};
const Headers kWabaAuth{{"Authorization", "Bearer EAAGtoken"}};
const Headers kPostmarkToken{{"X-Postmark-Server-Token", "pm-token"}};

std::string telegram_body(std::string_view chat_id, std::string_view text = "code 123") {
  std::string body = R"({"chat_id":)";
  body.append(chat_id).append(R"(,"text":")").append(text).append("\"}");
  return body;
}

// Every process output line until EOF (for --help).
std::string all_output(Process& process) {
  std::string out;
  while (auto line = process.read_line(std::chrono::seconds(10)))
    out += *line + "\n";
  return out;
}

// ---- success on each provider ----------------------------------------------------------

// A Telegram sendMessage gets the Bot API's success body and is recorded with its token.
TEST(MockProvider, TelegramSuccessIsRecorded) {
  Mock mock;
  auto response = mock.http("POST", kTelegramPath, telegram_body("777"));
  ASSERT_EQ(response.status, 200) << response.body;
  EXPECT_EQ(response.header("Content-Type").value_or(""), "application/json");
  Json body(response.body);
  EXPECT_TRUE(body["ok"].get_bool().value());
  EXPECT_EQ(body["result"]["message_id"].get_int64().value(), 1);
  EXPECT_EQ(body["result"]["chat"]["id"].get_int64().value(), 777);
  EXPECT_EQ(body["result"]["chat"]["type"].get_string().value(), "private");
  EXPECT_EQ(body["result"]["text"].get_string().value(), "code 123");
  EXPECT_GT(body["result"]["date"].get_int64().value(), 1'600'000'000);
  auto second = mock.http("POST", kTelegramPath, telegram_body("\"777\""));
  EXPECT_EQ(Json(second.body)["result"]["message_id"].get_int64().value(), 2);

  auto records = mock.request_list();
  ASSERT_EQ(records.size(), 2u);
  const MockRequest& r = records[0];
  EXPECT_EQ(r.seq + 1, records[1].seq);
  EXPECT_EQ(r.provider, "telegram");
  EXPECT_EQ(r.path, kTelegramPath);
  EXPECT_EQ(r.token, "123456:ABC-def");
  EXPECT_EQ(r.recipient, "777");
  EXPECT_EQ(records[1].recipient, "777");  // number or string: same recipient
  EXPECT_EQ(r.text, "code 123");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.action, "respond");
  EXPECT_EQ(r.body, telegram_body("777"));
  EXPECT_GT(r.received_us, 0);
  EXPECT_GE(r.responded_us, r.received_us);
}

// WAHA answers 201 with a WAMessage-like body.
TEST(MockProvider, WhatsappSuccessIsRecorded) {
  Mock mock;
  auto response =
      mock.http("POST", "/api/sendText",
                R"({"session":"default","chatId":"33612345678@c.us","text":"hello"})", kWahaKey);
  ASSERT_EQ(response.status, 201) << response.body;
  Json body(response.body);
  EXPECT_EQ(body["id"].get_string().value(), "true_33612345678@c.us_1");
  EXPECT_EQ(body["to"].get_string().value(), "33612345678@c.us");
  EXPECT_EQ(body["body"].get_string().value(), "hello");
  EXPECT_TRUE(body["fromMe"].get_bool().value());
  EXPECT_GT(body["timestamp"].get_int64().value(), 1'600'000'000);
  auto records = mock.request_list("whatsapp");
  ASSERT_EQ(records.size(), 1u);
  EXPECT_EQ(records[0].token, "waha-key");
  EXPECT_EQ(records[0].recipient, "33612345678");
  EXPECT_EQ(records[0].text, "hello");
  EXPECT_EQ(records[0].status, 201);
}

// The Cloud API answers contacts + messages[].id.
TEST(MockProvider, WabaSuccessIsRecorded) {
  Mock mock;
  auto response = mock.http(
      "POST", "/v23.0/106540352242922/messages",
      R"({"messaging_product":"whatsapp","to":"+16505551234","type":"text","text":{"body":"hi"}})",
      kWabaAuth);
  ASSERT_EQ(response.status, 200) << response.body;
  Json body(response.body);
  EXPECT_EQ(body["messaging_product"].get_string().value(), "whatsapp");
  EXPECT_EQ(body["contacts"].at(0)["input"].get_string().value(), "+16505551234");
  EXPECT_EQ(body["contacts"].at(0)["wa_id"].get_string().value(), "16505551234");
  auto id = std::string(body["messages"].at(0)["id"].get_string().value());
  EXPECT_EQ(id.rfind("wamid.", 0), 0u) << id;
  auto records = mock.request_list("waba");
  ASSERT_EQ(records.size(), 1u);
  EXPECT_EQ(records[0].token, "EAAGtoken");
  EXPECT_EQ(records[0].recipient, "16505551234");
  EXPECT_EQ(records[0].text, "hi");
  EXPECT_EQ(records[0].path, "/v23.0/106540352242922/messages");
}

// Postmark answers ErrorCode 0 with a MessageID.
TEST(MockProvider, PostmarkSuccessIsRecorded) {
  Mock mock;
  auto response = mock.http(
      "POST", "/email",
      R"({"From":"n@x.com","To":"ana@example.com","Subject":"Your code","TextBody":"123","HtmlBody":"<b>123</b>","MessageStream":"outbound"})",
      kPostmarkToken);
  ASSERT_EQ(response.status, 200) << response.body;
  Json body(response.body);
  EXPECT_EQ(body["ErrorCode"].get_int64().value(), 0);
  EXPECT_EQ(body["Message"].get_string().value(), "OK");
  EXPECT_EQ(body["To"].get_string().value(), "ana@example.com");
  EXPECT_EQ(body["MessageID"].get_string().value().size(), 36u);
  EXPECT_FALSE(body["SubmittedAt"].get_string().value().empty());
  auto records = mock.request_list("postmark");
  ASSERT_EQ(records.size(), 1u);
  EXPECT_EQ(records[0].token, "pm-token");
  EXPECT_EQ(records[0].recipient, "ana@example.com");
  EXPECT_EQ(records[0].subject, "Your code");
  EXPECT_EQ(records[0].text, "123");
}

// Missing credentials get each provider's 401; unknown paths a 404.
TEST(MockProvider, MissingCredentialsAndUnknownPaths) {
  Mock mock;
  auto waha = mock.http("POST", "/api/sendText", R"({"chatId":"1@c.us","text":"x"})");
  EXPECT_EQ(waha.status, 401);
  EXPECT_EQ(waha.body, R"({"message":"Unauthorized","statusCode":401})");
  auto waba = mock.http("POST", "/v23.0/1/messages", R"({"messaging_product":"whatsapp"})");
  EXPECT_EQ(waba.status, 401);
  EXPECT_EQ(Json(waba.body)["error"]["code"].get_int64().value(), 190);
  auto pm = mock.http("POST", "/email", R"({"To":"a@b.c"})");
  EXPECT_EQ(pm.status, 401);
  EXPECT_EQ(Json(pm.body)["ErrorCode"].get_int64().value(), 10);
  auto tg = mock.http("POST", kTelegramPath, R"({"text":"x"})");
  EXPECT_EQ(tg.status, 400);
  EXPECT_EQ(Json(tg.body)["description"].get_string().value(), "Bad Request: chat_id is empty");
  auto unknown = mock.http("POST", "/v2/sms", "{}");
  EXPECT_EQ(unknown.status, 404);
  EXPECT_EQ(Json(unknown.body)["description"].get_string().value(), "Not Found");
  EXPECT_EQ(mock.request_list().size(), 4u);  // the unknown path is not a provider request
  EXPECT_EQ(mock.http("GET", "/__mock/health").body, R"({"ok":true})");
}

// ---- rules ------------------------------------------------------------------------------

// A rule with status and a non-JSON body answers exactly that, as text/html.
TEST(MockProvider, RuleWithStatusAndRawBody) {
  Mock mock;
  mock.add_rule(R"({"provider":"telegram","status":502,"body":"<html>502 Bad Gateway</html>"})");
  auto response = mock.http("POST", kTelegramPath, telegram_body("1"));
  EXPECT_EQ(response.status, 502);
  EXPECT_EQ(response.body, "<html>502 Bad Gateway</html>");
  EXPECT_EQ(response.header("Content-Type").value_or(""), "text/html");
  EXPECT_EQ(mock.request_list()[0].status, 502);
}

// Without a body the provider's own error body is built.
TEST(MockProvider, RuleBuildsProviderErrorBodies) {
  Mock mock;
  mock.add_rule(R"({"provider":"telegram","status":503})");
  mock.add_rule(R"({"provider":"waba","error_code":131026})");
  mock.add_rule(R"({"provider":"postmark","error_code":406})");
  mock.add_rule(R"({"provider":"whatsapp","status":422})");
  auto tg = mock.http("POST", kTelegramPath, telegram_body("1"));
  EXPECT_EQ(tg.status, 503);
  EXPECT_EQ(tg.body, R"({"ok":false,"error_code":503,"description":"Service Unavailable"})");
  auto waba = mock.http(
      "POST", "/v23.0/1/messages",
      R"({"messaging_product":"whatsapp","to":"+1555","type":"text","text":{"body":"x"}})",
      kWabaAuth);
  EXPECT_EQ(waba.status, 400);
  EXPECT_EQ(Json(waba.body)["error"]["code"].get_int64().value(), 131026);
  auto pm = mock.http("POST", "/email", R"({"From":"a@b.c","To":"x@y.z","TextBody":"t"})",
                      kPostmarkToken);
  EXPECT_EQ(pm.status, 422);
  EXPECT_EQ(Json(pm.body)["ErrorCode"].get_int64().value(), 406);
  auto wa = mock.http("POST", "/api/sendText", R"({"session":"s1","chatId":"1@c.us","text":"x"})",
                      kWahaKey);
  EXPECT_EQ(wa.status, 422);
  EXPECT_EQ(Json(wa.body)["session"].get_string().value(), "s1");
}

// Telegram 429: Retry-After header, description and parameters.retry_after agree.
TEST(MockProvider, TooManyRequestsCarriesRetryAfter) {
  Mock mock;
  mock.add_rule(R"({"provider":"telegram","status":429,"retry_after":2})");
  auto response = mock.http("POST", kTelegramPath, telegram_body("1"));
  EXPECT_EQ(response.status, 429);
  EXPECT_EQ(response.header("Retry-After").value_or(""), "2");
  Json body(response.body);
  EXPECT_FALSE(body["ok"].get_bool().value());
  EXPECT_EQ(body["error_code"].get_int64().value(), 429);
  EXPECT_EQ(body["description"].get_string().value(), "Too Many Requests: retry after 2");
  EXPECT_EQ(body["parameters"]["retry_after"].get_int64().value(), 2);
}

// Only the named recipient is hit; the others get the normal answer.
TEST(MockProvider, RecipientRuleOnlyHitsThatRecipient) {
  Mock mock;
  mock.add_rule(R"({"provider":"*","recipient":"+33612345678","status":500})");
  auto hit = mock.http("POST", "/api/sendText",
                       R"({"session":"default","chatId":"33612345678@c.us","text":"x"})", kWahaKey);
  EXPECT_EQ(hit.status, 500);
  EXPECT_EQ(Json(hit.body)["statusCode"].get_int64().value(), 500);
  auto miss =
      mock.http("POST", "/api/sendText",
                R"({"session":"default","chatId":"33600000000@c.us","text":"x"})", kWahaKey);
  EXPECT_EQ(miss.status, 201);
  auto waba = mock.http(
      "POST", "/v23.0/1/messages",
      R"({"messaging_product":"whatsapp","to":"33612345678","type":"text","text":{"body":"x"}})",
      kWabaAuth);
  EXPECT_EQ(waba.status, 500);
}

// A delayed answer: the record shows at least the delay between reading and answering.
TEST(MockProvider, DelayIsObserved) {
  Mock mock;
  mock.add_rule(R"({"provider":"telegram","delay_ms":300})");
  auto start = std::chrono::steady_clock::now();
  auto response = mock.http("POST", kTelegramPath, telegram_body("1"));
  auto elapsed = std::chrono::steady_clock::now() - start;
  EXPECT_EQ(response.status, 200);  // delay only: the normal answer
  EXPECT_GE(elapsed, std::chrono::milliseconds(300));
  auto records = mock.request_list();
  ASSERT_EQ(records.size(), 1u);
  EXPECT_GE(records[0].responded_us - records[0].received_us, 300'000);
}

// drop_before: the connection is closed without an answer; the record says so.
TEST(MockProvider, DropBeforeClosesConnection) {
  Mock mock;
  mock.add_rule(R"({"provider":"telegram","action":"drop_before","delay_ms":50})");
  HttpConnection connection(mock.port());
  connection.send("POST", kTelegramPath, telegram_body("1"));
  EXPECT_FALSE(connection.receive().has_value());
  auto records = mock.request_list();
  ASSERT_EQ(records.size(), 1u);
  EXPECT_EQ(records[0].action, "drop_before");
  EXPECT_EQ(records[0].status, 0);
  EXPECT_EQ(records[0].responded_us, 0);
}

// drop_after: same on the wire, but the message was processed (the next id skips one).
TEST(MockProvider, DropAfterClosesConnection) {
  Mock mock;
  mock.add_rule(R"({"provider":"telegram","action":"drop_after","times":1})");
  HttpConnection connection(mock.port());
  connection.send("POST", kTelegramPath, telegram_body("1"));
  EXPECT_FALSE(connection.receive().has_value());
  auto next = mock.http("POST", kTelegramPath, telegram_body("1"));
  EXPECT_EQ(Json(next.body)["result"]["message_id"].get_int64().value(), 2);
  auto records = mock.request_list();
  ASSERT_EQ(records.size(), 2u);
  EXPECT_EQ(records[0].action, "drop_after");
  EXPECT_EQ(records[0].status, 0);
  EXPECT_EQ(records[1].status, 200);
}

// A rule with times=2 answers twice, then the provider is healthy again.
TEST(MockProvider, TimesExpire) {
  Mock mock;
  mock.add_rule(R"({"provider":"telegram","status":503,"times":2})");
  EXPECT_EQ(mock.http("POST", kTelegramPath, telegram_body("1")).status, 503);
  EXPECT_EQ(mock.http("POST", kTelegramPath, telegram_body("1")).status, 503);
  EXPECT_EQ(mock.http("POST", kTelegramPath, telegram_body("1")).status, 200);
  EXPECT_EQ(mock.http("GET", "/__mock/rules").body, "[]");
}

// Clearing rules restores normal answers; a refused rule says why.
TEST(MockProvider, ClearRulesAndInvalidRules) {
  Mock mock;
  int id = mock.add_rule(R"({"provider":"*","status":500})");
  EXPECT_GT(id, 0);
  EXPECT_EQ(mock.http("POST", kTelegramPath, telegram_body("1")).status, 500);
  mock.clear_rules();
  EXPECT_EQ(mock.http("POST", kTelegramPath, telegram_body("1")).status, 200);
  auto refused = mock.http("POST", "/__mock/rules", R"({"provider":"telegram","delay":5})");
  EXPECT_EQ(refused.status, 400);
  EXPECT_NE(refused.body.find("delay"), std::string::npos);
  EXPECT_THROW(mock.add_rule(R"({"provider":"sms"})"), std::runtime_error);
}

// ---- connections ------------------------------------------------------------------------

// Two requests on one connection: HTTP/1.1 keep-alive.
TEST(MockProvider, KeepAliveServesTwoRequestsOnOneConnection) {
  Mock mock;
  HttpConnection connection(mock.port());
  auto first = connection.request("POST", kTelegramPath, telegram_body("1"));
  EXPECT_EQ(first.status, 200);
  EXPECT_NE(first.header("Connection").value_or(""), "close");
  auto second = connection.request("POST", kTelegramPath, telegram_body("2"));
  EXPECT_EQ(second.status, 200);
  EXPECT_EQ(Json(second.body)["result"]["chat"]["id"].get_int64().value(), 2);
  // A client asking to close gets its answer, then the close.
  connection.send("POST", kTelegramPath, telegram_body("3"), {{"Connection", "close"}});
  auto third = connection.receive();
  ASSERT_TRUE(third);
  EXPECT_EQ(third->header("Connection").value_or(""), "close");
  EXPECT_FALSE(connection.receive().has_value());
}

// Delays are timers: two delayed requests on two connections are both read before either
// is answered.
TEST(MockProvider, ConcurrentDelayedRequestsOverlap) {
  Mock mock;
  mock.add_rule(R"({"provider":"telegram","delay_ms":300})");
  HttpConnection a(mock.port()), b(mock.port());
  a.send("POST", kTelegramPath, telegram_body("1"));
  b.send("POST", kTelegramPath, telegram_body("2"));
  auto ra = a.receive();
  auto rb = b.receive();
  ASSERT_TRUE(ra && rb);
  EXPECT_EQ(ra->status, 200);
  EXPECT_EQ(rb->status, 200);
  auto records = mock.request_list();
  ASSERT_EQ(records.size(), 2u);
  auto last_received = std::max(records[0].received_us, records[1].received_us);
  auto first_responded = std::min(records[0].responded_us, records[1].responded_us);
  EXPECT_LT(last_received, first_responded);
  for (const auto& r : records)
    EXPECT_GE(r.responded_us - r.received_us, 300'000);
}

// ---- records ----------------------------------------------------------------------------

// Records filter by provider, clear, and the stats count every request.
TEST(MockProvider, RequestsFilterClearAndStats) {
  Mock mock;
  mock.http("POST", kTelegramPath, telegram_body("1"));
  mock.http("POST", "/email", R"({"From":"a@b.c","To":"x@y.z","TextBody":"t"})", kPostmarkToken);
  mock.http("POST", kTelegramPath, telegram_body("2"));
  EXPECT_EQ(mock.request_list().size(), 3u);
  auto telegram = mock.request_list("telegram");
  ASSERT_EQ(telegram.size(), 2u);
  EXPECT_EQ(telegram[0].recipient, "1");
  EXPECT_EQ(telegram[1].recipient, "2");
  EXPECT_EQ(mock.request_list("postmark").size(), 1u);
  EXPECT_EQ(mock.requests("waba"), "[]");
  mock.clear_requests();
  EXPECT_EQ(mock.requests(), "[]");
  Json stats(mock.stats());
  EXPECT_EQ(stats["requests"].get_int64().value(), 3);
  EXPECT_EQ(stats["by_provider"]["telegram"].get_int64().value(), 2);
  EXPECT_EQ(stats["by_provider"]["postmark"].get_int64().value(), 1);
  EXPECT_EQ(stats["by_provider"]["whatsapp"].get_int64().value(), 0);
}

// --record-limit keeps the newest records; the count still covers all.
TEST(MockProvider, RecordLimitKeepsNewest) {
  Mock mock({"--record-limit", "2"});
  for (int i = 1; i <= 4; ++i)
    mock.http("POST", kTelegramPath, telegram_body(std::to_string(i)));
  auto records = mock.request_list();
  ASSERT_EQ(records.size(), 2u);
  EXPECT_EQ(records[0].recipient, "3");
  EXPECT_EQ(records[1].recipient, "4");
  EXPECT_EQ(Json(mock.stats())["requests"].get_int64().value(), 4);
}

// ---- process ----------------------------------------------------------------------------

// SIGTERM stops the mock with exit status 0.
TEST(MockProvider, SigtermExitsZero) {
  Mock mock;
  EXPECT_EQ(mock.http("GET", "/__mock/health").status, 200);
  EXPECT_EQ(mock.stop(), 0);
}

TEST(MockProvider, SigintExitsZero) {
  Mock mock;
  mock.process().signal(SIGINT);
  EXPECT_EQ(mock.process().wait(std::chrono::seconds(10)), 0);
}

// Only loopback addresses are accepted (exit 2, with a reason on stderr).
TEST(MockProvider, NonLoopbackListenIsRefused) {
  Process process({tool_path("cascade-mock-provider"), "--listen", "0.0.0.0:0"});
  EXPECT_FALSE(process.read_line(std::chrono::seconds(10)).has_value());
  EXPECT_EQ(process.wait(std::chrono::seconds(10)), 2);
}

// With --exit-with-parent the mock stops when the process that started it dies without
// cleaning up (as a crashing test would). The shell below is that parent; the mock's exit
// shows as EOF on the stdout pipe they shared.
TEST(MockProvider, ExitsWithItsParent) {
  Process shell({"/bin/sh", "-c", R"("$0" --listen 127.0.0.1:0 --exit-with-parent & echo $!; wait)",
                 tool_path("cascade-mock-provider")});
  auto pid_line = shell.read_line(std::chrono::seconds(10));
  auto listening = shell.read_line(std::chrono::seconds(10));
  ASSERT_TRUE(pid_line && listening);
  EXPECT_EQ(listening->rfind("listening on 127.0.0.1:", 0), 0u) << *listening;
  pid_t mock_pid = std::stoi(*pid_line);
  shell.signal(SIGKILL);
  auto start = std::chrono::steady_clock::now();
  EXPECT_FALSE(shell.read_line(std::chrono::seconds(10)).has_value());
  bool exited = std::chrono::steady_clock::now() - start < std::chrono::seconds(5);
  EXPECT_TRUE(exited) << "the mock outlived its parent";
  if (!exited) ::kill(mock_pid, SIGKILL);
}

// --help exits 0 and documents the control API.
TEST(MockProvider, HelpDescribesTheControlApi) {
  Process process({tool_path("cascade-mock-provider"), "--help"});
  auto help = all_output(process);
  EXPECT_EQ(process.wait(std::chrono::seconds(10)), 0);
  for (auto needle :
       {"--listen", "--record-limit", "--exit-with-parent", "/__mock/rules", "/__mock/requests",
        "/__mock/stats", "drop_before", "drop_after", "retry_after", "times"})
    EXPECT_NE(help.find(needle), std::string::npos) << needle;
}

}  // namespace
