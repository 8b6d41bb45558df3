#pragma once
// Command line of cascade-mock-provider.
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace cascade::mock {

struct Options {
  std::string host = "127.0.0.1";  // a numeric loopback address ("127.x.y.z" or "::1")
  std::uint16_t port = 0;          // 0: the OS picks a free port
  std::size_t record_limit = 1'000'000;
  bool verbose = false;  // one stderr line per provider request
  // Stop (as on SIGTERM) when the process that started us dies: a crashed test must not
  // leave a server behind holding its output pipes.
  bool exit_with_parent = false;
  // HTTPS: both set (PEM files; the certificate file may hold the chain) or both empty.
  std::string tls_cert;
  std::string tls_key;
  // A second, plain-HTTP listener serving only the control API (/__mock/*), so that tests
  // can drive an HTTPS mock without a TLS client. Unset: no control listener.
  std::optional<std::string> control_host;
  std::uint16_t control_port = 0;
  bool help = false;
};

struct OptionsParse {
  std::optional<Options> options;
  std::string error;  // set when options is nullopt
};

// Parses the arguments after argv[0]. Non-loopback listen addresses are an error: the
// mock accepts any credential and must never be reachable from another machine.
OptionsParse parse_options(const std::vector<std::string_view>& args);

// "127.0.0.1:8080", "[::1]:8080".
std::string format_address(std::string_view host, std::uint16_t port);

// The --help text.
std::string usage();

}  // namespace cascade::mock
