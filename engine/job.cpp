#include "engine/job.hpp"

#include <arpa/inet.h>
#include <simdjson.h>

#include <array>
#include <charconv>
#include <cstdint>
#include <optional>
#include <string>
#include <unordered_set>
#include <utility>

#include "util/json.hpp"

// Parsing strategy: simdjson On-Demand, one forward pass over the body. Every value of the
// job is consumed with the getter its type calls for, so the pass also validates the syntax
// of everything it reads; `metadata` is taken as raw JSON text (verbatim copy) and then
// re-parsed on its own to validate it and reject duplicate keys. When the pass stops at a
// rule violation, the rest of the body has not been looked at: the body is then re-walked
// for syntax only, so that "not JSON" always wins over a rule violation (and
// JobError::unreadable is reliable).
//
// Reasons are self-contained sentences that start with the JSON path ("keys.email.fallback
// must be a boolean"); body-level problems start with "body".

namespace cascade {
namespace {

namespace od = simdjson::ondemand;
using simdjson::error_code;
using Fail = std::optional<JobError>;

constexpr std::size_t kShownKeyChars = 64;     // unknown keys are quoted up to this length
constexpr std::size_t kMaxSubjectChars = 998;  // RFC 5322 line length
constexpr std::size_t kDefaultSubjectChars = 78;
constexpr std::size_t kMaxMetadataDepth = 64;  // nesting levels inside `metadata`
constexpr std::size_t kMaxRecheckDepth = 256;  // syntax re-walk; deeper is left unchecked

constexpr std::array<std::string_view, 4> kChannelNames = {"whatsapp", "waba", "telegram", "email"};

JobError violation(std::string field, std::string reason) {
  return JobError{std::move(field), std::move(reason), false};
}

// The body is not JSON (or not UTF-8): a whole-body error, `unreadable`.
JobError syntax_error(error_code e) {
  std::string reason;
  switch (e) {
    case simdjson::EMPTY:
      reason = "body is empty: expected a JSON object";
      break;
    case simdjson::UTF8_ERROR:
      reason = "body is not valid UTF-8";
      break;
    case simdjson::DEPTH_ERROR:
      reason = "body is not valid JSON: it is nested too deeply";
      break;
    case simdjson::UNCLOSED_STRING:
      reason = "body is not valid JSON: a string is not closed";
      break;
    case simdjson::STRING_ERROR:
      reason = "body is not valid JSON: a string has an invalid escape sequence";
      break;
    case simdjson::UNESCAPED_CHARS:
      reason = "body is not valid JSON: a string contains an unescaped control character";
      break;
    case simdjson::NUMBER_ERROR:
      reason = "body is not valid JSON: a number is malformed";
      break;
    case simdjson::T_ATOM_ERROR:
    case simdjson::F_ATOM_ERROR:
    case simdjson::N_ATOM_ERROR:
      reason = "body is not valid JSON: expected true, false or null";
      break;
    case simdjson::TRAILING_CONTENT:
      reason = "body is not valid JSON: unexpected content after the top-level object";
      break;
    case simdjson::INCOMPLETE_ARRAY_OR_OBJECT:
      reason =
          "body is not valid JSON: an object or array is not closed, or something follows the "
          "top-level object";
      break;
    case simdjson::TAPE_ERROR:
      reason = "body is not valid JSON: misplaced or missing brackets, commas, colons or quotes";
      break;
    default:
      reason = std::string("body is not valid JSON (") + simdjson::error_message(e) + ")";
      break;
  }
  return JobError{"", std::move(reason), true};
}

// A key as shown in a path: at most kShownKeyChars code points; "" for the empty key.
std::string shown(std::string_view key) {
  if (key.empty()) return "\"\"";
  std::size_t chars = 0, i = 0;
  for (; i < key.size(); ++i) {
    if ((static_cast<unsigned char>(key[i]) & 0xC0) != 0x80) {
      if (chars == kShownKeyChars) return std::string(key.substr(0, i)) + "...";
      ++chars;
    }
  }
  return std::string(key);
}

std::string join(std::string_view parent, std::string_view key) {
  std::string out(parent);
  out += '.';
  out += shown(key);
  return out;
}

Fail type_of(od::value& v, od::json_type& t) {
  if (auto e = v.type().get(t)) return syntax_error(e);
  return std::nullopt;
}

Fail open_object(od::value& v, const std::string& path, od::object& obj) {
  od::json_type t;
  if (auto f = type_of(v, t)) return f;
  if (t != od::json_type::object) return violation(path, path + " must be an object");
  if (auto e = v.get_object().get(obj)) return syntax_error(e);
  return std::nullopt;
}

Fail read_string(od::value& v, const std::string& path, std::string& out) {
  od::json_type t;
  if (auto f = type_of(v, t)) return f;
  if (t != od::json_type::string) return violation(path, path + " must be a string");
  std::string_view s;
  if (auto e = v.get_string().get(s)) return syntax_error(e);
  // The document's bytes are validated by simdjson; this catches \u escapes that decode to
  // something that is not UTF-8 (lone surrogates).
  if (!json::valid_utf8(s)) {
    return violation(path, path + " must be valid UTF-8 (it has an unpaired \\u surrogate escape)");
  }
  out.assign(s);
  return std::nullopt;
}

// Calls fn(key, value) for every field of obj, key unescaped.
template <class Fn>
Fail for_each_field(od::object& obj, Fn&& fn) {
  for (auto result : obj) {
    od::field f;
    if (auto e = std::move(result).get(f)) return syntax_error(e);
    std::string_view key;
    if (auto e = f.unescaped_key().get(key)) return syntax_error(e);
    if (auto failed = fn(key, f.value())) return failed;
  }
  return std::nullopt;
}

// Tracks fields already seen in one object (known names only: unknown ones fail at once).
template <std::size_t N>
struct Seen {
  const std::array<std::string_view, N>& names;
  std::array<bool, N> seen{};
  // Index of key in names, or N when unknown.
  std::size_t index(std::string_view key) const {
    for (std::size_t i = 0; i < N; ++i)
      if (names[i] == key) return i;
    return N;
  }
};

std::string allowed(std::string_view path, std::string_view key, std::string_view list) {
  return join(path, key) + " is not a known field (allowed: " + std::string(list) + ")";
}

// ---- recipients --------------------------------------------------------------------------

bool is_digit(char c) {
  return c >= '0' && c <= '9';
}
bool is_alpha(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
}
bool is_alnum(char c) {
  return is_digit(c) || is_alpha(c);
}

bool valid_e164(std::string_view s) {
  if (s.size() < 9 || s.size() > 16 || s[0] != '+' || s[1] < '1' || s[1] > '9') return false;
  for (std::size_t i = 2; i < s.size(); ++i)
    if (!is_digit(s[i])) return false;
  return true;
}

bool valid_telegram(std::string_view s) {
  if (!s.empty() && s[0] == '@') {
    auto name = s.substr(1);
    if (name.size() < 5 || name.size() > 32 || !is_alpha(name[0])) return false;
    for (char c : name)
      if (!is_alnum(c) && c != '_') return false;
    return true;
  }
  // Numeric chat id: optional '-', digits without a leading zero, fits int64.
  auto digits = (!s.empty() && s[0] == '-') ? s.substr(1) : s;
  if (digits.empty() || digits[0] == '0') return false;
  for (char c : digits)
    if (!is_digit(c)) return false;
  std::int64_t value = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), value);
  return ec == std::errc() && end == s.data() + s.size();
}

