#pragma once
// A multiplexed, pipelined Redis connection. Any coroutine on the connection's executor
// may co_await exec(); requests issued while a write is in flight are coalesced into
// the next single write, and replies are matched to waiters in order.
//
// Single-threaded: use it from one io_context thread (the engine's shape).
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "redis/reply.hpp"

namespace cascade::redis {

struct Config {
  std::string host = "127.0.0.1";
  std::uint16_t port = 6379;
  int db = 0;
  std::string username;  // ACL user, optional
  std::string password;  // secret: never logged
  std::chrono::milliseconds connect_timeout{3000};
  std::chrono::milliseconds request_timeout{5000};

  // host:port/db, for logs (no credentials).
  std::string describe() const;
};

// Parses redis://[[user]:password@]host[:port][/db]. Returns nullopt and sets *error.
std::optional<Config> parse_url(std::string_view url, std::string* error = nullptr);

class Connection {
 public:
  Connection(boost::asio::any_io_executor ex, Config config);
  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  // Connects (TCP, AUTH, SELECT) if not connected; concurrent callers share one attempt.
  // Throws Error on failure. exec() calls this itself.
  boost::asio::awaitable<void> connect();

  // Sends one command and returns its reply. Throws Error on connection failure or when
  // no reply arrives within `timeout` (default: config.request_timeout); in both cases
  // the connection is closed, failing every request in flight on it, and the next
  // exec() reconnects.
  boost::asio::awaitable<Reply> exec(Command cmd,
                                     std::optional<std::chrono::milliseconds> timeout = {});
  // Several commands in one write; replies in the same order.
  boost::asio::awaitable<std::vector<Reply>> exec_batch(
      std::vector<Command> cmds, std::optional<std::chrono::milliseconds> timeout = {});

  bool connected() const;
  void close();

  // Pub/sub: after SUBSCRIBE, "message" pushes go to this handler instead of a waiter.
  // Use a dedicated connection for subscribing (Redis allows little else on it).
  void set_push_handler(std::function<void(const Reply&)> handler);
  // Called whenever the connection is lost or closed (to drop state that relied on it).
  void set_disconnect_handler(std::function<void()> handler);
  const Config& config() const;
  // Number of successful connects (for tests of reconnect behaviour).
  std::uint64_t connects() const;

 private:
  struct Impl;
  std::shared_ptr<Impl> impl_;
};

}  // namespace cascade::redis
