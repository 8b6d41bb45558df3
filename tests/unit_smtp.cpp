// The sans-IO SMTP parts: replies, EHLO, classification, dot-stuffing, MIME, RFC 2047.
#include <gtest/gtest.h>

#include "channels/smtp_proto.hpp"

using namespace cascade;
using namespace cascade::smtp;

TEST(SmtpReply, SingleAndMultiLineAcrossChunks) {
  ReplyParser p;
  p.feed("220 mx.example ESMTP\r\n250-mx.example\r\n250-STAR");
  auto a = p.next();
  ASSERT_TRUE(a);
  EXPECT_EQ(a->code, 220);
  EXPECT_EQ(a->lines, std::vector<std::string>{"mx.example ESMTP"});
  EXPECT_FALSE(p.next());
  p.feed("TTLS\r\n250 AUTH PLAIN LOGIN\r\n");
  auto b = p.next();
  ASSERT_TRUE(b);
  EXPECT_EQ(b->code, 250);
  ASSERT_EQ(b->lines.size(), 3u);
  EXPECT_EQ(b->lines[1], "STARTTLS");
  EXPECT_FALSE(p.next());
  EXPECT_FALSE(p.failed());
  EXPECT_FALSE(p.has_pending());
}

TEST(SmtpReply, BareCodeAndMalformed) {
  ReplyParser p;
  p.feed("354\n");
  auto r = p.next();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->code, 354);
  p.feed("HTTP/1.1 400 Bad\r\n");
  EXPECT_FALSE(p.next());
  EXPECT_TRUE(p.failed());
  ReplyParser q;
  q.feed("250-a\r\n251 b\r\n");  // code changes inside a multi-line reply
  EXPECT_FALSE(q.next());
  EXPECT_TRUE(q.failed());
}

TEST(SmtpEhlo, Capabilities) {
  Reply r{250, {"mx", "PIPELINING", "SIZE 35882577", "auth login plain", "8BITMIME", "STARTTLS"}};
  auto c = parse_ehlo(r);
  EXPECT_TRUE(c.starttls);
  EXPECT_TRUE(c.auth_plain);
  EXPECT_TRUE(c.auth_login);
  EXPECT_TRUE(c.eightbitmime);
  EXPECT_FALSE(c.smtputf8);
  EXPECT_EQ(c.size, 35882577u);
  auto none = parse_ehlo(Reply{250, {"mx", "AUTHX PLAIN"}});
  EXPECT_FALSE(none.auth_plain);
}

TEST(SmtpClassify, ReferenceTable) {
  using K = Outcome::Kind;
  using C = Outcome::Cause;
  auto k = [](Stage s, int code) { return classify(s, Reply{code, {"x"}}); };
  for (int code : {421, 450, 451, 452, 454, 455}) {
    EXPECT_EQ(k(Stage::rcpt, code).kind, K::transient) << code;
    EXPECT_EQ(k(Stage::body, code).kind, K::transient) << code;
  }
  for (int code : {550, 551, 553, 521, 556}) {
    EXPECT_EQ(k(Stage::rcpt, code).kind, K::permanent) << code;
    EXPECT_EQ(k(Stage::rcpt, code).cause, C::recipient) << code;
  }
  EXPECT_EQ(k(Stage::auth, 535).cause, C::config);
  EXPECT_EQ(k(Stage::auth, 535).kind, K::permanent);
  for (int code : {500, 501, 502, 503, 504, 555, 530, 534, 538})
    EXPECT_EQ(k(Stage::mail, code).cause, C::config) << code;
  EXPECT_EQ(k(Stage::body, 554).cause, C::content);
  EXPECT_EQ(k(Stage::body, 552).cause, C::content);
  EXPECT_EQ(k(Stage::rcpt, 552).kind, K::transient) << "too many recipients = 452";
  auto o = k(Stage::rcpt, 550);
  EXPECT_NE(o.error.find("RCPT"), std::string::npos);
  EXPECT_NE(o.error.find("550"), std::string::npos);
}

TEST(SmtpClassify, SuccessCodesPerStage) {
  EXPECT_TRUE(is_success(Stage::data, Reply{354, {}}));
  EXPECT_FALSE(is_success(Stage::data, Reply{250, {}}));
  EXPECT_TRUE(is_success(Stage::rcpt, Reply{251, {}}));
  EXPECT_TRUE(is_success(Stage::greeting, Reply{220, {}}));
  EXPECT_FALSE(is_success(Stage::greeting, Reply{554, {}}));
}

TEST(SmtpDotStuff, LinesStartingWithDot) {
  EXPECT_EQ(dot_stuff("a\n.b\n..c\n.\nend"), "a\r\n..b\r\n...c\r\n..\r\nend\r\n.\r\n");
  EXPECT_EQ(dot_stuff(".x\r\ny\r\n"), "..x\r\ny\r\n.\r\n");
  EXPECT_EQ(dot_stuff(""), ".\r\n");
  EXPECT_EQ(dot_stuff("a\rb"), "a\r\nb\r\n.\r\n") << "bare CR normalised";
  EXPECT_EQ(dot_stuff("mid.dot"), "mid.dot\r\n.\r\n");
}