bool atext(char c) {
  if (is_alnum(c) || static_cast<unsigned char>(c) >= 0x80) return true;  // UTF-8 (RFC 6531)
  return std::string_view("!#$%&'*+-/=?^_`{|}~").find(c) != std::string_view::npos;
}

bool valid_local_part(std::string_view local) {
  // dot-atom only: quoted local parts are legal but not accepted here.
  if (local.front() == '.' || local.back() == '.') return false;
  for (std::size_t i = 0; i < local.size(); ++i) {
    if (local[i] == '.') {
      if (local[i + 1] == '.') return false;
    } else if (!atext(local[i])) {
      return false;
    }
  }
  return true;
}

bool valid_domain(std::string_view domain) {
  if (domain.empty()) return false;
  if (domain.front() == '[') {
    if (domain.size() < 3 || domain.back() != ']') return false;
    std::string literal(domain.substr(1, domain.size() - 2));
    unsigned char buf[16];
    if (literal.rfind("IPv6:", 0) == 0) return inet_pton(AF_INET6, literal.c_str() + 5, buf) == 1;
    return inet_pton(AF_INET, literal.c_str(), buf) == 1;
  }
  if (domain.size() > 253) return false;
  std::size_t labels = 0;
  bool last_all_digits = false;
  std::size_t start = 0;
  while (true) {
    auto dot = domain.find('.', start);
    auto label = domain.substr(start, dot == std::string_view::npos ? dot : dot - start);
    if (label.empty() || label.size() > 63 || label.front() == '-' || label.back() == '-')
      return false;
    last_all_digits = true;
    for (char c : label) {
      if (!is_alnum(c) && c != '-' && static_cast<unsigned char>(c) < 0x80) return false;
      if (!is_digit(c)) last_all_digits = false;
    }
    ++labels;
    if (dot == std::string_view::npos) break;
    start = dot + 1;
  }
  return labels >= 2 && !last_all_digits;
}

