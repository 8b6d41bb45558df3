#pragma once
// simdjson On-Demand helpers shared by the mock's pure parts (request and rule parsing).
// Internal to tools/mock_provider: include only from its .cpp files.
#include <simdjson.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "tools/mock_provider/provider.hpp"

namespace cascade::mock {

struct JsonScratch::State {
  simdjson::ondemand::parser parser;
  std::string padded;
};

namespace detail {

// Copies `text` into `padded` (reused across calls, so no allocation once warm) and
// returns a view with the padding simdjson needs after the input.
inline simdjson::padded_string_view pad(std::string& padded, std::string_view text) {
  if (padded.capacity() < text.size() + simdjson::SIMDJSON_PADDING)
    padded.reserve(text.size() + simdjson::SIMDJSON_PADDING);
  padded.assign(text.data(), text.size());
  return simdjson::padded_string_view(padded.data(), padded.size(), padded.capacity());
}

inline std::string_view trim_token(std::string_view s) {
  while (!s.empty() &&
         (s.back() == ' ' || s.back() == '\n' || s.back() == '\r' || s.back() == '\t'))
    s.remove_suffix(1);
  return s;
}

// Calls f(key, value) for each member of `object`; false on a parse error or when f
// returns false. Views handed to f stay valid until the parser parses another document.
template <class F>
bool for_each_field(simdjson::ondemand::object object, F&& f) {
  for (auto member : object) {
    simdjson::ondemand::field field;
    if (std::move(member).get(field) != simdjson::SUCCESS) return false;
    std::string_view key;
    if (field.unescaped_key().get(key) != simdjson::SUCCESS) return false;
    if (!f(key, field.value())) return false;
  }
  return true;
}

// Parses `text` as a JSON object and calls f(key, value) for each member. False when the
// text is not a well-formed JSON object or f returns false.
template <class F>
bool for_each_member(JsonScratch& scratch, std::string_view text, F&& f) {
  auto& state = scratch.state();
  simdjson::ondemand::document doc;
  if (state.parser.iterate(pad(state.padded, text)).get(doc) != simdjson::SUCCESS) return false;
  simdjson::ondemand::object object;
  if (doc.get_object().get(object) != simdjson::SUCCESS) return false;
  // simdjson 3.0's On-Demand document cannot tell trailing bytes apart; they are ignored.
  return for_each_field(object, f);
}

enum class Kind { string, number, other, null };

// Reads a scalar as text: strings unescaped, numbers as their JSON token ("123", "-1.5").
// Returns the kind read; `out` is set for string and number.
inline std::optional<Kind> scalar_text(simdjson::ondemand::value& value, std::string& out) {
  simdjson::ondemand::json_type type;
  if (value.type().get(type) != simdjson::SUCCESS) return std::nullopt;
  switch (type) {
    case simdjson::ondemand::json_type::string: {
      std::string_view s;
      if (value.get_string().get(s) != simdjson::SUCCESS) return std::nullopt;
      out.assign(s);
      return Kind::string;
    }
    case simdjson::ondemand::json_type::number: {
      out.assign(trim_token(value.raw_json_token()));
      return Kind::number;
    }
    case simdjson::ondemand::json_type::null:
      return Kind::null;
    default:
      return Kind::other;
  }
}

// An integer member; nullopt when the value is not an integer.
inline std::optional<std::int64_t> integer(simdjson::ondemand::value& value) {
  std::int64_t n = 0;
  if (value.get_int64().get(n) != simdjson::SUCCESS) return std::nullopt;
  return n;
}

}  // namespace detail
}  // namespace cascade::mock
