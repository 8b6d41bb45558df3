#include "auth/secrets.hpp"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include <cctype>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <iterator>

#include "auth/key.hpp"

namespace cascade::auth {

const char* const kMasterKeyHowTo =
    "make one with: openssl rand -hex 32 > master.key && chmod 600 master.key, then pass "
    "--master-key-file master.key (or CASCADE_MASTER_KEY_FILE=master.key)";

namespace {

constexpr std::string_view kVersion = "v1:";
constexpr std::size_t kNonce = 12;
constexpr std::size_t kTag = 16;

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

std::string base64(const unsigned char* data, std::size_t n) {
  std::string out(4 * ((n + 2) / 3), '\0');
  auto len = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()), data,
                             static_cast<int>(n));
  out.resize(static_cast<std::size_t>(len));
  return out;
}

std::optional<std::string> unbase64(std::string_view text) {
  if (text.empty() || text.size() % 4 != 0) return std::nullopt;
  std::string out(text.size() / 4 * 3, '\0');
  auto len = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                             reinterpret_cast<const unsigned char*>(text.data()),
                             static_cast<int>(text.size()));
  if (len < 0) return std::nullopt;
  // EVP_DecodeBlock counts the padding as zero bytes.
  std::size_t pad = text.ends_with("==") ? 2 : text.ends_with('=') ? 1 : 0;
  out.resize(static_cast<std::size_t>(len) - pad);
  return out;
}

struct CipherCtx {
  EVP_CIPHER_CTX* p = EVP_CIPHER_CTX_new();
  ~CipherCtx() { EVP_CIPHER_CTX_free(p); }
};

}  // namespace

bool is_secret_setting(std::string_view name) {
  return name == "bot_token" || name == "access_token" || name == "gateway_key" ||
         name == "server_token" || name == "smtp_pass";
}

bool is_sealed(std::string_view stored) {
  return stored.starts_with(kVersion);
}

std::string secret_aad(std::string_view channel_key_id, std::string_view setting) {
  std::string aad(channel_key_id);
  aad += '\0';
  aad += setting;
  return aad;
}

KeyRing::~KeyRing() {
  for (auto& k : keys_)
    OPENSSL_cleanse(k.bytes.data(), k.bytes.size());
}

KeyRing KeyRing::parse(std::string_view text) {
  KeyRing ring;
  int line_no = 0;
  while (!text.empty()) {
    auto nl = text.find('\n');
    auto line = text.substr(0, nl);
    text = nl == std::string_view::npos ? std::string_view{} : text.substr(nl + 1);
    ++line_no;
    while (!line.empty() && std::isspace(static_cast<unsigned char>(line.back())))
      line.remove_suffix(1);
    while (!line.empty() && std::isspace(static_cast<unsigned char>(line.front())))
      line.remove_prefix(1);
    if (line.empty() || line.front() == '#') continue;
    Key k;
    bool ok = line.size() == 64;
    for (std::size_t i = 0; ok && i < 32; ++i) {
      int hi = hex_value(line[2 * i]), lo = hex_value(line[2 * i + 1]);
      ok = hi >= 0 && lo >= 0;
      if (ok) k.bytes[i] = static_cast<unsigned char>(hi * 16 + lo);
    }
    if (!ok) {
      OPENSSL_cleanse(k.bytes.data(), k.bytes.size());
      throw SecretError("master key file line " + std::to_string(line_no) +
                        " is not 64 hex characters (32 bytes)");
    }
    auto digest = sha256(std::string_view(reinterpret_cast<const char*>(k.bytes.data()), 32));
    k.id = to_hex(digest).substr(0, 8);
    ring.keys_.push_back(std::move(k));
  }
  if (ring.keys_.empty()) throw SecretError("master key file holds no key");
  return ring;
}

KeyRing KeyRing::load(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f)
    throw SecretError("cannot read master key file " + path + ": " + std::strerror(errno) +
                      "; " + kMasterKeyHowTo);
  std::string text(std::istreambuf_iterator<char>(f), {});
  try {
    auto ring = parse(text);
    OPENSSL_cleanse(text.data(), text.size());
    return ring;
  } catch (const SecretError& e) {
    OPENSSL_cleanse(text.data(), text.size());
    throw SecretError(path + ": " + e.what() + "; " + kMasterKeyHowTo);
  }
}

