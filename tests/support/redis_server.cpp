#include "support/redis_server.hpp"

#include <signal.h>

#include <stdexcept>

namespace cascade::test {

RedisServer::RedisServer(std::vector<std::string> extra) : extra_(std::move(extra)) {
  port_ = free_port();
  launch();
}

RedisServer::~RedisServer() {
  stop();
}

void RedisServer::launch() {
  std::vector<std::string> argv = {"/usr/bin/redis-server",
                                   "--port",
                                   std::to_string(port_),
                                   "--bind",
                                   "127.0.0.1",
                                   "--save",
                                   "",
                                   "--appendonly",
                                   "no",
                                   "--dir",
                                   dir_.path(),
                                   "--loglevel",
                                   "notice"};
  argv.insert(argv.end(), extra_.begin(), extra_.end());
  process_ = std::make_unique<Process>(argv);
  // redis-server logs to stdout; this line means it accepts connections.
  if (!process_->wait_for_line("Ready to accept connections", std::chrono::seconds(20)))
    throw std::runtime_error("redis-server did not start on port " + std::to_string(port_));
}

void RedisServer::restart() {
  if (process_) {
    process_->signal(SIGKILL);
    process_->wait(std::chrono::seconds(10));
  }
  launch();
}

void RedisServer::stop() {
  if (process_) {
    process_->signal(SIGKILL);
    process_->wait(std::chrono::seconds(10));
    process_.reset();
  }
}

std::string RedisServer::url(int db) const {
  return "redis://127.0.0.1:" + std::to_string(port_) + "/" + std::to_string(db);
}

}  // namespace cascade::test
