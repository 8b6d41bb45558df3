#include "util/url.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <cctype>
#include <charconv>

namespace cascade {

bool Url::loopback() const {
  // A name other than "localhost" resolves through DNS: "127.attacker.example" may point
  // anywhere, so only IP literals and localhost count (plain HTTP is allowed to them).
  std::string h = host;
  for (auto& c : h)
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (h == "localhost" || h == "localhost.") return true;
  if (h.size() > 2 && h.front() == '[' && h.back() == ']') h = h.substr(1, h.size() - 2);
  in_addr v4{};
  if (inet_pton(AF_INET, h.c_str(), &v4) == 1) return (ntohl(v4.s_addr) >> 24) == 127;
  in6_addr v6{};
  if (inet_pton(AF_INET6, h.c_str(), &v6) != 1) return false;
  if (IN6_IS_ADDR_LOOPBACK(&v6)) return true;
  return IN6_IS_ADDR_V4MAPPED(&v6) && v6.s6_addr[12] == 127;
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
  // Strict: a base URL is scheme, host, port and path, nothing that could smuggle a
  // header line, credentials or a different target past a reader of the setting.
  for (char c : text) {
    auto b = static_cast<unsigned char>(c);
    if (b <= 0x20 || b >= 0x7F) return fail("control characters, spaces and non-ASCII are not allowed");
    if (c == '\\') return fail("backslashes are not allowed");
  }
  if (text.find('?') != std::string_view::npos) return fail("a query (?...) is not allowed");
  if (text.find('#') != std::string_view::npos) return fail("a fragment (#...) is not allowed");
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
  if (authority.find('@') != std::string_view::npos)
    return fail("credentials (user@host) are not allowed in the URL");
  for (std::string_view rest_path = u.path; !rest_path.empty();) {
    rest_path.remove_prefix(1);  // the '/'
    auto segment = rest_path.substr(0, rest_path.find('/'));
    rest_path.remove_prefix(segment.size());
    std::string plain;  // with %2e decoded: "%2e%2E" is ".." to a server
    for (std::size_t i = 0; i < segment.size(); ++i) {
      if (segment[i] == '%' && i + 2 < segment.size() && segment[i + 1] == '2' &&
          (segment[i + 2] == 'e' || segment[i + 2] == 'E')) {
        plain += '.';
        i += 2;
      } else {
        plain += segment[i];
      }
    }
    if (plain == "." || plain == "..") return fail("'.' and '..' path segments are not allowed");
  }
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
  for (char c : host)
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '-' &&
        !(authority.front() == '[' && c == ':'))
      return fail("bad host");
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
