#pragma once
// Provider credentials at rest (SPEC §2): the secret settings of a channel key (bot
// tokens, access tokens, gateway keys, server tokens, SMTP passwords) are sealed with
// AES-256-GCM under a master key the operator keeps outside Redis. Pure: no Redis.
//
// Master key file: one key per line, 64 hex characters (32 random bytes: `openssl rand
// -hex 32`); blank lines and '#' comments ignored. The first key is current (seals);
// the others only open, so a key can be rotated: add the new one first, run `cascadectl
// channel rekey --all`, then drop the old one.
//
// Sealed form: "v1:<key id>:<base64 of nonce(12) | ciphertext | tag(16)>"; the key id is
// the first 8 hex characters of the SHA-256 of the key. The associated data binds the
// ciphertext to its channel key id and setting name: moved to another key or setting it
// no longer opens.
#include <array>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace cascade::auth {

class SecretError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// How to make a master key, for error messages.
extern const char* const kMasterKeyHowTo;

// True for the settings that hold provider credentials.
bool is_secret_setting(std::string_view name);
// True when a stored value is in the sealed form (else it is legacy plaintext).
bool is_sealed(std::string_view stored);
// The associated data of a setting of channel key `channel_key_id`.
std::string secret_aad(std::string_view channel_key_id, std::string_view setting);

class KeyRing {
 public:
  // Parses a master key file's text. Throws SecretError (never quoting the text).
  static KeyRing parse(std::string_view text);
  // Reads and parses `path`; the message of a SecretError names the path and says how to
  // make a key.
  static KeyRing load(const std::string& path);

  KeyRing(const KeyRing&) = default;
  KeyRing(KeyRing&&) = default;
  ~KeyRing();

  // Id of the current key (the first in the file).
  const std::string& current_id() const { return keys_.front().id; }
  std::size_t size() const { return keys_.size(); }

  // Seals under the current key with a fresh random nonce.
  std::string seal(std::string_view plaintext, std::string_view aad) const;
  // The plaintext, or nullopt when the form is wrong, the key is not in the ring, or the
  // ciphertext, tag or associated data do not match.
  std::optional<std::string> open(std::string_view sealed, std::string_view aad) const;
  // True when `stored` is sealed under the current key (rekey leaves it alone).
  bool sealed_under_current(std::string_view stored) const;

 private:
  struct Key {
    std::array<unsigned char, 32> bytes{};
    std::string id;
  };
  KeyRing() = default;
  std::vector<Key> keys_;
};

// nullptr for an empty path; else the loaded ring (throws SecretError).
std::shared_ptr<const KeyRing> load_key_ring(const std::string& path);

}  // namespace cascade::auth