TEST(SmtpBase64, Vectors) {
  EXPECT_EQ(base64(""), "");
  EXPECT_EQ(base64("f"), "Zg==");
  EXPECT_EQ(base64("fo"), "Zm8=");
  EXPECT_EQ(base64("foo"), "Zm9v");
  EXPECT_EQ(base64("foobar"), "Zm9vYmFy");
  EXPECT_EQ(auth_plain("user", "pass"), "AHVzZXIAcGFzcw==");
}

TEST(SmtpHeader, Rfc2047) {
  EXPECT_EQ(encode_header("Hello world"), "Hello world");
  EXPECT_EQ(encode_header("Caf\xc3\xa9"), "=?UTF-8?B?Q2Fmw6k=?=");
  // Long UTF-8: several words, each under 76 characters, never splitting a character.
  std::string s;
  for (int i = 0; i < 40; ++i)
    s += "\xc3\xa9";  // é
  auto enc = encode_header(s);
  std::size_t start = 0;
  int words = 0;
  while (start < enc.size()) {
    auto end = enc.find("\r\n ", start);
    auto word = enc.substr(start, end == std::string::npos ? std::string::npos : end - start);
    EXPECT_LE(word.size(), 75u);
    EXPECT_EQ(word.rfind("=?UTF-8?B?", 0), 0u);
    ++words;
    if (end == std::string::npos) break;
    start = end + 3;
  }
  EXPECT_GE(words, 2);
  EXPECT_EQ(encode_header("a\r\nBcc: x").find('\n'), std::string::npos) << "no header injection";
}

TEST(SmtpMime, QuotedPrintable) {
  EXPECT_EQ(quoted_printable("a=b"), "a=3Db");
  EXPECT_EQ(quoted_printable("caf\xc3\xa9"), "caf=C3=A9");
  EXPECT_EQ(quoted_printable("x \ny"), "x=20\r\ny");
  EXPECT_EQ(quoted_printable(".dot"), ".dot");
  auto long_line = quoted_printable(std::string(200, 'a'));
  std::size_t pos = 0, longest = 0;
  while (pos < long_line.size()) {
    auto e = long_line.find("\r\n", pos);
    if (e == std::string::npos) e = long_line.size();
    longest = std::max(longest, e - pos);
    pos = e + 2;
  }
  EXPECT_LE(longest, 76u);
}

TEST(SmtpMime, PlainAndAlternative) {
  MimeMessage m;
  m.from = "noreply@shop.example";
  m.to = "ann@example.com";
  m.subject = "R\xc3\xa9sum\xc3\xa9";
  m.text = "Hello\n.world";
  m.message_id = message_id("1732410000000-0", "chk_1", "shop.example");
  m.date = 0;
  m.boundary = "b1";
  auto plain = build_mime(m);
  EXPECT_NE(plain.find("From: noreply@shop.example\r\n"), std::string::npos);
  EXPECT_NE(plain.find("To: ann@example.com\r\n"), std::string::npos);
  EXPECT_NE(plain.find("Subject: =?UTF-8?B?"), std::string::npos);
  EXPECT_NE(plain.find("Date: Thu, 01 Jan 1970 00:00:00 +0000\r\n"), std::string::npos);
  EXPECT_NE(plain.find("Message-ID: <1732410000000-0.chk_1@shop.example>\r\n"), std::string::npos);
  EXPECT_NE(plain.find("Content-Type: text/plain; charset=UTF-8"), std::string::npos);
  EXPECT_EQ(plain.find("multipart"), std::string::npos);
  EXPECT_NE(plain.find("\r\n\r\nHello\r\n.world"), std::string::npos);
  m.html = "<p>Hello</p>";
  auto alt = build_mime(m);
  EXPECT_NE(alt.find("multipart/alternative; boundary=\"b1\""), std::string::npos);
  EXPECT_NE(alt.find("--b1\r\nContent-Type: text/html; charset=UTF-8"), std::string::npos);
  EXPECT_NE(alt.find("--b1--\r\n"), std::string::npos);
}

TEST(SmtpMime, MessageIdStableAndSafe) {
  EXPECT_EQ(message_id("1-0", "chk_a", "x.example"), message_id("1-0", "chk_a", "x.example"));
  EXPECT_NE(message_id("1-0", "chk_a", "x.example"), message_id("1-0", "chk_b", "x.example"));
  EXPECT_EQ(message_id("1 0>", "", "x"), "<1_0_@x>");
}

TEST(SmtpAddress, Validation) {
  EXPECT_TRUE(valid_address("a.b+c@example.com"));
  EXPECT_FALSE(valid_address("a@b@c"));
  EXPECT_FALSE(valid_address("a b@c"));
  EXPECT_FALSE(valid_address("a@c>\r\nRCPT TO:<x@y"));
  EXPECT_FALSE(valid_address("@c"));
  EXPECT_FALSE(valid_address("a@"));
  EXPECT_EQ(address_domain("a@b.example"), "b.example");
  EXPECT_EQ(address_domain("nodomain"), "localhost");
  EXPECT_TRUE(is_ascii("a@b.example"));
  EXPECT_FALSE(is_ascii("jos\xc3\xa9@b.example"));
}
