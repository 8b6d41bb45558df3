#include "redis/script.hpp"

#include <openssl/sha.h>

#include "redis/connection.hpp"

namespace asio = boost::asio;

namespace cascade::redis {
namespace {

std::string sha1_hex(std::string_view s) {
  unsigned char digest[SHA_DIGEST_LENGTH];
  SHA1(reinterpret_cast<const unsigned char*>(s.data()), s.size(), digest);
  static constexpr char hex[] = "0123456789abcdef";
  std::string out;
  for (auto b : digest) {
    out.push_back(hex[b >> 4]);
    out.push_back(hex[b & 15]);
  }
  return out;
}

Command build(std::string verb, const std::string& script, const std::vector<std::string>& keys,
              const std::vector<std::string>& args) {
  Command c;
  c.reserve(3 + keys.size() + args.size());
  c.push_back(std::move(verb));
  c.push_back(script);
  c.push_back(std::to_string(keys.size()));
  c.insert(c.end(), keys.begin(), keys.end());
  c.insert(c.end(), args.begin(), args.end());
  return c;
}

}  // namespace

Script::Script(std::string_view source) : source_(source), sha1_(sha1_hex(source)) {}

asio::awaitable<Reply> Script::run(Connection& redis, std::vector<std::string> keys,
                                   std::vector<std::string> args) const {
  auto reply = co_await redis.exec(build("EVALSHA", sha1_, keys, args));
  if (reply.is_error() && reply.str.rfind("NOSCRIPT", 0) == 0)
    reply = co_await redis.exec(build("EVAL", source_, keys, args));
  co_return reply;
}

}  // namespace cascade::redis
