#pragma once
// The mock provider's HTTP/1.1 server (HTTPS with --tls-cert/--tls-key): Boost.Beast over
// one single-threaded io_context, one coroutine per connection, MockCore for every decision.
#include "tools/mock_provider/options.hpp"

namespace cascade::mock {

// Listens on options.host:options.port, prints "listening on HOST:PORT" (plus " (https)"
// with TLS, then "control on HOST:PORT" with --control-listen) to stdout, and serves until
// SIGTERM/SIGINT. Returns the process exit status (0 after a signal, 1 when an address
// cannot be bound, 2 for a bad address or unusable TLS files).
int run_server(const Options& options);

}  // namespace cascade::mock
