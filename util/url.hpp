#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace cascade {

// An http(s) base URL split into the parts a client needs. `path` has no trailing '/'.
struct Url {
  std::string scheme;  // "http" or "https"
  std::string host;
  std::uint16_t port = 0;
  std::string path;

  bool tls() const { return scheme == "https"; }
  bool loopback() const;
  // scheme://host:port, for logs: never includes the path (it may carry a token).
  std::string origin() const;
};

// Parses "http://host[:port][/path]". Returns nullopt (and sets *error) when malformed.
std::optional<Url> parse_url(std::string_view text, std::string* error = nullptr);

}  // namespace cascade
