// libFuzzer target: credential extraction from the authorization / x-api-key fields.
// The first byte says which fields are present; the rest is split at the first NUL.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <optional>
#include <string_view>

#include "auth/credentials.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  std::string_view rest(reinterpret_cast<const char*>(data + 1), size - 1);
  auto nul = rest.find('\0');
  std::string_view a = rest.substr(0, nul);
  std::string_view b = nul == std::string_view::npos ? std::string_view{} : rest.substr(nul + 1);
  std::optional<std::string_view> authorization, x_api_key;
  if (data[0] & 1) authorization = a;
  if (data[0] & 2) x_api_key = b;
  auto r = cascade::auth::extract_api_key(authorization, x_api_key);
  if (auto* key = std::get_if<std::string>(&r)) {
    if (key->empty()) std::abort();
    auto ws = [](char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; };
    if (ws(key->front()) || ws(key->back())) std::abort();
  } else if (std::get<cascade::auth::CredentialError>(r) ==
             cascade::auth::CredentialError::conflicting) {
    if (!authorization || !x_api_key) std::abort();
  }
  return 0;
}
