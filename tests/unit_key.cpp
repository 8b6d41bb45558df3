#include <gtest/gtest.h>

#include <array>
#include <map>
#include <string>
#include <unordered_set>

#include "auth/key.hpp"

namespace cascade::auth {
namespace {

constexpr std::string_view kAlphabet =
    "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

bool base62(std::string_view s) {
  return s.find_first_not_of(kAlphabet) == std::string_view::npos;
}

// Independent bitwise CRC-32 (zlib) to cross-check the checksum.
std::uint32_t crc32_bitwise(std::string_view s) {
  std::uint32_t c = 0xFFFFFFFFu;
  for (unsigned char b : s) {
    c ^= b;
    for (int k = 0; k < 8; ++k)
      c = (c >> 1) ^ (0xEDB88320u & (0u - (c & 1u)));
  }
  return ~c;
}

std::string base62_6(std::uint64_t v) {
  std::string out(6, '0');
  for (int i = 5; i >= 0; --i) {
    out[static_cast<std::size_t>(i)] = kAlphabet[v % 62];
    v /= 62;
  }
  return out;
}

TEST(Key, Format) {
  for (auto kind : {KeyKind::api, KeyKind::channel}) {
    std::string key = generate_key(kind);
    ASSERT_EQ(key.size(), 41u);
    EXPECT_EQ(key.substr(0, 3), kind == KeyKind::api ? "ak_" : "ck_");
    EXPECT_TRUE(base62(key.substr(3)));
    EXPECT_EQ(key.substr(35), base62_6(crc32_bitwise(key.substr(0, 35))));
    EXPECT_TRUE(valid_key_format(key, kind));
  }
}

TEST(Key, Crc32KnownVector) {
  // The zlib CRC-32 check value; checks our independent reference too.
  EXPECT_EQ(crc32_bitwise("123456789"), 0xCBF43926u);
  // A key built by hand with a known checksum validates.
  std::string body = "ak_" + std::string(32, 'A');
  EXPECT_TRUE(valid_key_format(body + base62_6(crc32_bitwise(body)), KeyKind::api));
  EXPECT_FALSE(valid_key_format(body + base62_6(crc32_bitwise(body) ^ 1), KeyKind::api));
}

TEST(Key, TenThousandKeysAreUniqueAndWellSpread) {
  std::unordered_set<std::string> keys;
  std::map<char, int> counts;
  for (int i = 0; i < 10000; ++i) {
    auto key = generate_key(i % 2 ? KeyKind::api : KeyKind::channel);
    ASSERT_TRUE(valid_key_format(key, i % 2 ? KeyKind::api : KeyKind::channel)) << key;
    EXPECT_TRUE(keys.insert(key.substr(3)).second) << key;
    for (char c : key.substr(3, 32))
      ++counts[c];
  }
  // 320,000 random characters over 62 symbols: ~5161 each. Every symbol is used and none
  // is far off (a modulo bias of 256 % 62 would skew the first 8 symbols by ~+25%).
  ASSERT_EQ(counts.size(), 62u);
  for (auto [c, n] : counts) {
    EXPECT_GT(n, 4700) << c;
    EXPECT_LT(n, 5650) << c;
  }
}

TEST(Key, ChecksumCatchesEverySingleCharacterSubstitution) {
  for (int sample = 0; sample < 20; ++sample) {
    std::string key = generate_key(KeyKind::api);
    for (std::size_t pos = 3; pos < key.size(); ++pos) {
      for (char c : kAlphabet) {
        if (c == key[pos]) continue;
        std::string bad = key;
        bad[pos] = c;
        EXPECT_FALSE(valid_key_format(bad, KeyKind::api)) << bad;
      }
    }
  }
}

TEST(Key, ChecksumCatchesAdjacentTranspositions) {
  std::string key = generate_key(KeyKind::channel);
  for (std::size_t pos = 3; pos + 1 < key.size(); ++pos) {
    if (key[pos] == key[pos + 1]) continue;
    std::string bad = key;
    std::swap(bad[pos], bad[pos + 1]);
    EXPECT_FALSE(valid_key_format(bad, KeyKind::channel)) << bad;
  }
}

TEST(Key, WrongPrefixOrKind) {
  std::string api = generate_key(KeyKind::api);
  std::string channel = generate_key(KeyKind::channel);
  EXPECT_FALSE(valid_key_format(api, KeyKind::channel));
  EXPECT_FALSE(valid_key_format(channel, KeyKind::api));
  // Same random part and checksum, other prefix: the checksum covers the prefix too.
  EXPECT_FALSE(valid_key_format("ck" + api.substr(2), KeyKind::channel));
  EXPECT_FALSE(valid_key_format("AK" + api.substr(2), KeyKind::api));
  EXPECT_FALSE(valid_key_format("ak-" + api.substr(3), KeyKind::api));
  EXPECT_FALSE(valid_key_format("xx" + api.substr(2), KeyKind::api));
}

TEST(Key, Lengths) {
  std::string key = generate_key(KeyKind::api);
  EXPECT_FALSE(valid_key_format("", KeyKind::api));
  EXPECT_FALSE(valid_key_format("ak_", KeyKind::api));
  EXPECT_FALSE(valid_key_format(key.substr(0, 40), KeyKind::api));
  EXPECT_FALSE(valid_key_format(key + "0", KeyKind::api));
  EXPECT_FALSE(valid_key_format(" " + key, KeyKind::api));
  EXPECT_FALSE(valid_key_format(key + " ", KeyKind::api));
  EXPECT_FALSE(valid_key_format(key + std::string(1, '\0'), KeyKind::api));
  EXPECT_FALSE(valid_key_format(std::string(10000, 'a'), KeyKind::api));
}

TEST(Key, Alphabet) {
  std::string key = generate_key(KeyKind::api);
  for (char c : {'-', '_', '+', '/', '=', ' ', '\0', '\xC3'}) {
    std::string bad = key;
    bad[10] = c;
    EXPECT_FALSE(valid_key_format(bad, KeyKind::api));
  }
}

TEST(Key, Sha256KnownVectors) {
  EXPECT_EQ(to_hex(sha256("abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(to_hex(sha256("")), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(to_hex(sha256("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq")),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  EXPECT_EQ(to_hex(sha256(std::string_view("a\0b", 3))), to_hex(sha256(std::string("a\0b", 3))));
  EXPECT_NE(to_hex(sha256(std::string_view("a\0b", 3))), to_hex(sha256("a")));
}

TEST(Key, ConstantTimeEqual) {
  EXPECT_TRUE(constant_time_equal("", ""));
  EXPECT_TRUE(constant_time_equal("abc", "abc"));
  EXPECT_FALSE(constant_time_equal("abc", "abd"));
  EXPECT_FALSE(constant_time_equal("abc", "xbc"));
  EXPECT_FALSE(constant_time_equal("abc", "ab"));
  EXPECT_FALSE(constant_time_equal("ab", "abc"));
  EXPECT_FALSE(constant_time_equal("", "a"));
  EXPECT_FALSE(constant_time_equal("a", ""));
  EXPECT_TRUE(constant_time_equal(std::string_view("a\0b", 3), std::string_view("a\0b", 3)));
  EXPECT_FALSE(constant_time_equal(std::string_view("a\0b", 3), std::string_view("a\0c", 3)));
  auto d1 = to_hex(sha256("x")), d2 = to_hex(sha256("y"));
  EXPECT_TRUE(constant_time_equal(d1, to_hex(sha256("x"))));
  EXPECT_FALSE(constant_time_equal(d1, d2));
}

TEST(Key, GenerateId) {
  std::unordered_set<std::string> ids;
  for (int i = 0; i < 1000; ++i) {
    auto id = generate_id("acc");
    ASSERT_EQ(id.size(), 4u + 16u);
    EXPECT_EQ(id.substr(0, 4), "acc_");
    EXPECT_TRUE(base62(id.substr(4)));
    EXPECT_TRUE(ids.insert(id).second);
  }
  EXPECT_EQ(generate_id("key").substr(0, 4), "key_");
  EXPECT_EQ(generate_id("chk").size(), 20u);
}

}  // namespace
}  // namespace cascade::auth