std::string KeyRing::seal(std::string_view plaintext, std::string_view aad) const {
  const auto& key = keys_.front();
  std::string blob(kNonce + plaintext.size() + kTag, '\0');
  auto* out = reinterpret_cast<unsigned char*>(blob.data());
  if (RAND_bytes(out, kNonce) != 1) throw SecretError("seal: no random nonce");
  CipherCtx ctx;
  int len = 0;
  bool ok = ctx.p &&
            EVP_EncryptInit_ex(ctx.p, EVP_aes_256_gcm(), nullptr, key.bytes.data(), out) == 1 &&
            EVP_EncryptUpdate(ctx.p, nullptr, &len, reinterpret_cast<const unsigned char*>(aad.data()),
                              static_cast<int>(aad.size())) == 1 &&
            EVP_EncryptUpdate(ctx.p, out + kNonce, &len,
                              reinterpret_cast<const unsigned char*>(plaintext.data()),
                              static_cast<int>(plaintext.size())) == 1 &&
            EVP_EncryptFinal_ex(ctx.p, out + kNonce + len, &len) == 1 &&
            EVP_CIPHER_CTX_ctrl(ctx.p, EVP_CTRL_GCM_GET_TAG, kTag,
                                out + kNonce + plaintext.size()) == 1;
  if (!ok) throw SecretError("seal: AES-256-GCM failed");
  std::string sealed(kVersion);
  sealed += key.id;
  sealed += ':';
  sealed += base64(out, blob.size());
  return sealed;
}

std::optional<std::string> KeyRing::open(std::string_view sealed, std::string_view aad) const {
  if (!is_sealed(sealed)) return std::nullopt;
  auto rest = sealed.substr(kVersion.size());
  auto colon = rest.find(':');
  if (colon == std::string_view::npos) return std::nullopt;
  auto id = rest.substr(0, colon);
  const Key* key = nullptr;
  for (const auto& k : keys_)
    if (k.id == id) key = &k;
  if (!key) return std::nullopt;
  auto blob = unbase64(rest.substr(colon + 1));
  if (!blob || blob->size() < kNonce + kTag) return std::nullopt;
  const auto* in = reinterpret_cast<const unsigned char*>(blob->data());
  auto n = blob->size() - kNonce - kTag;
  std::string plain(n, '\0');
  auto* out = reinterpret_cast<unsigned char*>(plain.data());
  std::array<unsigned char, kTag> tag{};
  std::memcpy(tag.data(), in + kNonce + n, kTag);
  CipherCtx ctx;
  int len = 0;
  bool ok = ctx.p &&
            EVP_DecryptInit_ex(ctx.p, EVP_aes_256_gcm(), nullptr, key->bytes.data(), in) == 1 &&
            EVP_DecryptUpdate(ctx.p, nullptr, &len, reinterpret_cast<const unsigned char*>(aad.data()),
                              static_cast<int>(aad.size())) == 1 &&
            EVP_DecryptUpdate(ctx.p, out, &len, in + kNonce, static_cast<int>(n)) == 1 &&
            EVP_CIPHER_CTX_ctrl(ctx.p, EVP_CTRL_GCM_SET_TAG, kTag, tag.data()) == 1 &&
            EVP_DecryptFinal_ex(ctx.p, out + len, &len) == 1;
  if (!ok) {
    OPENSSL_cleanse(plain.data(), plain.size());
    return std::nullopt;
  }
  return plain;
}

bool KeyRing::sealed_under_current(std::string_view stored) const {
  auto prefix = std::string(kVersion) + current_id() + ":";
  return stored.starts_with(prefix);
}

std::shared_ptr<const KeyRing> load_key_ring(const std::string& path) {
  if (path.empty()) return nullptr;
  return std::make_shared<const KeyRing>(KeyRing::load(path));
}

}  // namespace cascade::auth
