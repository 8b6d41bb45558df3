#include "auth/credentials.hpp"

// Decisions (SPEC §1, §2 verdicts 1–2):
// - Whitespace (space, \t, \r, \n, \v, \f) around a field value, and between "Bearer" and
//   the key, is ignored. A field that is absent, empty or only whitespace is absent.
// - `authorization: Bearer` with nothing after it is absent for that field (verdict 1).
// - `authorization` with any other scheme ("Basic xyz", "Token k") is not rewritten: the
//   trimmed value itself is the candidate key, which then fails the key format check as
//   "Invalid API key" (verdict 3); against a present x-api-key it differs, so the job is a
//   conflict (verdict 2: both present and different). A bare value with no scheme at all
//   ("ak_...") is likewise passed on verbatim, so a correct key still authenticates.
// - `x-api-key` is the key itself: its trimmed value, never stripped of a scheme.
// - Both fields present: equal candidates → that key; different → conflicting.

namespace cascade::auth {
namespace {

bool is_space(char c) {
  return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' || c == '\f';
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && is_space(s.front()))
    s.remove_prefix(1);
  while (!s.empty() && is_space(s.back()))
    s.remove_suffix(1);
  return s;
}

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    char x = a[i], y = b[i];
    if (x >= 'A' && x <= 'Z') x = static_cast<char>(x - 'A' + 'a');
    if (y >= 'A' && y <= 'Z') y = static_cast<char>(y - 'A' + 'a');
    if (x != y) return false;
  }
  return true;
}

// The key candidate of the authorization field; empty when the field counts as absent.
std::string_view from_authorization(std::string_view value) {
  value = trim(value);
  constexpr std::string_view kScheme = "bearer";
  if (value.size() >= kScheme.size() && iequals(value.substr(0, kScheme.size()), kScheme) &&
      (value.size() == kScheme.size() || is_space(value[kScheme.size()]))) {
    return trim(value.substr(kScheme.size()));
  }
  return value;  // another scheme, or none: passed on as is (see above)
}

}  // namespace

std::variant<std::string, CredentialError> extract_api_key(
    std::optional<std::string_view> authorization, std::optional<std::string_view> x_api_key) {
  std::string_view a = authorization ? from_authorization(*authorization) : std::string_view{};
  std::string_view x = x_api_key ? trim(*x_api_key) : std::string_view{};
  if (a.empty() && x.empty()) return CredentialError::missing;
  if (a.empty()) return std::string(x);
  if (x.empty()) return std::string(a);
  if (a != x) return CredentialError::conflicting;
  return std::string(a);
}

}  // namespace cascade::auth
