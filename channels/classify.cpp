#include "channels/classify.hpp"

#include <simdjson.h>

#include <algorithm>
#include <charconv>
#include <initializer_list>
#include <map>
#include <string>
#include <variant>
#include <vector>

namespace cascade {
namespace {

using namespace std::chrono_literals;
using Kind = Outcome::Kind;
using Cause = Outcome::Cause;

// Long enough for any provider's one-line reason, short enough for a result record.
constexpr std::size_t max_quote = 160;

// The few fields a classifier needs from a reply, by dotted path ("error.code",
// "messages.0.id"). One pass of simdjson On-Demand; everything else is skipped.
class Fields {
 public:
  using Scalar = std::variant<std::monostate, bool, std::int64_t, double, std::string>;

  Fields(std::string_view body, std::initializer_list<std::string_view> wanted)
      : wanted_(wanted.begin(), wanted.end()) {
    thread_local simdjson::ondemand::parser parser;
    simdjson::padded_string padded(body);
    try {
      auto doc = parser.iterate(padded);
      simdjson::ondemand::object root = doc.get_object();
      object_ = true;
      std::string path;
      walk_object(root, path);
    } catch (const simdjson::simdjson_error&) {
      // Not JSON, or broken midway: keep what was read (often nothing).
    }
  }

  bool object() const { return object_; }  // the body was (at least the start of) an object
  bool has(std::string_view path) const { return values_.find(path) != values_.end(); }

  std::optional<std::int64_t> integer(std::string_view path) const {
    auto it = values_.find(path);
    if (it == values_.end()) return std::nullopt;
    if (auto* i = std::get_if<std::int64_t>(&it->second)) return *i;
    if (auto* d = std::get_if<double>(&it->second)) return static_cast<std::int64_t>(*d);
    if (auto* s = std::get_if<std::string>(&it->second)) {  // "error_code":"429" happens
      std::int64_t v = 0;
      auto [p, ec] = std::from_chars(s->data(), s->data() + s->size(), v);
      if (ec == std::errc() && p == s->data() + s->size()) return v;
    }
    return std::nullopt;
  }

  std::optional<bool> boolean(std::string_view path) const {
    auto it = values_.find(path);
    if (it == values_.end()) return std::nullopt;
    if (auto* b = std::get_if<bool>(&it->second)) return *b;
    return std::nullopt;
  }

  // Strings as they are, integers as decimal text (ids), anything else "".
  std::string text(std::string_view path) const {
    auto it = values_.find(path);
    if (it == values_.end()) return {};
    if (auto* s = std::get_if<std::string>(&it->second)) return *s;
    if (auto* i = std::get_if<std::int64_t>(&it->second)) return std::to_string(*i);
    return {};
  }

 private:
  bool exact(const std::string& path) const {
    return std::find(wanted_.begin(), wanted_.end(), path) != wanted_.end();
  }
  bool prefix(const std::string& path) const {
    return std::any_of(wanted_.begin(), wanted_.end(), [&](std::string_view w) {
      return w.size() > path.size() && w.starts_with(path) && w[path.size()] == '.';
    });
  }

  void walk_object(simdjson::ondemand::object obj, std::string& path) {
    for (auto field : obj) {
      std::string_view key = field.unescaped_key();
      auto len = path.size();
      if (!path.empty()) path += '.';
      path += key;
      walk(field.value(), path);
      path.resize(len);
    }
  }

  void walk(simdjson::ondemand::value v, std::string& path) {
    const bool want = exact(path);
    switch (v.type()) {
      case simdjson::ondemand::json_type::object:
        if (prefix(path)) walk_object(v.get_object(), path);
        break;
      case simdjson::ondemand::json_type::array:
        if (want) {
          // A wanted array (NestJS "message": ["a", "b"]) reads as its strings joined.
          std::string joined;
          for (auto element : v.get_array()) {
            simdjson::ondemand::value e = element.value();
            if (e.type() != simdjson::ondemand::json_type::string) continue;
            if (!joined.empty()) joined += "; ";
            joined += std::string_view(e.get_string());
          }
          values_[path] = std::move(joined);
        } else if (prefix(path)) {
          std::size_t index = 0;
          for (auto element : v.get_array()) {
            auto len = path.size();
            path += '.';
            path += std::to_string(index++);
            walk(element.value(), path);
            path.resize(len);
          }
        }
        break;
      case simdjson::ondemand::json_type::string:
        if (want) values_[path] = std::string(std::string_view(v.get_string()));
        break;
      case simdjson::ondemand::json_type::number:
        if (want) {
          simdjson::ondemand::number n = v.get_number();
          if (n.is_int64())
            values_[path] = n.get_int64();
          else
            values_[path] = n.as_double();
        }
        break;
      case simdjson::ondemand::json_type::boolean:
        if (want) values_[path] = bool(v.get_bool());
        break;
      case simdjson::ondemand::json_type::null:
        break;
    }
  }

