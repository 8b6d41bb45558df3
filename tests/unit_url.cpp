// Provider base URLs (util/url): parsed strictly, and "loopback" (where plain HTTP is
// allowed) decided on IP literals and localhost only, never on a name that DNS resolves.
#include <gtest/gtest.h>

#include "util/url.hpp"

using namespace cascade;

// The forms a base URL legitimately takes.
TEST(Url, ParsesBaseUrls) {
  auto u = parse_url("https://api.telegram.org");
  ASSERT_TRUE(u);
  EXPECT_EQ(u->host, "api.telegram.org");
  EXPECT_EQ(u->port, 443);
  EXPECT_EQ(u->path, "");
  auto v = parse_url("http://127.0.0.1:9000/gateway/v1/");
  ASSERT_TRUE(v);
  EXPECT_EQ(v->port, 9000);
  EXPECT_EQ(v->path, "/gateway/v1");
  auto w = parse_url("http://[::1]:8080/x");
  ASSERT_TRUE(w);
  EXPECT_EQ(w->host, "::1");
  EXPECT_TRUE(parse_url("https://graph.facebook.com/v23.0"));
  EXPECT_TRUE(parse_url("https://h/a..b/.well-known")) << "dots inside a segment are fine";
}

// Userinfo, query, fragment, CR/LF and dot segments are refused, each with its reason.
TEST(Url, RefusesWhatABaseUrlNeverHas) {
  struct Case {
    const char* url;
    const char* says;
  };
  for (auto c : std::vector<Case>{
           {"https://user:pw@api.example.com", "credentials"},
           {"https://api.example.com@evil.example", "credentials"},
           {"https://api.example.com/x?token=1", "query"},
           {"https://api.example.com/x#frag", "fragment"},
           {"https://api.example.com/x\r\nHost: evil", "control characters"},
           {"https://api.example.com/x\n", "control characters"},
           {"https://api.example.com/a b", "spaces"},
           {"https://api.example.com/../admin", "'..'"},
           {"https://api.example.com/a/..", "'..'"},
           {"https://api.example.com/a/../", "'..'"},
           {"https://api.example.com/a/%2e%2E/b", "'..'"},
           {"https://api.example.com/./b", "'.'"},
           {"https://api.example.com\\@evil/", "backslash"},
           {"https://evil.example%2f/", "bad host"},
           {"ftp://api.example.com", "scheme"},
           {"https://", "missing host"},
           {"https://h:0", "bad port"},
       }) {
    std::string why;
    EXPECT_FALSE(parse_url(c.url, &why)) << c.url;
    EXPECT_NE(why.find(c.says), std::string::npos) << c.url << ": " << why;
    EXPECT_EQ(why.find("evil"), std::string::npos) << "the reason never quotes the URL";
  }
}

// Loopback: IP literals in 127/8 and ::1 (and v4-mapped 127/8), and localhost. A name that
// merely starts with "127." is a DNS name like any other.
TEST(Url, LoopbackIsAnIpLiteralOrLocalhost) {
  auto loop = [](const char* url) { return parse_url(url)->loopback(); };
  EXPECT_TRUE(loop("http://127.0.0.1:9000"));
  EXPECT_TRUE(loop("http://127.10.20.30"));
  EXPECT_TRUE(loop("http://localhost:8080"));
  EXPECT_TRUE(loop("http://LOCALHOST"));
  EXPECT_TRUE(loop("http://[::1]:9000"));
  EXPECT_TRUE(loop("http://[::ffff:127.0.0.1]"));
  EXPECT_FALSE(loop("http://127.attacker.example"));
  EXPECT_FALSE(loop("http://127.0.0.1.attacker.example"));
  EXPECT_FALSE(loop("http://127.1")) << "not a dotted-quad literal: resolved by name";
  EXPECT_FALSE(loop("http://localhost.attacker.example"));
  EXPECT_FALSE(loop("http://10.0.0.1"));
  EXPECT_FALSE(loop("http://[::2]"));
  EXPECT_FALSE(loop("http://[::ffff:10.0.0.1]"));
}
