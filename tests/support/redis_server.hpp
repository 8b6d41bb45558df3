#pragma once
// A real redis-server on a free loopback port, for integration tests.
#include <memory>
#include <string>
#include <vector>

#include "support/process.hpp"

namespace cascade::test {

class RedisServer {
 public:
  // extra: more redis-server arguments, e.g. {"--requirepass", "s3cret"}.
  explicit RedisServer(std::vector<std::string> extra = {});
  ~RedisServer();
  std::uint16_t port() const { return port_; }
  std::string url(int db = 0) const;
  // Kills the server (SIGKILL) and starts it again on the same port.
  void restart();
  void stop();

 private:
  void launch();
  std::vector<std::string> extra_;
  std::uint16_t port_ = 0;
  TempDir dir_;
  std::unique_ptr<Process> process_;
};

}  // namespace cascade::test
