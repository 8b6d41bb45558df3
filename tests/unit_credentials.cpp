#include <gtest/gtest.h>

#include <optional>
#include <random>
#include <string>

#include "auth/credentials.hpp"

namespace cascade::auth {
namespace {

using Opt = std::optional<std::string_view>;
constexpr std::nullopt_t none = std::nullopt;

std::string key_of(const std::variant<std::string, CredentialError>& r) {
  if (auto* k = std::get_if<std::string>(&r)) return *k;
  ADD_FAILURE() << "expected a key, got error " << static_cast<int>(std::get<CredentialError>(r));
  return {};
}

bool is(const std::variant<std::string, CredentialError>& r, CredentialError e) {
  auto* got = std::get_if<CredentialError>(&r);
  return got && *got == e;
}

TEST(Credentials, BothAbsentIsMissing) {
  EXPECT_TRUE(is(extract_api_key(none, none), CredentialError::missing));
}

TEST(Credentials, EmptyOrBlankFieldsAreAbsent) {
  EXPECT_TRUE(is(extract_api_key(Opt(""), none), CredentialError::missing));
  EXPECT_TRUE(is(extract_api_key(none, Opt("")), CredentialError::missing));
  EXPECT_TRUE(is(extract_api_key(Opt("  \t "), Opt(" \r\n")), CredentialError::missing));
}

TEST(Credentials, BearerWithNothingAfterIsMissing) {
  for (std::string_view v : {"Bearer", "Bearer ", "bearer   ", "  BEARER\t", "Bearer \t \r\n"})
    EXPECT_TRUE(is(extract_api_key(Opt(v), none), CredentialError::missing)) << v;
}

TEST(Credentials, BearerKey) {
  EXPECT_EQ(key_of(extract_api_key(Opt("Bearer ak_123"), none)), "ak_123");
  EXPECT_EQ(key_of(extract_api_key(Opt("bearer ak_123"), none)), "ak_123");
  EXPECT_EQ(key_of(extract_api_key(Opt("BEARER ak_123"), none)), "ak_123");
  EXPECT_EQ(key_of(extract_api_key(Opt("bEaReR ak_123"), none)), "ak_123");
  EXPECT_EQ(key_of(extract_api_key(Opt("  Bearer    ak_123  "), none)), "ak_123");
  EXPECT_EQ(key_of(extract_api_key(Opt("Bearer\tak_123\r\n"), none)), "ak_123");
}

TEST(Credentials, XApiKey) {
  EXPECT_EQ(key_of(extract_api_key(none, Opt("ak_123"))), "ak_123");
  EXPECT_EQ(key_of(extract_api_key(none, Opt(" \tak_123 \n"))), "ak_123");
  // x-api-key carries the key itself: a scheme there is not stripped (fails later).
  EXPECT_EQ(key_of(extract_api_key(none, Opt("Bearer ak_123"))), "Bearer ak_123");
}

TEST(Credentials, OtherSchemesArePassedOnAsAnInvalidKey) {
  EXPECT_EQ(key_of(extract_api_key(Opt("Basic dXNlcjpwYXNz"), none)), "Basic dXNlcjpwYXNz");
  EXPECT_EQ(key_of(extract_api_key(Opt(" Token abc "), none)), "Token abc");
  // "Bearer" must be followed by whitespace to be the scheme.
  EXPECT_EQ(key_of(extract_api_key(Opt("Bearerak_123"), none)), "Bearerak_123");
  EXPECT_EQ(key_of(extract_api_key(Opt("Bearer: ak_123"), none)), "Bearer: ak_123");
  // Several words after Bearer stay together: never a valid key.
  EXPECT_EQ(key_of(extract_api_key(Opt("Bearer ak_1 ak_2"), none)), "ak_1 ak_2");
  // A bare value without a scheme is passed on verbatim (a correct key still works).
  EXPECT_EQ(key_of(extract_api_key(Opt("ak_123"), none)), "ak_123");
}

TEST(Credentials, BothPresent) {
  EXPECT_EQ(key_of(extract_api_key(Opt("Bearer ak_1"), Opt("ak_1"))), "ak_1");
  EXPECT_EQ(key_of(extract_api_key(Opt(" bearer  ak_1 "), Opt("\tak_1"))), "ak_1");
  EXPECT_TRUE(is(extract_api_key(Opt("Bearer ak_1"), Opt("ak_2")), CredentialError::conflicting));
  EXPECT_TRUE(is(extract_api_key(Opt("Basic xyz"), Opt("ak_2")), CredentialError::conflicting));
  // Keys are case-sensitive.
  EXPECT_TRUE(is(extract_api_key(Opt("Bearer AK_1"), Opt("ak_1")), CredentialError::conflicting));
}

TEST(Credentials, OneEmptyFieldDoesNotConflict) {
  EXPECT_EQ(key_of(extract_api_key(Opt("Bearer"), Opt("ak_2"))), "ak_2");
  EXPECT_EQ(key_of(extract_api_key(Opt(""), Opt("ak_2"))), "ak_2");
  EXPECT_EQ(key_of(extract_api_key(Opt("Bearer ak_1"), Opt("  "))), "ak_1");
  EXPECT_EQ(key_of(extract_api_key(Opt("Bearer ak_1"), Opt(""))), "ak_1");
}

TEST(Credentials, EmbeddedNulAndBinaryBytesSurvive) {
  std::string v("Bearer ak\0x", 11);
  EXPECT_EQ(key_of(extract_api_key(Opt(v), none)), std::string("ak\0x", 4));
  std::string bin("\xff\xfe", 2);
  EXPECT_EQ(key_of(extract_api_key(none, Opt(bin))), bin);
}

// ---- randomized --------------------------------------------------------------------------

bool ws(char c) {
  return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' || c == '\f';
}

std::string trim_model(std::string s) {
  while (!s.empty() && ws(s.front()))
    s.erase(0, 1);
  while (!s.empty() && ws(s.back()))
    s.pop_back();
  return s;
}

// A straightforward reference model of the rules (see credentials.cpp).
std::string auth_candidate(const std::string& raw) {
  std::string t = trim_model(raw);
  if (t.size() >= 6) {
    std::string scheme = t.substr(0, 6);
    for (auto& c : scheme)
      c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    if (scheme == "bearer" && (t.size() == 6 || ws(t[6]))) return trim_model(t.substr(6));
  }
  return t;
}

std::string random_field(std::mt19937& rng) {
  static const char* kPieces[] = {
      "Bearer", "bearer", "BEARER",  "Basic",   "ak_", "ck_", " ",    "\t", "\r\n", "\v",
      "\f",     "x",      "ak_key1", "ak_key2", ":",   "\0",  "\xff", "B",  "ea"};
  std::string out;
  int parts = static_cast<int>(rng() % 7);
  for (int i = 0; i < parts; ++i) {
    switch (rng() % 3) {
      case 0: {
        auto* p = kPieces[rng() % (sizeof kPieces / sizeof *kPieces)];
        out += *p ? std::string(p) : std::string(1, '\0');
        break;
      }
      case 1:
        out.push_back(static_cast<char>(rng() % 256));
        break;
      default:
        out += "Bearer ";
        break;
    }
  }
  return out;
}

TEST(Credentials, RandomizedInvariants) {
  std::mt19937 rng(20240611);
  int keys = 0, missing = 0, conflicting = 0;
  for (int i = 0; i < 200000; ++i) {
    std::optional<std::string> a, x;
    if (rng() % 4) a = random_field(rng);
    if (rng() % 4) x = random_field(rng);
    if (rng() % 8 == 0 && a) x = trim_model(auth_candidate(*a));  // same key both ways
    auto r = extract_api_key(a ? Opt(*a) : none, x ? Opt(*x) : none);

    std::string ca = a ? auth_candidate(*a) : "";
    std::string cx = x ? trim_model(*x) : "";
    if (auto* key = std::get_if<std::string>(&r)) {
      ++keys;
      ASSERT_FALSE(key->empty());
      EXPECT_FALSE(ws(key->front()) || ws(key->back())) << *key;
      EXPECT_TRUE(*key == ca || *key == cx);
      if (!ca.empty() && !cx.empty()) {
        EXPECT_EQ(ca, cx);
      }
    } else if (std::get<CredentialError>(r) == CredentialError::missing) {
      ++missing;
      EXPECT_TRUE(ca.empty() && cx.empty());
    } else {
      ++conflicting;
      EXPECT_TRUE(!ca.empty() && !cx.empty() && ca != cx);
    }
  }
  // The generator reaches every outcome.
  EXPECT_GT(keys, 1000);
  EXPECT_GT(missing, 1000);
  EXPECT_GT(conflicting, 1000);
}

}  // namespace
}  // namespace cascade::auth
