#pragma once
// Key format of SPEC §2: "<prefix>_<body>", prefix "ak" (API key) or "ck" (channel key),
// body = 32 random base62 characters + 6-character base62 checksum (CRC32 of prefix and
// random part). Pure: no I/O.
#include <array>
#include <optional>
#include <string>
#include <string_view>

namespace cascade::auth {

enum class KeyKind { api, channel };  // "ak" / "ck"

// A new key from the OS CSPRNG (getrandom), e.g. "ak_<32 random><6 checksum>".
std::string generate_key(KeyKind kind);

// True when `key` has the right prefix, length, alphabet and checksum. Garbage is
// rejected here, before any Redis I/O.
bool valid_key_format(std::string_view key, KeyKind kind);

using Digest = std::array<unsigned char, 32>;
Digest sha256(std::string_view data);
std::string to_hex(const Digest& d);
// Compares in time independent of where they differ.
bool constant_time_equal(std::string_view a, std::string_view b);

// A short random identifier for records (account ids "acc_...", key ids "key_...",
// channel ids "chk_..."): prefix + "_" + 16 base62 characters. Not a secret.
std::string generate_id(std::string_view prefix);

}  // namespace cascade::auth
