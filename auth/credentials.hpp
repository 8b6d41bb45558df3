#pragma once
// Extracts the API key from a job entry's credential fields (SPEC §1, verdicts 1–2).
#include <optional>
#include <string>
#include <string_view>
#include <variant>

namespace cascade::auth {

enum class CredentialError {
  missing,      // 401 "API key is missing"
  conflicting,  // 400 "Invalid request: conflicting credentials"
};

// `authorization` is the value of the "authorization" field ("Bearer <key>"), `x_api_key`
// the value of "x-api-key"; nullopt when the field is absent. The scheme "Bearer" is
// matched case-insensitively and surrounding whitespace is ignored.
std::variant<std::string, CredentialError> extract_api_key(
    std::optional<std::string_view> authorization, std::optional<std::string_view> x_api_key);

}  // namespace cascade::auth
