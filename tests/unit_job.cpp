#include <gtest/gtest.h>

#include <atomic>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "engine/job.hpp"
#include "util/json.hpp"

namespace cascade {
namespace {

Job ok(const std::variant<Job, JobError>& r) {
  if (auto* e = std::get_if<JobError>(&r)) {
    ADD_FAILURE() << "unexpected error: field=\"" << e->field << "\" reason=\"" << e->reason
                  << "\"";
    return {};
  }
  return std::get<Job>(r);
}

JobError err(const std::variant<Job, JobError>& r) {
  if (auto* e = std::get_if<JobError>(&r)) return *e;
  ADD_FAILURE() << "expected an error, got a job";
  return {};
}

std::string repeat(std::string_view s, std::size_t n) {
  std::string out;
  out.reserve(s.size() * n);
  for (std::size_t i = 0; i < n; ++i)
    out += s;
  return out;
}

// A valid body around the given parts.
std::string body(std::string keys = R"({"telegram":{"token":"ck_t"}})",
                 std::string to = R"({"telegram":"123456789"})",
                 std::string message = R"({"text":"hi"})", std::string extra = "") {
  return R"({"keys":)" + keys + R"(,"to":)" + to + R"(,"message":)" + message + extra + "}";
}
std::string with_to(std::string to) {
  return body(R"({"telegram":{"token":"ck_t"}})", to);
}
std::string with_channel(std::string channel) {
  return body(R"({"telegram":)" + channel + "}");
}
std::string with_message(std::string message) {
  return body(R"({"telegram":{"token":"ck_t"}})", R"({"telegram":"123456789"})", message);
}
std::string with_extra(std::string extra) {
  return body(R"({"telegram":{"token":"ck_t"}})", R"({"telegram":"123456789"})", R"({"text":"hi"})",
              extra);
}
std::string email_to(std::string address) {
  return body(R"({"email":{"token":"ck_e"}})", R"({"email":")" + address + R"("})");
}

const char* kFull = R"({
  "keys": {
    "whatsapp": { "token": "ck_wa" },
    "waba":     { "token": "ck_waba" },
    "telegram": { "token": "ck_tg", "fallback": true, "fallback_sequence": 1 },
    "email":    { "token": "ck_em", "fallback": true, "fallback_sequence": 2 }
  },
  "to": {
    "phone": "+33612345678",
    "telegram": "123456789",
    "email": "ana@example.com"
  },
  "message": {
    "text": "Your code is 123456",
    "subject": "Your code",
    "html": "<p>Your code is <b>123456</b></p>"
  },
  "metadata": { "order": "A-1042", "n": [1, 2.5e3, true, null, {"x": "y"}] }
})";

// ---- valid bodies ------------------------------------------------------------------------

TEST(ParseJob, Minimal) {
  auto r = parse_job(body());
  const Job& job = ok(r);
  ASSERT_EQ(job.channels.size(), 1u);
  EXPECT_EQ(job.channels[0].channel, "telegram");
  EXPECT_EQ(job.channels[0].token, "ck_t");
  EXPECT_FALSE(job.channels[0].fallback);
  EXPECT_EQ(job.channels[0].fallback_sequence, 0);
  EXPECT_EQ(job.channels[0].tier(), 0);
  EXPECT_EQ(job.to.telegram, "123456789");
  EXPECT_EQ(job.message.text, "hi");
  EXPECT_EQ(job.message.subject, "hi");  // defaulted
  EXPECT_EQ(job.message.html, "");
  EXPECT_EQ(job.metadata_json, "");
}

