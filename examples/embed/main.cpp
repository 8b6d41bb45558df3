// A backend process that runs the Cascade engine on its own io_context: it consumes the
// jobs of <prefix>:jobs from Redis like `cascaded` does, until SIGINT/SIGTERM.
//
//   embed [--print-whatsapp]
//
// CASCADE_REDIS_URL picks the Redis (default redis://127.0.0.1:6379/0). With
// --print-whatsapp the "whatsapp" channel type is replaced by a custom Channel that only
// prints the message (a stand-in for your own gateway client): the way to plug in a type.
#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>

#include <csignal>
#include <cstdlib>
#include <exception>
#include <iostream>
#include <memory>
#include <string_view>

#include "channels/channel.hpp"
#include "channels/outcome.hpp"
#include "engine/config.hpp"
#include "engine/engine.hpp"

namespace {

// A Channel makes one attempt per call and never throws for provider or network failures:
// it returns a classified Outcome (sent, retry_after, transient, permanent), and the
// engine's retry policy and cascade do the rest.
class PrintingChannel final : public cascade::Channel {
 public:
  boost::asio::awaitable<cascade::Outcome> send(const cascade::SendRequest& request) override {
    if (request.recipient.empty())
      co_return cascade::Outcome::permanent("no recipient", cascade::Outcome::Cause::recipient);
    std::cout << "job " << request.job_id << ": to " << request.recipient << ": "
              << request.message->text << std::endl;
    co_return cascade::Outcome::sent("printed-" + request.job_id);
  }
};

}  // namespace

int main(int argc, char** argv) {
  cascade::EngineConfig config;  // every field has a working default
  if (const char* url = std::getenv("CASCADE_REDIS_URL")) config.redis_url = url;
  config.concurrency = 256;

  auto registry = cascade::ChannelRegistry::with_builtins();
  if (argc > 1 && std::string_view(argv[1]) == "--print-whatsapp") {
    // Called once per event loop (config.threads); the context offers the engine's
    // HttpClient (ctx.http) for channels that speak HTTP.
    registry.add("whatsapp", [](cascade::ChannelContext&) -> std::unique_ptr<cascade::Channel> {
      return std::make_unique<PrintingChannel>();
    });
  }

  try {
    boost::asio::io_context io;
    cascade::Engine engine(io, config, std::move(registry));
    boost::asio::signal_set signals(io, SIGINT, SIGTERM);
    signals.async_wait([&](const boost::system::error_code& ec, int) {
      if (ec) return;
      // Stop reading, let in-flight jobs finish (config.drain_timeout), then end the loop.
      engine.stop([&] { io.stop(); });
    });
    engine.start();
    io.run();
    auto stats = engine.stats();
    std::cout << stats.jobs << " jobs: " << stats.delivered << " delivered, " << stats.failed
              << " failed, " << stats.rejected << " rejected" << std::endl;
  } catch (const std::exception& e) {
    std::cerr << "embed: " << e.what() << std::endl;
    return 1;
  }
  return 0;
}