// Empty when s is acceptable, else the reason.
std::string email_problem(std::string_view s) {
  static const std::string kPath = "to.email";
  if (s.size() > 254) return kPath + " must be at most 254 characters";
  auto at = s.rfind('@');
  if (at == std::string_view::npos || at == 0 || at > 64) {
    if (at != std::string_view::npos && at > 64)
      return kPath + " must have at most 64 characters before the @";
    return kPath + " must be an email address like name@example.com";
  }
  if (!valid_local_part(s.substr(0, at)) || !valid_domain(s.substr(at + 1)))
    return kPath +
           " must be an email address like name@example.com (no spaces or quotes, a domain "
           "with a dot or an [address literal])";
  return {};
}

// ---- sections ----------------------------------------------------------------------------

Fail parse_channel(od::value& v, std::string_view name, ChannelUse& use) {
  static constexpr std::array<std::string_view, 3> kFields = {"token", "fallback",
                                                              "fallback_sequence"};
  const std::string path = "keys." + std::string(name);
  od::object obj;
  {
    od::json_type t;
    if (auto f = type_of(v, t)) return f;
    if (t != od::json_type::object)
      return violation(path, path + " must be an object like {\"token\": \"ck_...\"}");
    if (auto e = v.get_object().get(obj)) return syntax_error(e);
  }
  use.channel = std::string(name);
  Seen<3> seen{kFields};
  bool has_sequence = false;
  std::int64_t sequence = 0;
  auto failed = for_each_field(obj, [&](std::string_view key, od::value& value) -> Fail {
    auto i = seen.index(key);
    if (i == kFields.size())
      return violation(join(path, key), allowed(path, key, "token, fallback, fallback_sequence"));
    auto field = join(path, key);
    if (seen.seen[i]) return violation(field, field + " appears more than once");
    seen.seen[i] = true;
    od::json_type t;
    if (auto f = type_of(value, t)) return f;
    if (i == 0) {
      if (auto f = read_string(value, field, use.token)) return f;
      if (use.token.empty()) return violation(field, field + " must not be empty");
    } else if (i == 1) {
      if (t != od::json_type::boolean) return violation(field, field + " must be a boolean");
      if (auto e = value.get_bool().get(use.fallback)) return syntax_error(e);
    } else {
      auto range = violation(field, field + " must be an integer from 1 to 100");
      if (t != od::json_type::number) return range;
      auto e = value.get_int64().get(sequence);
      if (e == simdjson::INCORRECT_TYPE || e == simdjson::NUMBER_OUT_OF_RANGE) return range;
      if (e) return syntax_error(e);
      if (sequence < 1 || sequence > 100) return range;
      has_sequence = true;
    }
    return std::nullopt;
  });
  if (failed) return failed;
  if (!seen.seen[0]) return violation(path + ".token", path + ".token is required");
  if (has_sequence && !use.fallback) {
    return violation(path + ".fallback_sequence",
                     path + ".fallback_sequence is only allowed with \"fallback\": true");
  }
  use.fallback_sequence = use.fallback ? (has_sequence ? static_cast<int>(sequence) : 1) : 0;
  return std::nullopt;
}

Fail parse_keys(od::value& v, Job& job) {
  od::object obj;
  if (auto f = open_object(v, "keys", obj)) return f;
  Seen<4> seen{kChannelNames};
  auto failed = for_each_field(obj, [&](std::string_view key, od::value& value) -> Fail {
    auto i = seen.index(key);
    auto field = join("keys", key);
    if (i == kChannelNames.size()) {
      return violation(
          field, field + " is not a supported channel (use whatsapp, waba, telegram or email)");
    }
    if (seen.seen[i]) return violation(field, field + " appears more than once");
    seen.seen[i] = true;
    ChannelUse use;
    if (auto f = parse_channel(value, key, use)) return f;
    job.channels.push_back(std::move(use));
    return std::nullopt;
  });
  if (failed) return failed;
  if (job.channels.empty()) {
    return violation("keys",
                     "keys must name at least one channel (whatsapp, waba, telegram or email)");
  }
  return std::nullopt;
}

