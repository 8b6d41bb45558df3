#include "redis/resp.hpp"

#include <hiredis/hiredis.h>

#include <cstdlib>
#include <vector>

namespace cascade::redis {

void encode(std::string& out, const Command& cmd) {
  // RESP arrays of bulk strings are simple enough to write directly; this matches
  // redisFormatCommandArgv byte for byte without a malloc per command.
  out += '*';
  out += std::to_string(cmd.size());
  out += "\r\n";
  for (const auto& arg : cmd) {
    out += '$';
    out += std::to_string(arg.size());
    out += "\r\n";
    out += arg;
    out += "\r\n";
  }
}

struct Decoder::Impl {
  redisReader* reader = redisReaderCreate();
  ~Impl() { redisReaderFree(reader); }
};

Decoder::Decoder() : impl_(std::make_unique<Impl>()) {
  if (!impl_->reader) throw Error("redisReaderCreate failed");
  // Keep the reader's buffer from being trimmed on every feed: we feed large chunks.
  impl_->reader->maxbuf = 0;
}

Decoder::~Decoder() = default;

void Decoder::feed(std::string_view bytes) {
  if (redisReaderFeed(impl_->reader, bytes.data(), bytes.size()) != REDIS_OK)
    throw Error("redis protocol error");
}

namespace {

Reply convert(const redisReply* r) {
  Reply out;
  switch (r->type) {
    case REDIS_REPLY_STRING:
      out.type = Reply::Type::string;
      out.str.assign(r->str, r->len);
      break;
    case REDIS_REPLY_STATUS:
      out.type = Reply::Type::status;
      out.str.assign(r->str, r->len);
      break;
    case REDIS_REPLY_ERROR:
      out.type = Reply::Type::error;
      out.str.assign(r->str, r->len);
      break;
    case REDIS_REPLY_INTEGER:
      out.type = Reply::Type::integer;
      out.integer = r->integer;
      break;
    case REDIS_REPLY_ARRAY:
      out.type = Reply::Type::array;
      out.elements.reserve(r->elements);
      for (size_t i = 0; i < r->elements; ++i)
        out.elements.push_back(convert(r->element[i]));
      break;
    default:
      out.type = Reply::Type::nil;
  }
  return out;
}

}  // namespace

std::optional<Reply> Decoder::next() {
  void* raw = nullptr;
  if (redisReaderGetReply(impl_->reader, &raw) != REDIS_OK) {
    std::string why = impl_->reader->errstr;
    throw Error("redis protocol error: " + why);
  }
  if (!raw) return std::nullopt;
  auto* reply = static_cast<redisReply*>(raw);
  Reply out = convert(reply);
  freeReplyObject(reply);
  return out;
}

}  // namespace cascade::redis
