#pragma once
// RESP encoding and incremental decoding (hiredis's redisReader and
// redisFormatCommandArgv). Sans-IO: bytes in, replies out.
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "redis/reply.hpp"

namespace cascade::redis {

// Appends the RESP encoding of cmd to out.
void encode(std::string& out, const Command& cmd);

class Decoder {
 public:
  Decoder();
  ~Decoder();
  Decoder(const Decoder&) = delete;
  Decoder& operator=(const Decoder&) = delete;

  void feed(std::string_view bytes);
  // The next complete reply, nullopt when more bytes are needed. Throws Error on a
  // protocol error.
  std::optional<Reply> next();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace cascade::redis