Fail parse_to(od::value& v, Recipients& to) {
  static constexpr std::array<std::string_view, 3> kFields = {"phone", "telegram", "email"};
  od::object obj;
  if (auto f = open_object(v, "to", obj)) return f;
  Seen<3> seen{kFields};
  return for_each_field(obj, [&](std::string_view key, od::value& value) -> Fail {
    auto i = seen.index(key);
    if (i == kFields.size())
      return violation(join("to", key), allowed("to", key, "phone, telegram, email"));
    auto field = join("to", key);
    if (seen.seen[i]) return violation(field, field + " appears more than once");
    seen.seen[i] = true;
    if (i == 0) {
      if (auto f = read_string(value, field, to.phone)) return f;
      if (!valid_e164(to.phone)) {
        return violation(field, field +
                                    " must be an E.164 phone number: '+' then 8 to 15 digits, "
                                    "the first not 0 (e.g. +33612345678)");
      }
    } else if (i == 1) {
      if (auto f = read_string(value, field, to.telegram)) return f;
      if (!valid_telegram(to.telegram)) {
        return violation(field, field +
                                    " must be a numeric chat id (e.g. \"123456789\" or "
                                    "\"-1001234567890\") or an @username of 5 to 32 letters, "
                                    "digits or underscores starting with a letter");
      }
    } else {
      if (auto f = read_string(value, field, to.email)) return f;
      if (auto problem = email_problem(to.email); !problem.empty())
        return violation(field, std::move(problem));
    }
    return std::nullopt;
  });
}

Fail parse_message(od::value& v, Message& message, bool& has_text, const JobLimits& limits) {
  static constexpr std::array<std::string_view, 3> kFields = {"text", "subject", "html"};
  od::object obj;
  if (auto f = open_object(v, "message", obj)) return f;
  Seen<3> seen{kFields};
  auto failed = for_each_field(obj, [&](std::string_view key, od::value& value) -> Fail {
    auto i = seen.index(key);
    if (i == kFields.size())
      return violation(join("message", key), allowed("message", key, "text, subject, html"));
    auto field = join("message", key);
    if (seen.seen[i]) return violation(field, field + " appears more than once");
    seen.seen[i] = true;
    if (i == 0) {
      if (auto f = read_string(value, field, message.text)) return f;
      auto chars = json::utf8_length(message.text);
      if (chars == 0) return violation(field, field + " must not be empty");
      if (chars > limits.max_text_chars) {
        return violation(field, field + " must be at most " +
                                    std::to_string(limits.max_text_chars) + " characters (it has " +
                                    std::to_string(chars) + ")");
      }
      has_text = true;
    } else if (i == 1) {
      if (auto f = read_string(value, field, message.subject)) return f;
      if (message.subject.find_first_of("\r\n") != std::string::npos)
        return violation(field, field + " must not contain line breaks");
      if (json::utf8_length(message.subject) > kMaxSubjectChars) {
        return violation(
            field, field + " must be at most " + std::to_string(kMaxSubjectChars) + " characters");
      }
    } else {
      if (auto f = read_string(value, field, message.html)) return f;
    }
    return std::nullopt;
  });
  if (failed) return failed;
  if (!has_text) return violation("message.text", "message.text is required");
  return std::nullopt;
}

Fail parse_metadata(od::value& v, std::string& out, const JobLimits& limits) {
  od::object obj;
  if (auto f = open_object(v, "metadata", obj)) return f;
  std::string_view raw;
  if (auto e = obj.raw_json().get(raw)) return syntax_error(e);
  // raw_json may include the whitespace that follows the closing brace.
  while (!raw.empty() && raw.back() != '}')
    raw.remove_suffix(1);
  if (raw.size() > limits.max_metadata_bytes) {
    return violation("metadata", "metadata must be at most " +
                                     std::to_string(limits.max_metadata_bytes) +
                                     " bytes of JSON (it has " + std::to_string(raw.size()) + ")");
  }
  out.assign(raw);
  return std::nullopt;
}

// ---- generic walk (metadata validation, syntax re-check) ---------------------------------

struct Walker {
  bool check_duplicates = false;
  std::size_t max_depth = 0;
  std::string root;  // path of the walked object, for depth errors
  std::string path;  // current path
};