  std::vector<std::string_view> wanted_;  // string literals of the caller
  std::map<std::string, Scalar, std::less<>> values_;
  bool object_ = false;
};

bool is_2xx(int status) {
  return status >= 200 && status < 300;
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (auto& c : out)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  return out;
}

bool contains_any(std::string_view haystack, std::initializer_list<std::string_view> needles) {
  return std::any_of(needles.begin(), needles.end(), [&](std::string_view n) {
    return haystack.find(n) != std::string_view::npos;
  });
}

// A provider's text made fit to quote: secrets masked, first line only (the rest of a
// multi-line message is instructions, often with URL paths), whitespace tidied, cut short
// on a UTF-8 boundary. Masking comes before cutting so no token prefix can survive.
std::string quote(std::string_view text, Secrets secrets) {
  std::string s(text.substr(0, text.find('\n')));
  for (auto secret : secrets) {
    if (secret.empty()) continue;
    for (auto pos = s.find(secret); pos != std::string::npos; pos = s.find(secret, pos + 3))
      s.replace(pos, secret.size(), "***");
  }
  std::string out;
  for (char c : s) {
    bool space = static_cast<unsigned char>(c) < 0x20 || c == ' ';
    if (space) {
      if (!out.empty() && out.back() != ' ') out.push_back(' ');
    } else {
      out.push_back(c);
    }
  }
  while (!out.empty() && out.back() == ' ')
    out.pop_back();
  if (out.size() > max_quote) {
    auto cut = max_quote;
    while (cut > 0 && (static_cast<unsigned char>(out[cut]) & 0xC0) == 0x80)
      --cut;
    out.resize(cut);
    out += "...";
  }
  return out;
}

// "Bad Request: chat not found" -> "chat not found".
std::string strip_reason_prefix(std::string text) {
  for (std::string_view p : {"Bad Request: ", "Forbidden: ", "Unauthorized: ", "Not Found: ",
                             "Conflict: ", "Internal Server Error: ", "Too Many Requests: "})
    if (text.starts_with(p)) return text.substr(p.size());
  return text;
}

// "<channel>: <detail> (<code>)", or "provider returned <status>" when the provider said
// nothing usable.
std::string say(std::string_view channel, const std::string& detail, int status,
                std::string_view code = {}) {
  if (detail.empty()) return "provider returned " + std::to_string(status);
  return std::string(channel) + ": " + detail + " (" +
         (code.empty() ? std::to_string(status) : std::string(code)) + ")";
}

// 2xx but nothing we can read: the provider may well have sent it.
Outcome unreadable(std::string_view channel, int status) {
  auto o = Outcome::transient(std::string(channel) + ": unreadable reply (" +
                              std::to_string(status) + ")");
  o.unknown = true;
  return o;
}

Outcome throttled(std::string text, std::optional<std::chrono::seconds> after) {
  if (after && after->count() > 0) return Outcome::after(*after, std::move(text));
  return Outcome::transient(std::move(text), Cause::throttled);
}

// When a reply has no provider-specific code to go on.
Outcome by_status(int status, std::string text, std::string_view retry_after_header) {
  if (status == 429) return throttled(std::move(text), parse_retry_after(retry_after_header));
  if (status >= 500 || status < 200) return Outcome::transient(std::move(text));
  if (status >= 300 && status < 400) return Outcome::permanent(std::move(text), Cause::config);
  if (status == 401 || status == 403 || status == 404)
    return Outcome::permanent(std::move(text), Cause::config);
  return Outcome::permanent(std::move(text), Cause::content);
}

std::optional<std::chrono::seconds> retry_after_in_text(std::string_view text) {
  auto pos = text.find("retry after ");
  if (pos == std::string_view::npos) return std::nullopt;
  return parse_retry_after(text.substr(pos + 12));
}

}  // namespace

std::optional<std::chrono::seconds> parse_retry_after(std::string_view header) {
  while (!header.empty() && header.front() == ' ')
    header.remove_prefix(1);
  while (!header.empty() && header.back() == ' ')
    header.remove_suffix(1);
  std::int64_t v = 0;
  auto [p, ec] = std::from_chars(header.data(), header.data() + header.size(), v);
  if (ec != std::errc() || p != header.data() + header.size() || v < 0) return std::nullopt;
  return std::chrono::seconds(v);
}

Outcome classify_telegram(int status, std::string_view body, std::string_view retry_after_header,
                          Secrets secrets) {
  Fields f(body,
           {"ok", "error_code", "description", "parameters.retry_after", "result.message_id"});
  if (is_2xx(status)) {
    if (f.boolean("ok") == true) return Outcome::sent(f.text("result.message_id"));
    if (!f.boolean("ok")) return unreadable("telegram", status);
  }
  // Telegram sets the HTTP status to error_code; trust the status unless it says success.
  int code = is_2xx(status) ? static_cast<int>(f.integer("error_code").value_or(500)) : status;
  const std::string description = f.text("description");
  const std::string detail = strip_reason_prefix(quote(description, secrets));

  if (code == 429) {
    auto after = f.integer("parameters.retry_after")
                     ? std::optional(std::chrono::seconds(*f.integer("parameters.retry_after")))
                     : parse_retry_after(retry_after_header);
    if (!after) after = retry_after_in_text(description);
    std::string text = after ? "telegram: too many requests, retry after " +
                                   std::to_string(after->count()) + " s (429)"
                             : "telegram: too many requests (429)";
    return throttled(std::move(text), after);
  }
  std::string text = say("telegram", detail, code);
  if (code >= 500 || code < 200) return Outcome::transient(std::move(text));
  if (code == 403) return Outcome::permanent(std::move(text), Cause::recipient);
  if (code == 400) {
    auto d = lower(description);
    if (contains_any(d, {"chat not found", "user not found", "group chat was upgraded",
                         "peer_id_invalid", "user is deactivated", "bot was blocked"}))
      return Outcome::permanent(std::move(text), Cause::recipient);
    return Outcome::permanent(std::move(text), Cause::content);
  }
  return by_status(code, std::move(text), retry_after_header);
}

std::optional<std::int64_t> telegram_migrate_to_chat_id(std::string_view body) {
  Fields f(body, {"parameters.migrate_to_chat_id"});
  return f.integer("parameters.migrate_to_chat_id");
}

Outcome classify_whatsapp_waha(int status, std::string_view body,
                               std::string_view retry_after_header, Secrets secrets) {
  if (is_2xx(status)) {
    // Any 2xx is a send; the body is engine-specific (NOWEB, WEBJS) and may be empty.
    Fields f(body, {"id", "id._serialized", "key.id"});
    for (auto path : {"id", "id._serialized", "key.id"})
      if (auto id = f.text(path); !id.empty()) return Outcome::sent(id);
    return Outcome::sent({});
  }
  Fields f(body, {"message", "error", "status", "expected", "exception.message"});
  std::string message = f.text("message");
  if (status >= 500 && f.has("exception.message")) message = f.text("exception.message");
  if (message.empty()) message = f.text("error");
  std::string text = say("whatsapp", quote(message, secrets), status);

  if (status == 422) {
    // Session not WORKING (yet): waiting may help; a QR re-pair needs a human, which the
    // retry cap turns into a failure.
    auto session_status = quote(f.text("status"), secrets);
    if (!session_status.empty()) {
      auto expected = quote(f.text("expected"), secrets);
      text = "whatsapp: session status " + session_status +
             (expected.empty() ? "" : ", expected " + expected) + " (422)";
    }
    return Outcome::transient(std::move(text));
  }
  if (status == 400) {
    // Evolution-style "number not on WhatsApp": [{"jid":..., "exists":false}].
    if (contains_any(body, {"\"exists\":false", "\"exists\": false"}))
      return Outcome::permanent("whatsapp: number is not on WhatsApp (400)", Cause::recipient);
    return Outcome::permanent(std::move(text), Cause::content);
  }
  return by_status(status, std::move(text), retry_after_header);
}

Outcome classify_waba(int status, std::string_view body, std::string_view retry_after_header,
                      Secrets secrets) {
  Fields f(body, {"messages.0.id", "error.code", "error.error_subcode", "error.message",
                  "error.is_transient", "error.error_data.details"});
  if (is_2xx(status) && !f.has("error.code")) {
    if (!f.object()) return unreadable("waba", status);
    return Outcome::sent(f.text("messages.0.id"));
  }
  auto code = f.integer("error.code");
  std::string message = quote(f.text("error.message"), secrets);
  if (!code) return by_status(status, say("waba", message, status), retry_after_header);

  // Graph messages already start with "(#code)"; add it where one does not.
  if (!message.starts_with("(#"))
    message = "(#" + std::to_string(*code) + ")" + (message.empty() ? "" : " " + message);
  std::string text = "waba: " + message;
  auto details = lower(f.text("error.error_data.details") + " " + f.text("error.message"));

  switch (*code) {
    case 4:       // app-level call budget
    case 80007:   // WABA business-use-case limit
    case 130429:  // Cloud API throughput
    case 131048:  // spam rate limit (quality): long backoff
      return throttled(std::move(text), parse_retry_after(retry_after_header));
    case 131056:  // pair rate limit: 1 message / 6 s per recipient refills the bucket
      return Outcome::after(parse_retry_after(retry_after_header).value_or(6s), std::move(text));
    case 131049:  // Meta chose not to deliver: one retry no sooner than a day later
      return Outcome::after(24h, std::move(text));
    case 1:
    case 2:
    case 131000:
    case 131016:
    case 131057:  // account in maintenance
      return Outcome::transient(std::move(text));
    case 131026:  // undeliverable
    case 131021:  // recipient is the sender
    case 131050:  // user stopped marketing messages
      return Outcome::permanent(std::move(text), Cause::recipient);
    case 131009:  // parameter value not valid: on `to` it is the number
      if (contains_any(details, {"phone", "'to'", "\"to\"", " to "}))
        return Outcome::permanent(std::move(text), Cause::recipient);
      return Outcome::permanent(std::move(text), Cause::content);
    case 131047:  // outside the 24 h window: needs a template
    case 131051:
    case 131008:
    case 132000:
    case 132001:
    case 132015:
      return Outcome::permanent(std::move(text), Cause::content);
    case 100:  // subcode 33: the phone number id does not exist
      return Outcome::permanent(
          std::move(text), f.integer("error.error_subcode") == 33 ? Cause::config : Cause::content);
    case 0:
    case 190:
    case 3:
    case 10:
    case 368:
    case 130497:
    case 131030:
    case 131031:
    case 133010:
      return Outcome::permanent(std::move(text), Cause::config);
    default:
      break;
  }
  if (*code >= 200 && *code <= 299) return Outcome::permanent(std::move(text), Cause::config);
  if (*code >= 132000 && *code < 133000) return Outcome::permanent(std::move(text), Cause::content);
  if (f.boolean("error.is_transient") == true) return Outcome::transient(std::move(text));
  return by_status(status, std::move(text), retry_after_header);
}

Outcome classify_postmark(int status, std::string_view body, std::string_view retry_after_header,
                          Secrets secrets) {
  Fields f(body, {"ErrorCode", "Message", "MessageID"});
  auto code = f.integer("ErrorCode");
  if (is_2xx(status) && code.value_or(0) == 0) {
    if (!f.object()) return unreadable("postmark", status);
    return Outcome::sent(f.text("MessageID"));
  }
  std::string detail = quote(f.text("Message"), secrets);
  std::string text =
      say("postmark", detail, status, code ? "ErrorCode " + std::to_string(*code) : "");

  if (status == 429 || code == 429)
    return throttled(std::move(text), parse_retry_after(retry_after_header));
  if (status >= 500 || code == 100) return Outcome::transient(std::move(text));
  if (code) {
    switch (*code) {
      case 406:  // inactive recipient: hard bounce, complaint, suppression
        return Outcome::permanent(std::move(text), Cause::recipient);
      case 300:
      case 402:
      case 403:
      case 409:
      case 410:
      case 411:
        return Outcome::permanent(std::move(text), Cause::content);
      case 10:
      case 400:
      case 401:
      case 405:
      case 412:
      case 413:
        return Outcome::permanent(std::move(text), Cause::config);
      default:
        break;
    }
  }
  return by_status(status, std::move(text), retry_after_header);
}

Outcome classify_transport(const HttpResponse& r) {
  using Error = HttpResponse::Error;
  Outcome o;
  switch (r.error) {
    case Error::none:
      return Outcome::transient("provider returned " + std::to_string(r.status));
    case Error::connect:
      return Outcome::transient(r.error_text, Cause::network);
    case Error::timeout:
      if (!r.request_written) return Outcome::transient(r.error_text, Cause::network);
      o = Outcome::transient("timed out after request was sent (outcome unknown)", Cause::network);
      break;
    case Error::io:
      if (!r.request_written) return Outcome::transient(r.error_text, Cause::network);
      o = Outcome::transient(r.error_text + " (outcome unknown)", Cause::network);
      break;
    case Error::too_large:
      o = Outcome::transient(r.error_text + " (outcome unknown)", Cause::provider);
      break;
    case Error::cancelled:
      o = Outcome::transient("cancelled", Cause::network);
      o.unknown = r.request_written;
      return o;
  }
  o.unknown = true;
  return o;
}

}  // namespace cascade