TEST(ParseJob, Full) {
  auto r = parse_job(kFull);
  const Job& job = ok(r);
  ASSERT_EQ(job.channels.size(), 4u);
  EXPECT_EQ(job.channels[0].channel, "whatsapp");
  EXPECT_EQ(job.channels[1].channel, "waba");
  EXPECT_EQ(job.channels[2].channel, "telegram");
  EXPECT_EQ(job.channels[3].channel, "email");
  EXPECT_EQ(job.channels[0].token, "ck_wa");
  EXPECT_EQ(job.channels[3].token, "ck_em");
  EXPECT_EQ(job.channels[0].tier(), 0);
  EXPECT_EQ(job.channels[1].tier(), 0);
  EXPECT_EQ(job.channels[2].tier(), 1);
  EXPECT_EQ(job.channels[3].tier(), 2);
  EXPECT_TRUE(job.channels[3].fallback);
  EXPECT_EQ(job.to.phone, "+33612345678");
  EXPECT_EQ(job.to.telegram, "123456789");
  EXPECT_EQ(job.to.email, "ana@example.com");
  EXPECT_EQ(job.message.text, "Your code is 123456");
  EXPECT_EQ(job.message.subject, "Your code");
  EXPECT_EQ(job.message.html, "<p>Your code is <b>123456</b></p>");
  EXPECT_EQ(job.metadata_json, R"({ "order": "A-1042", "n": [1, 2.5e3, true, null, {"x": "y"}] })");
  EXPECT_EQ(job.recipient_for("whatsapp"), "+33612345678");
  EXPECT_EQ(job.recipient_for("waba"), "+33612345678");
  EXPECT_EQ(job.recipient_for("telegram"), "123456789");
  EXPECT_EQ(job.recipient_for("email"), "ana@example.com");
  EXPECT_EQ(job.recipient_for("sms"), "");
}

TEST(ParseJob, FieldOrderDoesNotMatter) {
  const Job& job = ok(parse_job(
      R"({"metadata":{},"message":{"html":"<b>x</b>","text":"t"},"to":{"email":"a@b.io"},)"
      R"("keys":{"email":{"fallback_sequence":7,"token":"ck","fallback":true}}})"));
  ASSERT_EQ(job.channels.size(), 1u);
  EXPECT_EQ(job.channels[0].tier(), 7);
  EXPECT_EQ(job.metadata_json, "{}");
}

TEST(ParseJob, FallbackDefaultsToSequenceOne) {
  const Job& job = ok(parse_job(with_channel(R"({"token":"ck","fallback":true})")));
  EXPECT_TRUE(job.channels[0].fallback);
  EXPECT_EQ(job.channels[0].fallback_sequence, 1);
  EXPECT_EQ(job.channels[0].tier(), 1);
}

TEST(ParseJob, ExplicitFallbackFalseIsPrimary) {
  const Job& job = ok(parse_job(with_channel(R"({"token":"ck","fallback":false})")));
  EXPECT_FALSE(job.channels[0].fallback);
  EXPECT_EQ(job.channels[0].tier(), 0);
}

TEST(ParseJob, FallbackSequenceBounds) {
  EXPECT_EQ(ok(parse_job(with_channel(R"({"token":"ck","fallback":true,"fallback_sequence":1})")))
                .channels[0]
                .tier(),
            1);
  EXPECT_EQ(ok(parse_job(with_channel(R"({"token":"ck","fallback":true,"fallback_sequence":100})")))
                .channels[0]
                .tier(),
            100);
}

TEST(ParseJob, DefaultSubjectIsFirst78CodePointsWithoutLineBreaks) {
  // 80 two-byte characters, with line breaks of all three kinds early on.
  std::string text = "a\r\nb\nc\rd" + repeat("\xC3\xA9", 80);
  std::string escaped = R"(a\r\nb\nc\rd)" + repeat("\xC3\xA9", 80);
  const Job& job = ok(parse_job(with_message(R"({"text":")" + escaped + R"("})")));
  std::string expected = "a b c d" + repeat("\xC3\xA9", 78 - 7);
  EXPECT_EQ(job.message.subject, expected);
  EXPECT_EQ(json::utf8_length(job.message.subject), 78u);
  EXPECT_EQ(job.message.text, text);
}

