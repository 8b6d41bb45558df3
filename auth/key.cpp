#include "auth/key.hpp"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <sys/random.h>

#include <cerrno>
#include <cstdint>
#include <stdexcept>
#include <system_error>

namespace cascade::auth {
namespace {

constexpr std::string_view kAlphabet =
    "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
constexpr std::size_t kRandomChars = 32;   // 32 * log2(62) = 190.5 bits
constexpr std::size_t kChecksumChars = 6;  // 62^6 > 2^32
constexpr std::size_t kPrefixChars = 3;    // "ak_" / "ck_"
constexpr std::size_t kKeyChars = kPrefixChars + kRandomChars + kChecksumChars;
constexpr std::size_t kIdChars = 16;

std::string_view prefix_of(KeyKind kind) {
  return kind == KeyKind::api ? "ak_" : "ck_";
}

// Fills buf from the OS CSPRNG; throws when it is unavailable.
void os_random(unsigned char* buf, std::size_t n) {
  while (n > 0) {
    ssize_t got = ::getrandom(buf, n, 0);
    if (got < 0) {
      if (errno == EINTR) continue;
      throw std::system_error(errno, std::generic_category(), "getrandom");
    }
    buf += got;
    n -= static_cast<std::size_t>(got);
  }
}

// Appends n uniformly random base62 characters. Rejection sampling: bytes >= 248 (= 4 * 62)
// are discarded, so byte % 62 has no bias.
void append_random_base62(std::string& out, std::size_t n) {
  unsigned char buf[64];
  while (n > 0) {
    os_random(buf, sizeof buf);
    for (unsigned char b : buf) {
      if (b >= 248) continue;
      out.push_back(kAlphabet[b % 62]);
      if (--n == 0) break;
    }
  }
}

// CRC-32 as in zlib (reflected polynomial 0xEDB88320, init and final xor 0xFFFFFFFF).
constexpr std::array<std::uint32_t, 256> make_crc_table() {
  std::array<std::uint32_t, 256> table{};
  for (std::uint32_t i = 0; i < 256; ++i) {
    std::uint32_t c = i;
    for (int k = 0; k < 8; ++k)
      c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
    table[i] = c;
  }
  return table;
}
constexpr auto kCrcTable = make_crc_table();

std::uint32_t crc32(std::string_view data) {
  std::uint32_t c = 0xFFFFFFFFu;
  for (unsigned char b : data)
    c = kCrcTable[(c ^ b) & 0xFF] ^ (c >> 8);
  return c ^ 0xFFFFFFFFu;
}

// Fixed-width base62, most significant digit first.
std::array<char, kChecksumChars> checksum_of(std::string_view prefixed_random) {
  std::uint64_t v = crc32(prefixed_random);
  std::array<char, kChecksumChars> out{};
  for (std::size_t i = kChecksumChars; i-- > 0;) {
    out[i] = kAlphabet[v % 62];
    v /= 62;
  }
  return out;
}

bool in_alphabet(char c) {
  return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
}

}  // namespace

std::string generate_key(KeyKind kind) {
  std::string key(prefix_of(kind));
  key.reserve(kKeyChars);
  append_random_base62(key, kRandomChars);
  auto sum = checksum_of(key);
  key.append(sum.data(), sum.size());
  return key;
}

bool valid_key_format(std::string_view key, KeyKind kind) {
  if (key.size() != kKeyChars || key.substr(0, kPrefixChars) != prefix_of(kind)) return false;
  for (char c : key.substr(kPrefixChars))
    if (!in_alphabet(c)) return false;
  auto sum = checksum_of(key.substr(0, kPrefixChars + kRandomChars));
  return key.substr(kPrefixChars + kRandomChars) == std::string_view(sum.data(), sum.size());
}

Digest sha256(std::string_view data) {
  Digest d{};
  unsigned int len = 0;
  if (EVP_Digest(data.data(), data.size(), d.data(), &len, EVP_sha256(), nullptr) != 1 ||
      len != d.size()) {
    throw std::runtime_error("sha256: EVP_Digest failed");
  }
  return d;
}

std::string to_hex(const Digest& d) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(d.size() * 2);
  for (unsigned char b : d) {
    out.push_back(kHex[b >> 4]);
    out.push_back(kHex[b & 0xF]);
  }
  return out;
}

bool constant_time_equal(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) {
    // Lengths are not secret, contents are: do the same amount of work as a comparison of
    // a.size() bytes, independent of b's content, and fail.
    (void)CRYPTO_memcmp(a.data(), a.data(), a.size());
    return false;
  }
  return CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

std::string generate_id(std::string_view prefix) {
  std::string id(prefix);
  id.reserve(prefix.size() + 1 + kIdChars);
  id.push_back('_');
  append_random_base62(id, kIdChars);
  return id;
}

}  // namespace cascade::auth
