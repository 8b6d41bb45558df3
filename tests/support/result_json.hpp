#pragma once
// A job result (SPEC §4) parsed for assertions in integration tests.
#include <simdjson.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace cascade::test {

struct ParsedResult {
  simdjson::dom::parser parser;
  simdjson::dom::element root;

  explicit ParsedResult(const std::string& json) { root = parser.parse(json); }

  std::int64_t status() { return root["status"].get_int64().value(); }
  // A number field, -1 when absent.
  std::int64_t num(const char* key) {
    std::int64_t v = 0;
    if (root[key].get(v)) return -1;
    return v;
  }
  // A string field, "" when absent.
  std::string str(const char* key) {
    std::string_view v;
    if (root[key].get(v)) return "";
    return std::string(v);
  }
  std::vector<std::string> via() {
    std::vector<std::string> out;
    simdjson::dom::array a;
    if (root["delivered_via"].get(a)) return out;
    for (auto v : a) out.emplace_back(std::string_view(v));
    return out;
  }
  simdjson::dom::array attempts() { return root["attempts"].get_array().value(); }
  simdjson::dom::element attempt(std::size_t i) { return root["attempts"].at(i).value(); }
  std::string attempt_str(std::size_t i, const char* key) {
    std::string_view v;
    if (attempt(i)[key].get(v)) return "";
    return std::string(v);
  }
  std::int64_t tries(std::size_t i) { return attempt(i)["tries"].get_int64().value(); }
  // A boolean of attempt i, false when absent.
  bool flag(std::size_t i, const char* key) {
    bool b = false;
    if (attempt(i)[key].get(b)) return false;
    return b;
  }
  // The error text of the first attempt ("" when there is none).
  std::string first_error() {
    simdjson::dom::array a;
    std::string_view v;
    if (root["attempts"].get(a) || a.size() == 0 || a.at(0)["error"].get(v)) return "";
    return std::string(v);
  }
};

}  // namespace cascade::test