TEST(ParseJob, JsonEscapesInLineBreaksAreHandled) {
  const Job& job = ok(parse_job(with_message(R"({"text":"one\r\ntwo\u00e9 \ud83d\ude00"})")));
  EXPECT_EQ(job.message.text, "one\r\ntwo\xC3\xA9 \xF0\x9F\x98\x80");
  EXPECT_EQ(job.message.subject, "one two\xC3\xA9 \xF0\x9F\x98\x80");
}

TEST(ParseJob, EmptySubjectIsDefaulted) {
  const Job& job = ok(parse_job(with_message(R"({"text":"hello","subject":""})")));
  EXPECT_EQ(job.message.subject, "hello");
}

TEST(ParseJob, TextLimitCountsCharactersNotBytes) {
  std::string text = repeat("\xE2\x82\xAC", 4096);  // 4096 euro signs, 12288 bytes
  const Job& job = ok(parse_job(with_message(R"({"text":")" + text + R"("})")));
  EXPECT_EQ(job.message.text, text);
  EXPECT_EQ(json::utf8_length(job.message.subject), 78u);
}

TEST(ParseJob, SubjectLimits) {
  ok(parse_job(with_message(R"({"text":"x","subject":")" + repeat("\xC3\xA9", 998) + R"("})")));
}

TEST(ParseJob, ValidRecipients) {
  for (std::string tg :
       std::vector<std::string>{"@abcde", "@A_b_c_d_e1", "@" + repeat("a", 32), "-1001234567890",
                                "1", "9223372036854775807", "-9223372036854775808"}) {
    ok(parse_job(with_to(R"({"telegram":")" + tg + R"("})")));
  }
  for (std::string phone : {"+33612345678", "+12345678", "+123456789012345"}) {
    ok(parse_job(body(R"({"waba":{"token":"ck"}})", R"({"phone":")" + phone + R"("})")));
  }
  for (std::string email : std::vector<std::string>{
           "ana@example.com", "a.b+tag@sub.example.co.uk", "x@[192.168.0.1]",
           "x@[IPv6:2001:db8::1]", "\xC3\xA1na@example.com", "o'brien!#$%&*/=?^_`{|}~-@ex-ample.io",
           repeat("a", 64) + "@example.com"}) {
    ok(parse_job(email_to(email)));
  }
}

TEST(ParseJob, UnusedRecipientsAreValidatedToo) {
  EXPECT_EQ(err(parse_job(with_to(R"({"telegram":"1","email":"nope"})"))).field, "to.email");
}

TEST(ParseJob, MetadataIsCopiedVerbatim) {
  std::string meta =
      "{\n  \"a\" : [1, 2 ,3],\"big\": 123456789012345678901234567890,"
      "\"f\":1e999, \"s\":\"\\u00e9\\n\", \"o\": {\"a\": {}}\n}";
  const Job& job = ok(parse_job(with_extra(",\"metadata\":  " + meta + "  \n")));
  EXPECT_EQ(job.metadata_json, meta);
}

TEST(ParseJob, MetadataAtTheLimit) {
  std::string meta = R"({"k":")" + repeat("x", 4096 - 8) + R"("})";
  ASSERT_EQ(meta.size(), 4096u);
  EXPECT_EQ(ok(parse_job(with_extra(",\"metadata\":" + meta))).metadata_json, meta);
}

TEST(ParseJob, CustomLimits) {
  JobLimits limits;
  limits.max_text_chars = 3;
  EXPECT_EQ(err(parse_job(with_message(R"({"text":"abcd"})"), limits)).field, "message.text");
  ok(parse_job(with_message(R"({"text":"abc"})"), limits));
  limits.max_metadata_bytes = 8;
  EXPECT_EQ(err(parse_job(with_extra(R"(,"metadata":{"a":123})"), limits)).field, "metadata");
  ok(parse_job(with_extra(R"(,"metadata":{"a":12})"), limits));
  limits.max_body_bytes = 10;
  EXPECT_EQ(err(parse_job(body(), limits)).field, "");
}

