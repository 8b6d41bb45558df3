#include "util/url.hpp"

#include <charconv>

namespace cascade {

bool Url::loopback() const {
  return host == "localhost" || host == "::1" || host == "[::1]" || host.starts_with("127.");
}

std::string Url::origin() const {
  return scheme + "://" + host + ":" + std::to_string(port);
}

std::optional<Url> parse_url(std::string_view text, std::string* error) {
  auto fail = [&](const char* why) -> std::optional<Url> {
    if (error) *error = why;
    return std::nullopt;
  };
  Url u;
  auto sep = text.find("://");
  if (sep == std::string_view::npos) return fail("missing scheme (expected http:// or https://)");
  u.scheme = std::string(text.substr(0, sep));
  if (u.scheme != "http" && u.scheme != "https") return fail("scheme must be http or https");
  auto rest = text.substr(sep + 3);
  auto slash = rest.find('/');
  auto authority = rest.substr(0, slash);
  u.path = slash == std::string_view::npos ? "" : std::string(rest.substr(slash));
  while (!u.path.empty() && u.path.back() == '/')
    u.path.pop_back();
  if (authority.empty()) return fail("missing host");
  std::string_view host = authority, port;
  if (authority.front() == '[') {
    auto close = authority.find(']');
    if (close == std::string_view::npos) return fail("unterminated IPv6 address");
    host = authority.substr(1, close - 1);
    auto after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':') return fail("bad port");
      port = after.substr(1);
    }
  } else if (auto colon = authority.rfind(':'); colon != std::string_view::npos) {
    host = authority.substr(0, colon);
    port = authority.substr(colon + 1);
  }
  if (host.empty()) return fail("missing host");
  u.host = std::string(host);
  if (port.empty()) {
    u.port = u.tls() ? 443 : 80;
  } else {
    unsigned v = 0;
    auto [p, ec] = std::from_chars(port.data(), port.data() + port.size(), v);
    if (ec != std::errc() || p != port.data() + port.size() || v == 0 || v > 65535)
      return fail("bad port");
    u.port = static_cast<std::uint16_t>(v);
  }
  return u;
}

}  // namespace cascade
