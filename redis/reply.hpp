#pragma once
// A RESP reply, decoupled from hiredis so callers never see its types.
#include <cstdint>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace cascade::redis {

struct Reply {
  enum class Type { nil, status, error, integer, string, array };
  Type type = Type::nil;
  std::string str;  // status, error and string replies
  std::int64_t integer = 0;
  std::vector<Reply> elements;

  bool is_nil() const { return type == Type::nil; }
  bool is_error() const { return type == Type::error; }
  bool is_array() const { return type == Type::array; }
  // Bulk or status string; "" for nil.
  const std::string& text() const { return str; }
};

// A connection-level failure (connect, I/O, timeout, protocol). A Redis error reply is
// not an exception: it is a Reply of Type::error.
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

using Command = std::vector<std::string>;

// Builds a command from any string-like arguments: cmd("HGET", key, "field").
// Use it instead of braced lists inside coroutines: g++ 12 rejects a braced list of
// string literals in a coroutine ("array used as initializer").
template <class... Args>
Command cmd(Args&&... args) {
  Command c;
  c.reserve(sizeof...(args));
  (c.emplace_back(std::forward<Args>(args)), ...);
  return c;
}

template <class... Commands>
std::vector<Command> batch(Commands&&... commands) {
  std::vector<Command> b;
  b.reserve(sizeof...(commands));
  (b.push_back(std::forward<Commands>(commands)), ...);
  return b;
}

}  // namespace cascade::redis