TEST(ParseJob, ThreadsParseIndependently) {
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 500; ++i) {
        auto r = parse_job(t % 2 ? std::string(kFull) : with_to(R"({"telegram":"x"})"));
        bool good = std::holds_alternative<Job>(r);
        if (good != (t % 2 == 1)) ++failures;
      }
    });
  }
  for (auto& th : threads)
    th.join();
  EXPECT_EQ(failures.load(), 0);
}

// ---- one case per rule -------------------------------------------------------------------

struct Case {
  const char* name;
  std::string body;
  std::string field;
  std::string reason_has = "";  // a substring of the reason
  bool unreadable = false;
};

std::string deep_array(std::size_t n) {
  return repeat("[", n) + repeat("]", n);
}
std::string deep_object(std::size_t n) {
  return repeat(R"({"a":)", n) + "1" + repeat("}", n);
}

std::vector<Case> cases() {
  const std::string tg = R"({"telegram":{"token":"ck"}})";
  return {
      // body as a whole
      {"empty", "", "", "body is empty", true},
      {"only whitespace", " \n\t ", "", "body", true},
      {"array", "[1,2]", "", "body must be a JSON object", true},
      {"string", "\"keys\"", "", "body must be a JSON object", true},
      {"number", "42", "", "body must be a JSON object", true},
      {"null", "null", "", "body must be a JSON object", true},
      {"truncated", body().substr(0, body().size() - 1), "", "not valid JSON", true},
      {"truncated in a string", body().substr(0, 30), "", "not valid JSON", true},
      {"trailing garbage", body() + "x", "", "not valid JSON", true},
      {"two objects", body() + body(), "", "not valid JSON", true},
      {"missing comma", R"({"keys":{} "to":{}})", "", "not valid JSON", true},
      {"trailing comma", R"({"keys":{"telegram":{"token":"ck",}}})", "", "not valid JSON", true},
      {"single quotes", "{'keys':{}}", "", "not valid JSON", true},
      {"bad literal", with_channel(R"({"token":"ck","fallback":tru})"), "", "not valid JSON", true},
      {"bad number", with_channel(R"({"token":"ck","fallback":true,"fallback_sequence":-})"), "",
       "not valid JSON", true},
      {"bad escape", with_message(R"({"text":"a\x"})"), "", "not valid JSON", true},
      {"raw control char", with_message("{\"text\":\"a\x01b\"}"), "", "not valid JSON", true},
      {"invalid utf-8", with_message("{\"text\":\"caf\xE9\"}"), "", "UTF-8", true},
      {"overlong utf-8", with_message("{\"text\":\"\xC0\xAF\"}"), "", "UTF-8", true},
      {"utf-8 surrogate bytes", with_message("{\"text\":\"\xED\xA0\x80\"}"), "", "UTF-8", true},
      {"syntax error after a violation", R"({"nope":1,"keys":tru})", "", "not valid JSON", true},
      {"syntax error in metadata", with_extra(R"(,"metadata":{"a":[1,2,nul]})"), "",
       "not valid JSON", true},
      {"too large", "{\"x\":\"" + repeat("a", 64 * 1024) + "\"}", "", "at most 65536 bytes"},
      // top level
      {"unknown top-level field", with_extra(R"(,"priority":1)"), "priority",
       "priority is not a known field"},
      {"duplicate top-level field", with_extra(R"(,"message":{"text":"again"})"), "message",
       "message appears more than once"},
      {"duplicate via escape", with_extra(R"(,"k\u0065ys":{})"), "keys", "appears more than once"},
      {"keys missing", R"({"to":{"telegram":"1"},"message":{"text":"x"}})", "keys",
       "keys is required"},
      {"keys not an object", body("[]"), "keys", "keys must be an object"},
      {"keys null", body("null"), "keys", "keys must be an object"},
      {"keys empty", body("{}"), "keys", "at least one channel"},
      // keys.<channel>
      {"unknown channel", body(R"({"sms":{"token":"ck"}})"), "keys.sms",
       "keys.sms is not a supported channel"},
      {"channel names are case-sensitive", body(R"({"Telegram":{"token":"ck"}})"), "keys.Telegram"},
      {"duplicate channel", body(R"({"telegram":{"token":"a"},"telegram":{"token":"b"}})"),
       "keys.telegram", "appears more than once"},
      {"channel not an object", with_channel(R"("ck_t")"), "keys.telegram", "must be an object"},
      {"token missing", with_channel(R"({"fallback":true})"), "keys.telegram.token",
       "keys.telegram.token is required"},
      {"token empty", with_channel(R"({"token":""})"), "keys.telegram.token", "must not be empty"},
      {"token not a string", with_channel(R"({"token":12})"), "keys.telegram.token",
       "keys.telegram.token must be a string"},
      {"token null", with_channel(R"({"token":null})"), "keys.telegram.token", "must be a string"},
      {"duplicate token", with_channel(R"({"token":"a","token":"b"})"), "keys.telegram.token",
       "appears more than once"},
      {"unknown channel field", with_channel(R"({"token":"a","priority":1})"),
       "keys.telegram.priority", "keys.telegram.priority is not a known field"},
      {"fallback as string", with_channel(R"({"token":"a","fallback":"true"})"),
       "keys.telegram.fallback", "keys.telegram.fallback must be a boolean"},
      {"fallback as number", with_channel(R"({"token":"a","fallback":1})"),
       "keys.telegram.fallback", "must be a boolean"},
      {"fallback null", with_channel(R"({"token":"a","fallback":null})"), "keys.telegram.fallback",
       "must be a boolean"},
      {"sequence 0", with_channel(R"({"token":"a","fallback":true,"fallback_sequence":0})"),
       "keys.telegram.fallback_sequence",
       "keys.telegram.fallback_sequence must be an integer from 1 to 100"},
      {"sequence 101", with_channel(R"({"token":"a","fallback":true,"fallback_sequence":101})"),
       "keys.telegram.fallback_sequence", "from 1 to 100"},
      {"sequence negative", with_channel(R"({"token":"a","fallback":true,"fallback_sequence":-1})"),
       "keys.telegram.fallback_sequence", "from 1 to 100"},
      {"sequence fraction",
       with_channel(R"({"token":"a","fallback":true,"fallback_sequence":1.5})"),
       "keys.telegram.fallback_sequence", "from 1 to 100"},
      {"sequence 2.0", with_channel(R"({"token":"a","fallback":true,"fallback_sequence":2.0})"),
       "keys.telegram.fallback_sequence", "from 1 to 100"},
      {"sequence exponent",
       with_channel(R"({"token":"a","fallback":true,"fallback_sequence":1e1})"),
       "keys.telegram.fallback_sequence", "from 1 to 100"},
      {"sequence huge",
       with_channel(R"({"token":"a","fallback":true,"fallback_sequence":99999999999999999999999})"),
       "keys.telegram.fallback_sequence", "from 1 to 100"},
      {"sequence as string",
       with_channel(R"({"token":"a","fallback":true,"fallback_sequence":"2"})"),
       "keys.telegram.fallback_sequence", "from 1 to 100"},
      {"sequence without fallback", with_channel(R"({"token":"a","fallback_sequence":2})"),
       "keys.telegram.fallback_sequence", "only allowed with \"fallback\": true"},
      {"sequence with fallback false",
       with_channel(R"({"fallback_sequence":2,"token":"a","fallback":false})"),
       "keys.telegram.fallback_sequence", "only allowed with"},
      // to
      {"to not an object", with_to(R"("123")"), "to", "to must be an object"},
      {"unknown recipient", with_to(R"({"telegram":"1","sms":"+33612345678"})"), "to.sms",
       "to.sms is not a known field"},
      {"duplicate recipient", with_to(R"({"telegram":"1","telegram":"2"})"), "to.telegram",
       "appears more than once"},
      {"whatsapp needs phone", body(R"({"whatsapp":{"token":"ck"}})", R"({"telegram":"1"})"),
       "to.phone", "to.phone is required by the whatsapp channel"},
      {"waba needs phone", body(R"({"telegram":{"token":"a"},"waba":{"token":"ck"}})"), "to.phone",
       "waba"},
      {"telegram needs chat", body(tg, R"({"phone":"+33612345678"})"), "to.telegram",
       "to.telegram is required by the telegram channel"},
      {"email needs address", body(R"({"email":{"token":"ck"}})", "{}"), "to.email",
       "to.email is required"},
      {"to missing", R"({"keys":{"email":{"token":"ck"}},"message":{"text":"x"}})", "to.email",
       "required"},
      {"phone without plus", body(R"({"waba":{"token":"ck"}})", R"({"phone":"33612345678"})"),
       "to.phone", "to.phone must be an E.164 phone number"},
      {"phone leading zero", body(R"({"waba":{"token":"ck"}})", R"({"phone":"+0612345678"})"),
       "to.phone", "E.164"},
      {"phone too short", body(R"({"waba":{"token":"ck"}})", R"({"phone":"+1234567"})"), "to.phone",
       "E.164"},
      {"phone too long", body(R"({"waba":{"token":"ck"}})", R"({"phone":"+1234567890123456"})"),
       "to.phone", "E.164"},
      {"phone with spaces", body(R"({"waba":{"token":"ck"}})", R"({"phone":"+33 6 12 34 56 78"})"),
       "to.phone", "E.164"},
      {"phone as number", body(R"({"waba":{"token":"ck"}})", R"({"phone":33612345678})"),
       "to.phone", "to.phone must be a string"},
      {"telegram username too short", with_to(R"({"telegram":"@abcd"})"), "to.telegram",
       "to.telegram must be a numeric chat id"},
      {"telegram username too long", with_to(R"({"telegram":"@)" + repeat("a", 33) + "\"}"),
       "to.telegram"},
      {"telegram username starts with digit", with_to(R"({"telegram":"@1abcde"})"), "to.telegram"},
      {"telegram username bad char", with_to(R"({"telegram":"@abc-de"})"), "to.telegram"},
      {"telegram chat id not numeric", with_to(R"({"telegram":"12a"})"), "to.telegram"},
      {"telegram chat id overflows", with_to(R"({"telegram":"9223372036854775808"})"),
       "to.telegram"},
      {"telegram chat id zero", with_to(R"({"telegram":"0"})"), "to.telegram"},
      {"telegram empty", with_to(R"({"telegram":""})"), "to.telegram"},
      {"telegram as number", with_to(R"({"telegram":123456789})"), "to.telegram",
       "must be a string"},
      {"email without at", email_to("ana.example.com"), "to.email",
       "to.email must be an email address"},
      {"email without domain", email_to("ana@"), "to.email", "email address"},
      {"email without local part", email_to("@example.com"), "to.email", "email address"},
      {"email domain without dot", email_to("ana@localhost"), "to.email", "email address"},
      {"email with space", email_to("an a@example.com"), "to.email", "email address"},
      {"email with two ats", email_to("ana@b@example.com"), "to.email", "email address"},
      {"email double dot", email_to("ana..b@example.com"), "to.email", "email address"},
      {"email leading dot", email_to(".ana@example.com"), "to.email", "email address"},
      {"email domain hyphen", email_to("ana@-example.com"), "to.email", "email address"},
      {"email empty label", email_to("ana@example..com"), "to.email", "email address"},
      {"email numeric tld", email_to("ana@1.2.3.4"), "to.email", "email address"},
      {"email bad literal", email_to("ana@[999.1.1.1]"), "to.email", "email address"},
      {"email control char", email_to("ana\\u0001@example.com"), "to.email", "email address"},
      {"email local part too long", email_to(repeat("a", 65) + "@example.com"), "to.email",
       "at most 64 characters before the @"},
      {"email too long", email_to("a@" + repeat("abcdefghi.", 25) + "com"), "to.email",
       "at most 254 characters"},
      // message
      {"message missing", R"({"keys":{"telegram":{"token":"ck"}},"to":{"telegram":"1"}})",
       "message", "message is required"},
      {"message not an object", with_message(R"("hi")"), "message", "message must be an object"},
      {"text missing", with_message(R"({"subject":"s"})"), "message.text",
       "message.text is required"},
      {"text empty", with_message(R"({"text":""})"), "message.text",
       "message.text must not be empty"},
      {"text too long", with_message(R"({"text":")" + repeat("\xE2\x82\xAC", 4097) + R"("})"),
       "message.text", "message.text must be at most 4096 characters (it has 4097)"},
      {"text not a string", with_message(R"({"text":["hi"]})"), "message.text",
       "message.text must be a string"},
      {"text null", with_message(R"({"text":null})"), "message.text", "must be a string"},
      // JSON allows unpaired surrogate escapes; simdjson (and we) reject them.
      {"text lone surrogate", with_message(R"({"text":"a\udc00b"})"), "", "not valid JSON", true},
      {"text lone high surrogate", with_message(R"({"text":"a\ud800"})"), "", "not valid JSON",
       true},
      {"subject not a string", with_message(R"({"text":"x","subject":1})"), "message.subject",
       "message.subject must be a string"},
      {"subject with line break", with_message(R"({"text":"x","subject":"a\r\nBcc: x"})"),
       "message.subject", "message.subject must not contain line breaks"},
      {"subject too long", with_message(R"({"text":"x","subject":")" + repeat("s", 999) + "\"}"),
       "message.subject", "at most 998 characters"},
      {"html not a string", with_message(R"({"text":"x","html":{}})"), "message.html",
       "message.html must be a string"},
      {"unknown message field", with_message(R"({"text":"x","body":"y"})"), "message.body",
       "message.body is not a known field"},
      {"duplicate text", with_message(R"({"text":"x","text":"y"})"), "message.text",
       "appears more than once"},
      // metadata
      {"metadata array", with_extra(R"(,"metadata":[1])"), "metadata",
       "metadata must be an object"},
      {"metadata string", with_extra(R"(,"metadata":"x")"), "metadata", "must be an object"},
      {"metadata null", with_extra(R"(,"metadata":null)"), "metadata", "must be an object"},
      {"metadata too large", with_extra(R"(,"metadata":{"k":")" + repeat("x", 4096 - 7) + R"("})"),
       "metadata", "metadata must be at most 4096 bytes of JSON (it has 4097)"},
      {"metadata duplicate key", with_extra(R"(,"metadata":{"a":1,"b":2,"a":3})"), "metadata.a",
       "metadata.a appears more than once"},
      {"metadata nested duplicate", with_extra(R"(,"metadata":{"x":[0,{"k":1,"k":2}]})"),
       "metadata.x[1].k", "appears more than once"},
      {"metadata too deep", with_extra(R"(,"metadata":)" + deep_object(65)), "metadata",
       "nested deeper than 64 levels"},
      // garbage
      {"deep array", deep_array(20000), "", "", true},
      // Deep nesting is only legal inside metadata (max 64 levels): elsewhere the first
      // violation is reported, here the unknown field.
      {"deep object", deep_object(10000), "a", "a is not a known field"},
      {"deep unknown field", R"({"x":)" + deep_array(10000) + "}", "x", "x is not a known field"},
      {"empty key", with_extra(R"(,"":1)"), "\"\"", "\"\" is not a known field"},
      {"binary", std::string("\x00\x01\x02\xff{}\x7f", 8), "", "", true},
      {"nul inside", std::string("{\"keys\":\0}", 10), "", "", true},
  };
}

