#pragma once
// A Lua script run by its SHA-1 (EVALSHA), falling back to EVAL when the server does not
// know it yet (first use, a restart, SCRIPT FLUSH). For changes that must be atomic:
// one script runs alone on the server.
#include <boost/asio/awaitable.hpp>

#include <string>
#include <string_view>
#include <vector>

#include "redis/reply.hpp"

namespace cascade::redis {

class Connection;

class Script {
 public:
  explicit Script(std::string_view source);
  const std::string& source() const { return source_; }
  const std::string& sha1() const { return sha1_; }

  // The script's reply; an error reply (from redis.error_reply or a failed call) is
  // returned as a Reply of Type::error, not thrown. Throws Error on connection failure.
  boost::asio::awaitable<Reply> run(Connection& redis, std::vector<std::string> keys,
                                    std::vector<std::string> args) const;

 private:
  std::string source_;
  std::string sha1_;
};

}  // namespace cascade::redis
