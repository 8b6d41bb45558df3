#pragma once
// Small JSON output helpers. Parsing is simdjson's job; writing is string appends.
#include <cstdint>
#include <string>
#include <string_view>

namespace cascade::json {

// Appends s as a quoted JSON string. Invalid UTF-8 bytes are replaced by U+FFFD so
// the output is always valid JSON, whatever a provider or a producer sent us.
void append_string(std::string& out, std::string_view s);
std::string quote(std::string_view s);

// Appends a double with up to one decimal, as used for attempt timings ("ms": 412.5).
void append_ms(std::string& out, double ms);

// True when s is valid UTF-8 (no overlongs, no surrogates).
bool valid_utf8(std::string_view s);
// Number of Unicode code points in valid UTF-8 s.
std::size_t utf8_length(std::string_view s);

// A tiny streaming object builder: writer.field("a", 1).field("b", "x").close().
class ObjectWriter {
 public:
  explicit ObjectWriter(std::string& out) : out_(out) { out_.push_back('{'); }
  ObjectWriter& field(std::string_view key, std::string_view value);
  ObjectWriter& field(std::string_view key, const char* value) {
    return field(key, std::string_view(value));
  }
  ObjectWriter& field(std::string_view key, std::int64_t value);
  ObjectWriter& field(std::string_view key, int value) {
    return field(key, static_cast<std::int64_t>(value));
  }
  ObjectWriter& field(std::string_view key, bool value);
  // Inserts already-serialized JSON (an object, an array) as the value.
  ObjectWriter& raw(std::string_view key, std::string_view json);
  void close() { out_.push_back('}'); }

 private:
  void key(std::string_view k);
  std::string& out_;
  bool first_ = true;
};

}  // namespace cascade::json