TEST(ParseJob, EveryRuleNamesItsField) {
  auto all = cases();
  EXPECT_GE(all.size(), 30u);
  for (const auto& c : all) {
    SCOPED_TRACE(c.name);
    auto r = parse_job(c.body);
    ASSERT_TRUE(std::holds_alternative<JobError>(r)) << c.name;
    const auto& e = std::get<JobError>(r);
    EXPECT_EQ(e.field, c.field) << e.reason;
    EXPECT_NE(e.reason.find(c.reason_has), std::string::npos) << e.reason;
    EXPECT_EQ(e.unreadable, c.unreadable) << e.reason;
    // Reasons are self-contained: they start with the path (or "body").
    EXPECT_EQ(e.reason.rfind(c.field.empty() ? "body" : c.field, 0), 0u) << e.reason;
    EXPECT_EQ(e.message(), "Invalid request: " + e.reason);
  }
}

TEST(ParseJob, HugeBodyIsRejectedBeforeParsing) {
  std::string huge(10 * 1024 * 1024, 'x');
  auto e = err(parse_job(huge));
  EXPECT_EQ(e.field, "");
  EXPECT_EQ(e.reason, "body must be at most 65536 bytes (it has 10485760)");
  EXPECT_FALSE(e.unreadable);
}

TEST(ParseJob, HugeDeepBodyWithLargeLimitDoesNotCrash) {
  JobLimits limits;
  limits.max_body_bytes = 16 * 1024 * 1024;
  auto e = err(parse_job(deep_array(5 * 1024 * 1024), limits));
  EXPECT_EQ(e.field, "");
  e = err(parse_job(R"({"metadata":)" + deep_object(1'000'000) + "}", limits));
  EXPECT_EQ(e.field, "metadata");  // too large
  limits.max_metadata_bytes = 16 * 1024 * 1024;
  e = err(parse_job(with_extra(R"(,"metadata":)" + deep_object(1'000'000)), limits));
  EXPECT_EQ(e.field, "metadata");  // too deep
  EXPECT_NE(e.reason.find("nested deeper than 64 levels"), std::string::npos) << e.reason;
  e = err(parse_job(R"({"x":)" + deep_object(100'000) + "}", limits));
  EXPECT_EQ(e.field, "x");
  // A syntax error far down a deep document still wins when it is within reach.
  e = err(parse_job(R"({"x":)" + repeat("[", 100) + "tru" + repeat("]", 100) + "}", limits));
  EXPECT_EQ(e.field, "");
  EXPECT_TRUE(e.unreadable);
}

TEST(ParseJob, LongUnknownKeysAreShortenedInTheError) {
  std::string key = repeat("k", 500);
  auto e = err(parse_job(with_extra(",\"" + key + "\":1")));
  EXPECT_EQ(e.field, repeat("k", 64) + "...");
  EXPECT_LT(e.reason.size(), 200u);
}

// Random corruption of a valid body: never crashes, errors are well-formed.
TEST(ParseJob, RandomMutationsNeverCrash) {
  std::mt19937 rng(12345);
  const std::string base = kFull;
  int jobs = 0;
  for (int i = 0; i < 20000; ++i) {
    std::string b = base;
    int edits = 1 + static_cast<int>(rng() % 4);
    for (int k = 0; k < edits && !b.empty(); ++k) {
      std::size_t pos = rng() % b.size();
      switch (rng() % 4) {
        case 0:
          b[pos] = static_cast<char>(rng() % 256);
          break;
        case 1:
          b.erase(pos, 1 + rng() % 8);
          break;
        case 2:
          b.insert(pos, 1, "{}[]\",:\\ 0a-"[rng() % 12]);
          break;
        default:
          b.resize(pos);
          break;
      }
    }
    auto r = parse_job(b);
    if (auto* e = std::get_if<JobError>(&r)) {
      EXPECT_FALSE(e->reason.empty());
      if (e->unreadable) {
        EXPECT_EQ(e->field, "");
      }
      EXPECT_EQ(e->reason.rfind(e->field.empty() ? "body" : e->field, 0), 0u) << e->reason;
    } else {
      ++jobs;
      const Job& job = std::get<Job>(r);
      EXPECT_FALSE(job.channels.empty());
      EXPECT_TRUE(json::valid_utf8(job.message.text));
      EXPECT_TRUE(json::valid_utf8(job.message.subject));
    }
  }
  EXPECT_GT(jobs, 0);
}

}  // namespace
}  // namespace cascade
