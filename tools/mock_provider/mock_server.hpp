#pragma once
// The mock provider's HTTP/1.1 server: Boost.Beast over one single-threaded io_context,
// one coroutine per connection, MockCore for every decision.
#include "tools/mock_provider/options.hpp"

namespace cascade::mock {

// Listens on options.host:options.port, prints "listening on HOST:PORT" to stdout, and
// serves until SIGTERM/SIGINT. Returns the process exit status (0 after a signal, 1 when
// the address cannot be bound).
int run_server(const Options& options);

}  // namespace cascade::mock
