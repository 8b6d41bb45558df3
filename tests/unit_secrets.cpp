// The sealing of provider credentials (auth/secrets.hpp): AES-256-GCM under the master
// key, bound to its channel key and setting, with key rotation. Pure: no Redis.
#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>

#include "auth/secrets.hpp"

using namespace cascade::auth;

namespace {

const char* kKeyA = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
const char* kKeyB = "f0e0d0c0b0a090807060504030201000ffeeddccbbaa99887766554433221100";

KeyRing ring(const std::string& text) {
  return KeyRing::parse(text);
}

}  // namespace

// Sealed, it opens to the same text with the same associated data; it shows nothing of it.
TEST(Secrets, RoundTrip) {
  auto r = ring(kKeyA);
  auto aad = secret_aad("chk_1", "bot_token");
  auto sealed = r.seal("123456:bot-token-text", aad);
  EXPECT_TRUE(sealed.starts_with("v1:" + r.current_id() + ":")) << sealed;
  EXPECT_EQ(sealed.find("bot-token"), std::string::npos);
  EXPECT_TRUE(is_sealed(sealed));
  EXPECT_EQ(r.open(sealed, aad), "123456:bot-token-text");
  EXPECT_EQ(r.open(r.seal("", aad), aad), "");
  // A fresh nonce each time: the same secret never seals to the same text.
  EXPECT_NE(r.seal("same", aad), r.seal("same", aad));
}

// The key id is the first 8 hex characters of the SHA-256 of the key's 32 bytes.
TEST(Secrets, KeyIdIsAShortDigestOfTheKey) {
  auto r = ring(kKeyA);
  EXPECT_EQ(r.current_id().size(), 8u);
  EXPECT_NE(r.current_id(), ring(kKeyB).current_id());
  EXPECT_EQ(r.current_id(), ring(std::string("  ") + kKeyA + "  \n").current_id());
}

// Moved to another channel key or another setting, a ciphertext no longer opens.
TEST(Secrets, WrongAssociatedDataFails) {
  auto r = ring(kKeyA);
  auto sealed = r.seal("secret", secret_aad("chk_1", "bot_token"));
  EXPECT_FALSE(r.open(sealed, secret_aad("chk_2", "bot_token")));
  EXPECT_FALSE(r.open(sealed, secret_aad("chk_1", "access_token")));
  // The separator keeps "chk_1"+"xbot_token" apart from "chk_1x"+"bot_token".
  EXPECT_NE(secret_aad("chk_1", "xbot_token"), secret_aad("chk_1x", "bot_token"));
}

// Any altered byte (nonce, ciphertext, tag, key id, form) fails; nothing opens as garbage.
TEST(Secrets, TamperedFails) {
  auto r = ring(kKeyA);
  auto aad = secret_aad("chk_1", "smtp_pass");
  auto sealed = r.seal("p4ssw0rd", aad);
  auto body_at = sealed.find(':', 3) + 1;
  for (std::size_t i = body_at; i < sealed.size(); ++i) {
    auto bad = sealed;
    bad[i] = bad[i] == 'A' ? 'B' : 'A';
    EXPECT_FALSE(r.open(bad, aad)) << "byte " << i;
  }
  EXPECT_FALSE(r.open(sealed.substr(0, sealed.size() - 4), aad));
  EXPECT_FALSE(r.open("v1:" + std::string(8, '0') + sealed.substr(body_at - 1), aad));
  EXPECT_FALSE(r.open("v1:nonsense", aad));
  EXPECT_FALSE(r.open("p4ssw0rd", aad)) << "plaintext is not sealed";
  EXPECT_FALSE(ring(kKeyB).open(sealed, aad)) << "another master key";
}

// Rotation: with the new key first and the old one after it, what the old key sealed
// still opens, new seals use the new key, and only those count as current.
TEST(Secrets, RotationOldKeyOpensNewKeySeals) {
  auto old_ring = ring(kKeyA);
  auto aad = secret_aad("chk_1", "access_token");
  auto old_sealed = old_ring.seal("waba-token", aad);

  auto both = ring(std::string("# rotated\n") + kKeyB + "\n\n" + kKeyA + "\n");
  EXPECT_EQ(both.size(), 2u);
  EXPECT_EQ(both.current_id(), ring(kKeyB).current_id());
  EXPECT_EQ(both.open(old_sealed, aad), "waba-token");
  EXPECT_FALSE(both.sealed_under_current(old_sealed));
  auto new_sealed = both.seal("waba-token", aad);
  EXPECT_TRUE(both.sealed_under_current(new_sealed));
  EXPECT_FALSE(old_ring.open(new_sealed, aad)) << "the old key alone cannot open it";
  EXPECT_EQ(ring(kKeyB).open(new_sealed, aad), "waba-token") << "the old key can be dropped";
}

// A malformed file is refused without quoting its content; a missing one says how to make one.
TEST(Secrets, BadKeyFilesAreRefused) {
  EXPECT_THROW(ring(""), SecretError);
  EXPECT_THROW(ring("# only a comment\n"), SecretError);
  EXPECT_THROW(ring(std::string(kKeyA).substr(0, 62)), SecretError);
  try {
    ring(std::string(kKeyA).substr(0, 63) + "g");
    FAIL();
  } catch (const SecretError& e) {
    EXPECT_EQ(std::string(e.what()).find("0001020304"), std::string::npos) << e.what();
  }
  try {
    KeyRing::load("/nonexistent/master.key");
    FAIL();
  } catch (const SecretError& e) {
    EXPECT_NE(std::string(e.what()).find("openssl rand -hex 32"), std::string::npos) << e.what();
  }
  EXPECT_EQ(load_key_ring(""), nullptr);
}

TEST(Secrets, WhichSettingsAreSecret) {
  for (const char* s : {"bot_token", "access_token", "gateway_key", "server_token", "smtp_pass"})
    EXPECT_TRUE(is_secret_setting(s)) << s;
  for (const char* s : {"api_base", "rate", "session", "from", "smtp_host", "smtp_port",
                        "smtp_user", "smtp_tls", "phone_number_id", "on_unknown", "provider"})
    EXPECT_FALSE(is_secret_setting(s)) << s;
}