bool json_number(std::string_view s) {
  std::size_t i = 0, n = s.size();
  auto digits = [&] {
    auto start = i;
    while (i < n && is_digit(s[i]))
      ++i;
    return i > start;
  };
  if (i < n && s[i] == '-') ++i;
  if (i < n && s[i] == '0') {
    ++i;
  } else if (!digits()) {
    return false;
  }
  if (i < n && s[i] == '.') {
    ++i;
    if (!digits()) return false;
  }
  if (i < n && (s[i] == 'e' || s[i] == 'E')) {
    ++i;
    if (i < n && (s[i] == '+' || s[i] == '-')) ++i;
    if (!digits()) return false;
  }
  return i == n;
}

std::string_view trim_json_ws(std::string_view s) {
  while (!s.empty() &&
         (s.back() == ' ' || s.back() == '\t' || s.back() == '\n' || s.back() == '\r'))
    s.remove_suffix(1);
  return s;
}

Fail walk_object(od::object& obj, Walker& w, std::size_t depth);
Fail walk_array(od::array& arr, Walker& w, std::size_t depth);

Fail walk_value(od::value& v, Walker& w, std::size_t depth) {
  od::json_type t;
  if (auto f = type_of(v, t)) return f;
  switch (t) {
    case od::json_type::object: {
      od::object obj;
      if (auto e = v.get_object().get(obj)) return syntax_error(e);
      return walk_object(obj, w, depth + 1);
    }
    case od::json_type::array: {
      od::array arr;
      if (auto e = v.get_array().get(arr)) return syntax_error(e);
      return walk_array(arr, w, depth + 1);
    }
    case od::json_type::string: {
      std::string_view s;
      if (auto e = v.get_string().get(s)) return syntax_error(e);
      return std::nullopt;
    }
    default: {
      // number, true, false, null: check the token itself (big numbers are valid JSON too).
      std::string_view token = trim_json_ws(v.raw_json_token());
      if (t == od::json_type::number) {
        if (!json_number(token)) return syntax_error(simdjson::NUMBER_ERROR);
      } else if (t == od::json_type::boolean) {
        if (token != "true" && token != "false") return syntax_error(simdjson::T_ATOM_ERROR);
      } else if (token != "null") {
        return syntax_error(simdjson::N_ATOM_ERROR);
      }
      return std::nullopt;
    }
  }
}

Fail too_deep(const Walker& w) {
  return violation(w.root,
                   w.root + " is nested deeper than " + std::to_string(w.max_depth) + " levels");
}

Fail walk_object(od::object& obj, Walker& w, std::size_t depth) {
  if (depth > w.max_depth) return too_deep(w);
  std::unordered_set<std::string_view> keys;  // views into the parser's string buffer
  for (auto result : obj) {
    od::field f;
    if (auto e = std::move(result).get(f)) return syntax_error(e);
    std::string_view key;
    if (auto e = f.unescaped_key().get(key)) return syntax_error(e);
    auto mark = w.path.size();
    w.path += '.';
    w.path += shown(key);
    if (w.check_duplicates && !keys.insert(key).second)
      return violation(w.path, w.path + " appears more than once");
    if (auto failed = walk_value(f.value(), w, depth)) return failed;
    w.path.resize(mark);
  }
  return std::nullopt;
}

Fail walk_array(od::array& arr, Walker& w, std::size_t depth) {
  if (depth > w.max_depth) return too_deep(w);
  std::size_t index = 0;
  for (auto result : arr) {
    od::value v;
    if (auto e = std::move(result).get(v)) return syntax_error(e);
    auto mark = w.path.size();
    w.path += '[' + std::to_string(index++) + ']';
    if (auto failed = walk_value(v, w, depth)) return failed;
    w.path.resize(mark);
  }
  return std::nullopt;
}

// After the top-level value: anything but the end of the input is a syntax error.
Fail check_at_end(od::document& doc) {
  const char* at = nullptr;
  auto e = doc.current_location().get(at);
  if (e == simdjson::OUT_OF_BOUNDS) return std::nullopt;
  return syntax_error(e ? e : simdjson::TRAILING_CONTENT);
}

od::parser& thread_parser() {
  thread_local od::parser parser;
  return parser;
}

