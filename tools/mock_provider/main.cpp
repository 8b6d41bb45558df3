// cascade-mock-provider: a loopback stand-in for the Telegram, WAHA, WhatsApp Cloud API and
// Postmark HTTP APIs, with fault injection. See --help.
#include <cstdio>
#include <iostream>
#include <string_view>
#include <vector>

#include "tools/mock_provider/mock_server.hpp"
#include "tools/mock_provider/options.hpp"

int main(int argc, char** argv) {
  std::vector<std::string_view> args(argv + 1, argv + argc);
  auto parsed = cascade::mock::parse_options(args);
  if (!parsed.options) {
    std::fprintf(stderr, "cascade-mock-provider: %s\n", parsed.error.c_str());
    return 2;
  }
  if (parsed.options->help) {
    std::cout << cascade::mock::usage() << std::flush;
    return 0;
  }
  try {
    return cascade::mock::run_server(*parsed.options);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "cascade-mock-provider: %s\n", e.what());
    return 1;
  }
}