// Walks a whole object document (the body, or a metadata copy).
Fail walk_document(const simdjson::padded_string& text, Walker& w) {
  od::document doc;
  if (auto e = thread_parser().iterate(text).get(doc)) return syntax_error(e);
  od::json_type t;
  if (auto e = doc.type().get(t)) return syntax_error(e);
  if (t != od::json_type::object) return JobError{"", "body must be a JSON object", true};
  od::object obj;
  if (auto e = doc.get_object().get(obj)) return syntax_error(e);
  w.path = w.root;
  if (auto failed = walk_object(obj, w, 1)) return failed;
  return check_at_end(doc);
}

// ---- the body ----------------------------------------------------------------------------

Fail parse_body(const simdjson::padded_string& text, Job& job, const JobLimits& limits) {
  od::document doc;
  if (auto e = thread_parser().iterate(text).get(doc)) return syntax_error(e);
  od::json_type t;
  if (auto e = doc.type().get(t)) return syntax_error(e);
  if (t != od::json_type::object) return JobError{"", "body must be a JSON object", true};
  od::object root;
  if (auto e = doc.get_object().get(root)) return syntax_error(e);

  static constexpr std::array<std::string_view, 4> kFields = {"keys", "to", "message", "metadata"};
  Seen<4> seen{kFields};
  bool has_text = false;
  auto failed = for_each_field(root, [&](std::string_view key, od::value& value) -> Fail {
    auto i = seen.index(key);
    if (i == kFields.size()) {
      auto field = shown(key);
      return violation(field,
                       field + " is not a known field (allowed: keys, to, message, metadata)");
    }
    if (seen.seen[i])
      return violation(std::string(key), std::string(key) + " appears more than once");
    seen.seen[i] = true;
    switch (i) {
      case 0:
        return parse_keys(value, job);
      case 1:
        return parse_to(value, job.to);
      case 2:
        return parse_message(value, job.message, has_text, limits);
      default:
        return parse_metadata(value, job.metadata_json, limits);
    }
  });
  if (failed) return failed;
  if (auto f = check_at_end(doc)) return f;

  if (!seen.seen[0]) return violation("keys", "keys is required");
  for (const auto& use : job.channels) {
    if (!job.recipient_for(use.channel).empty()) continue;
    std::string field = use.channel == "telegram" ? "to.telegram"
                        : use.channel == "email"  ? "to.email"
                                                  : "to.phone";
    return violation(field, field + " is required by the " + use.channel + " channel");
  }
  if (!seen.seen[2]) return violation("message", "message is required (with message.text)");
  return std::nullopt;
}

// First `max_chars` code points of text, line breaks (CRLF, CR, LF) replaced by spaces.
std::string default_subject(std::string_view text, std::size_t max_chars) {
  std::string out;
  std::size_t chars = 0;
  for (std::size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    bool starts_char = (static_cast<unsigned char>(c) & 0xC0) != 0x80;
    if (starts_char) {
      if (chars == max_chars) break;
      ++chars;
    }
    if (c == '\r') {
      if (i + 1 < text.size() && text[i + 1] == '\n') ++i;
      out += ' ';
    } else if (c == '\n') {
      out += ' ';
    } else {
      out += c;
    }
  }
  return out;
}

}  // namespace

const std::string& Job::recipient_for(std::string_view channel) const {
  static const std::string none;
  if (channel == "whatsapp" || channel == "waba") return to.phone;
  if (channel == "telegram") return to.telegram;
  if (channel == "email") return to.email;
  return none;
}

std::variant<Job, JobError> parse_job(std::string_view body, const JobLimits& limits) {
  if (body.size() > limits.max_body_bytes) {
    return violation("", "body must be at most " + std::to_string(limits.max_body_bytes) +
                             " bytes (it has " + std::to_string(body.size()) + ")");
  }
  const simdjson::padded_string text(body);
  Job job;
  if (auto failed = parse_body(text, job, limits)) {
    if (!failed->unreadable) {
      // The pass stopped early: a syntax error further on takes precedence.
      Walker w{false, kMaxRecheckDepth, "body", ""};
      if (auto syntax = walk_document(text, w); syntax && syntax->unreadable) return *syntax;
    }
    return *failed;
  }
  if (!job.metadata_json.empty()) {
    const simdjson::padded_string copy(job.metadata_json);
    Walker w{true, kMaxMetadataDepth, "metadata", ""};
    if (auto failed = walk_document(copy, w)) return *failed;
  }
  if (job.message.subject.empty())
    job.message.subject = default_subject(job.message.text, kDefaultSubjectChars);
  return job;
}

}  // namespace cascade
