#include "tools/mock_provider/provider.hpp"

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdio>
#include <vector>

#include "tools/mock_provider/json_read.hpp"
#include "tools/mock_provider/text.hpp"
#include "util/json.hpp"
#include "util/time.hpp"

namespace cascade::mock {
namespace {

using json::ObjectWriter;

constexpr std::size_t kMaxTextChars = 4096;

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           auto lower = [](char c) { return (c >= 'A' && c <= 'Z') ? char(c - 'A' + 'a') : c; };
           return lower(x) == lower(y);
         });
}

bool contains_icase(std::string_view haystack, std::string_view needle) {
  if (needle.size() > haystack.size()) return false;
  for (std::size_t i = 0; i + needle.size() <= haystack.size(); ++i)
    if (iequals(haystack.substr(i, needle.size()), needle)) return true;
  return false;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t'))
    s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t'))
    s.remove_suffix(1);
  return s;
}

std::pair<std::string_view, std::string_view> split_target(std::string_view target) {
  auto q = target.find('?');
  if (q == std::string_view::npos) return {target, {}};
  return {target.substr(0, q), target.substr(q + 1)};
}

int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// application/x-www-form-urlencoded / query string decoding.
std::string url_decode(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '+') {
      out.push_back(' ');
    } else if (s[i] == '%' && i + 2 < s.size() && hex_digit(s[i + 1]) >= 0 &&
               hex_digit(s[i + 2]) >= 0) {
      out.push_back(static_cast<char>(hex_digit(s[i + 1]) * 16 + hex_digit(s[i + 2])));
      i += 2;
    } else {
      out.push_back(s[i]);
    }
  }
  return out;
}

template <class F>
void for_each_param(std::string_view query, F&& f) {
  while (!query.empty()) {
    auto amp = query.find('&');
    auto pair = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view{} : query.substr(amp + 1);
    if (pair.empty()) continue;
    auto eq = pair.find('=');
    std::string key = url_decode(pair.substr(0, eq));
    std::string value =
        eq == std::string_view::npos ? std::string{} : url_decode(pair.substr(eq + 1));
    f(key, std::move(value));
  }
}

// JSON when declared so, or when the body looks like a JSON object whatever the declared
// type (curl -d sends form-urlencoded by default; being lenient here hides nothing a test
// would want to see).
bool is_json_body(const HttpRequest& r) {
  if (contains_icase(r.content_type, "json")) return true;
  auto first = r.body.find_first_not_of(" \t\r\n");
  return first != std::string_view::npos && r.body[first] == '{';
}

bool is_integer_text(std::string_view s) {
  if (!s.empty() && s.front() == '-') s.remove_prefix(1);
  return !s.empty() && s.size() <= 19 &&
         std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

std::string digits_of(std::string_view s) {
  std::string out;
  for (char c : s)
    if (c >= '0' && c <= '9') out.push_back(c);
  return out;
}

std::int64_t unix_seconds(std::int64_t now_us) {
  return now_us / 1'000'000;
}

// ---- replies in each provider's format ----------------------------------------------

std::string_view telegram_prefix(int code) {
  switch (code) {
    case 400:
      return "Bad Request";
    case 401:
      return "Unauthorized";
    case 403:
      return "Forbidden";
    case 404:
      return "Not Found";
    case 409:
      return "Conflict";
    case 429:
      return "Too Many Requests";
    case 500:
      return "Internal Server Error";
    case 502:
    case 503:
    case 504:
      return reason_phrase(code);
    default:
      return {};
  }
}

Reply telegram_error(int status, std::int64_t error_code, std::string description,
                     int retry_after) {
  Reply reply;
  reply.status = status;
  std::string& out = reply.body;
  ObjectWriter w(out);
  w.field("ok", false).field("error_code", error_code).field("description", description);
  if (retry_after > 0) {
    std::string params;
    ObjectWriter(params).field("retry_after", retry_after).close();
    w.raw("parameters", params);
    reply.retry_after = retry_after;
  }
  w.close();
  return reply;
}

// Telegram descriptions are "<prefix>: <detail>"; a detail given alone gets the prefix.
std::string telegram_description(std::int64_t code, std::string_view given, int retry_after) {
  auto prefix = telegram_prefix(static_cast<int>(code));
  if (given.empty()) {
    if (code == 429) return cat("Too Many Requests: retry after ", std::to_string(retry_after));
    return std::string(prefix.empty() ? reason_phrase(static_cast<int>(code)) : prefix);
  }
  if (prefix.empty() || given.substr(0, prefix.size()) == prefix) return std::string(given);
  return cat(prefix, ": ", given);
}

struct WabaCode {
  std::int64_t code;
  int status;
  std::string_view message;
  std::int64_t subcode;  // 0: none
};

// Graph API / Cloud API codes the adapters classify (provider reference §2).
constexpr WabaCode kWabaCodes[] = {
    {1, 400, "An unknown error occurred", 0},
    {2, 503, "Service temporarily unavailable", 0},
    {4, 400, "(#4) Application request limit reached", 0},
    {10, 403, "(#10) Application does not have permission for this action", 0},
    {17, 429, "(#17) User request limit reached", 0},
    {100, 400, "(#100) Invalid parameter", 0},
    {190, 401, "Invalid OAuth access token - Cannot parse access token", 0},
    {368, 403, "(#368) Temporarily blocked for policies violations", 0},
    {80007, 429, "(#80007) Rate limit issues", 0},
    {130429, 429, "(#130429) Rate limit hit", 2494055},
    {130497, 403, "(#130497) Business account is restricted from messaging users in this country",
     0},
    {131000, 500, "(#131000) Something went wrong", 0},
    {131008, 400, "(#131008) Required parameter is missing", 0},
    {131009, 400, "(#131009) Parameter value is not valid", 0},
    {131016, 503, "(#131016) Service unavailable", 0},
    {131021, 400, "(#131021) Recipient cannot be sender", 0},
    {131026, 400, "(#131026) Message undeliverable", 0},
    {131030, 400, "(#131030) Recipient phone number not in allowed list", 0},
    {131031, 403, "(#131031) Business Account locked", 0},
    {131047, 400, "(#131047) Re-engagement message", 0},
    {131048, 400, "(#131048) Spam rate limit hit", 0},
    {131051, 400, "(#131051) Unsupported message type", 0},
    {131056, 400, "(#131056) (Business Account, Consumer Account) pair rate limit hit", 2494071},
    {131057, 400, "(#131057) Account in maintenance mode", 0},
    {132000, 400, "(#132000) Number of parameters does not match the expected number of params", 0},
    {132001, 400, "(#132001) Template name does not exist in the translation", 0},
    {132015, 400, "(#132015) Template is paused", 0},
    {133010, 400, "(#133010) Account not registered", 0},
};

const WabaCode* waba_code(std::int64_t code) {
  for (const auto& c : kWabaCodes)
    if (c.code == code) return &c;
  return nullptr;
}

std::int64_t waba_code_for_status(int status) {
  switch (status) {
    case 400:
      return 100;
    case 401:
      return 190;
    case 403:
      return 10;
    case 404:
      return 100;
    case 429:
      return 130429;
    case 500:
      return 131000;
    case 503:
      return 131016;
    default:
      return status >= 500 ? 2 : 1;
  }
}

struct PostmarkCode {
  std::int64_t code;
  int status;
  std::string_view message;
};

// Postmark ErrorCodes (provider reference §4b).
constexpr PostmarkCode kPostmarkCodes[] = {
    {10, 401,
     "The Server Token you provided in the X-Postmark-Server-Token request header was invalid. "
     "Please verify that you are using a valid token."},
    {100, 503, "Maintenance. The Postmark API is offline for maintenance."},
    {300, 422, "Invalid email request"},
    {400, 422, "Sender signature not found"},
    {401, 422, "Sender signature not confirmed"},
    {402, 422, "Received invalid JSON input."},
    {403, 422, "Incompatible JSON input."},
    {405, 422, "Not allowed to send"},
    {406, 422, ""},  // built from the recipient, see postmark_message()
    {409, 422, "JSON required"},
    {410, 422, "Too many batch messages"},
    {411, 422, "Forbidden attachment type"},
    {412, 422, "Account is pending"},
    {413, 422, "Account may not send"},
    {429, 429, "Rate limit exceeded"},
};

const PostmarkCode* postmark_code(std::int64_t code) {
  for (const auto& c : kPostmarkCodes)
    if (c.code == code) return &c;
  return nullptr;
}

std::int64_t postmark_code_for_status(int status) {
  switch (status) {
    case 401:
      return 10;
    case 413:
      return 300;
    case 422:
      return 300;
    case 429:
      return 429;
    case 503:
      return 100;
    default:
      return status;
  }
}

std::string postmark_message(std::int64_t code, const ProviderRequest& request) {
  if (code == 406) {
    return cat(
        "You tried to send to recipient(s) that have been marked as inactive. Found inactive "
        "addresses: ",
        request.raw_recipient,
        ". Inactive recipients are ones that have generated a hard bounce, a spam complaint, "
        "or a manual suppression.");
  }
  if (auto* c = postmark_code(code)) return std::string(c->message);
  return "Error";
}

Reply postmark_error(int status, std::int64_t code, std::string_view message) {
  Reply reply;
  reply.status = status;
  ObjectWriter(reply.body).field("ErrorCode", code).field("Message", message).close();
  return reply;
}

Reply waha_unauthorized() {
  Reply reply;
  reply.status = 401;
  ObjectWriter(reply.body).field("message", "Unauthorized").field("statusCode", 401).close();
  return reply;
}

// NestJS ValidationPipe body: {"statusCode":400,"message":[...],"error":"Bad Request"}.
Reply waha_validation(const std::vector<std::string>& messages) {
  Reply reply;
  reply.status = 400;
  std::string list = "[";
  for (std::size_t i = 0; i < messages.size(); ++i) {
    if (i) list.push_back(',');
    json::append_string(list, messages[i]);
  }
  list.push_back(']');
  ObjectWriter(reply.body)
      .field("statusCode", 400)
      .raw("message", list)
      .field("error", "Bad Request")
      .close();
  return reply;
}

Reply waba_error(int status, std::int64_t code, std::string_view description,
                 std::string trace_id) {
  const WabaCode* known = waba_code(code);
  std::string prefixed = cat("(#", std::to_string(code), ") ");
  auto with_code = [&](std::string_view text) {
    return text.substr(0, 2) == "(#" ? std::string(text) : cat(prefixed, text);
  };
  // WhatsApp-specific codes (>= 130000) keep the code's title in `message` and carry the
  // useful text in error_data.details; Graph codes put the text in `message`.
  bool whatsapp_code = code >= 130000;
  std::string message;
  if (known && (description.empty() || whatsapp_code)) {
    message = std::string(known->message);
  } else if (description.empty()) {
    message = cat(prefixed, reason_phrase(status));
  } else {
    message = with_code(description);
  }
  Reply reply;
  reply.status = status;
  std::string error;
  ObjectWriter w(error);
  w.field("message", message).field("type", "OAuthException").field("code", code);
  if (whatsapp_code) {
    std::string details(description);
    if (details.empty()) {
      auto title = std::string_view(message);
      auto close = title.find(") ");
      details = close == std::string_view::npos ? title : title.substr(close + 2);
    }
    std::string data;
    ObjectWriter(data).field("messaging_product", "whatsapp").field("details", details).close();
    w.raw("error_data", data);
  }
  if (known && known->subcode) w.field("error_subcode", known->subcode);
  w.field("fbtrace_id", trace_id);
  w.close();
  ObjectWriter(reply.body).raw("error", error).close();
  return reply;
}

}  // namespace

JsonScratch::JsonScratch() : state_(std::make_unique<State>()) {}
JsonScratch::~JsonScratch() = default;

std::string_view provider_name(Provider p) {
  switch (p) {
    case Provider::telegram:
      return "telegram";
    case Provider::whatsapp:
      return "whatsapp";
    case Provider::waba:
      return "waba";
    case Provider::postmark:
      return "postmark";
  }
  return "unknown";
}

std::optional<Provider> parse_provider(std::string_view name) {
  for (auto p : kAllProviders)
    if (provider_name(p) == name) return p;
  return std::nullopt;
}

std::string_view reason_phrase(int status) {
  switch (status) {
    case 200:
      return "OK";
    case 201:
      return "Created";
    case 202:
      return "Accepted";
    case 204:
      return "No Content";
    case 400:
      return "Bad Request";
    case 401:
      return "Unauthorized";
    case 402:
      return "Payment Required";
    case 403:
      return "Forbidden";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 406:
      return "Not Acceptable";
    case 408:
      return "Request Timeout";
    case 409:
      return "Conflict";
    case 410:
      return "Gone";
    case 413:
      return "Payload Too Large";
    case 415:
      return "Unsupported Media Type";
    case 422:
      return "Unprocessable Entity";
    case 429:
      return "Too Many Requests";
    case 500:
      return "Internal Server Error";
    case 501:
      return "Not Implemented";
    case 502:
      return "Bad Gateway";
    case 503:
      return "Service Unavailable";
    case 504:
      return "Gateway Timeout";
    default:
      return "Error";
  }
}

std::optional<Provider> route(std::string_view method, std::string_view target) {
  auto path = split_target(target).first;
  if (path.substr(0, 4) == "/bot") return Provider::telegram;
  if (method != "POST") return std::nullopt;
  if (path == "/api/sendText") return Provider::whatsapp;
  if (path == "/email") return Provider::postmark;
  // "/<version>/<phone number id>/messages": exactly three non-empty segments.
  constexpr std::string_view kSuffix = "/messages";
  if (path.size() > kSuffix.size() && path.substr(path.size() - kSuffix.size()) == kSuffix) {
    auto head = path.substr(1, path.size() - kSuffix.size() - 1);  // "<version>/<id>"
    auto slash = head.find('/');
    if (slash != std::string_view::npos && slash > 0 && slash + 1 < head.size() &&
        head.find('/', slash + 1) == std::string_view::npos)
      return Provider::waba;
  }
  return std::nullopt;
}

std::string normalize_recipient(Provider p, std::string_view r) {
  r = trim(r);
  switch (p) {
    case Provider::telegram:
      return std::string(r);
    case Provider::whatsapp: {
      if (!r.empty() && r.front() == '+') r.remove_prefix(1);
      auto at = r.find('@');
      if (at != std::string_view::npos && at > 0) r = r.substr(0, at);
      return std::string(r);
    }
    case Provider::waba:
      if (!r.empty() && r.front() == '+') r.remove_prefix(1);
      return std::string(r);
    case Provider::postmark: {
      auto lt = r.find('<');
      auto gt = r.rfind('>');
      if (lt != std::string_view::npos && gt != std::string_view::npos && gt > lt)
        r = trim(r.substr(lt + 1, gt - lt - 1));
      std::string out(r);
      for (auto& c : out)
        if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
      return out;
    }
  }
  return std::string(r);
}

// ---- request parsing ------------------------------------------------------------------

namespace {

using detail::Kind;

void parse_telegram(ProviderRequest& pr, const HttpRequest& r, JsonScratch& scratch) {
  auto [path, query] = split_target(r.target);
  auto rest = path.substr(4);  // after "/bot"
  auto slash = rest.find('/');
  pr.token.assign(rest.substr(0, slash));
  if (slash == std::string_view::npos) {
    pr.rejection = telegram_error(404, 404, "Not Found", 0);
    return;
  }
  if (pr.token.empty()) {
    pr.rejection = telegram_error(401, 401, "Unauthorized: invalid token specified", 0);
    return;
  }
  // The Bot API lower-cases method names: sendmessage, SENDMESSAGE work too.
  if (!iequals(rest.substr(slash + 1), "sendMessage")) {
    pr.rejection = telegram_error(404, 404, "Not Found: method not found", 0);
    return;
  }
  // Parameters may come in the query string, a JSON body or a form body (later wins).
  auto take = [&](std::string_view key, std::string value) {
    if (key == "chat_id") {
      pr.raw_recipient = std::move(value);
    } else if (key == "text") {
      pr.text = std::move(value);
    }
  };
  for_each_param(query, take);
  if (!r.body.empty()) {
    if (is_json_body(r)) {
      // chat_id may be a number or a string; a number is kept as its JSON text.
      auto member = [&](std::string_view key, simdjson::ondemand::value& v) {
        if (key != "chat_id" && key != "text") return true;
        std::string value;
        if (!detail::scalar_text(v, value)) return false;
        take(key, std::move(value));
        return true;
      };
      if (!detail::for_each_member(scratch, r.body, member)) {
        pr.rejection = telegram_error(400, 400, "Bad Request: can't parse JSON object", 0);
        return;
      }
    } else if (contains_icase(r.content_type, "x-www-form-urlencoded")) {
      for_each_param(r.body, take);
    }
  }
  pr.recipient = normalize_recipient(Provider::telegram, pr.raw_recipient);
  if (pr.raw_recipient.empty()) {
    pr.rejection = telegram_error(400, 400, "Bad Request: chat_id is empty", 0);
  } else if (pr.text.empty()) {
    pr.rejection = telegram_error(400, 400, "Bad Request: message text is empty", 0);
  } else if (json::utf8_length(pr.text) > kMaxTextChars) {
    pr.rejection = telegram_error(400, 400, "Bad Request: message is too long", 0);
  }
}

void parse_whatsapp(ProviderRequest& pr, const HttpRequest& r, JsonScratch& scratch) {
  // WAHA's API-key guard runs before validation.
  if (!r.x_api_key || r.x_api_key->empty()) {
    pr.rejection = waha_unauthorized();
    return;
  }
  pr.token.assign(*r.x_api_key);
  bool have_session = false, chat_ok = false, text_ok = false;
  auto member = [&](std::string_view key, simdjson::ondemand::value& v) {
    std::string* target = key == "session"  ? &pr.session
                          : key == "chatId" ? &pr.raw_recipient
                          : key == "text"   ? &pr.text
                                            : nullptr;
    if (!target) return true;
    auto kind = detail::scalar_text(v, *target);
    if (!kind) return false;
    bool is_string = *kind == Kind::string;
    if (!is_string) target->clear();
    if (key == "session") have_session = is_string;
    if (key == "chatId") chat_ok = is_string && !target->empty();
    if (key == "text") text_ok = is_string;
    return true;
  };
  bool ok = detail::for_each_member(scratch, r.body, member);
  if (!ok) {
    // Express' JSON body parser rejects the body before any validation.
    Reply reply;
    reply.status = 400;
    ObjectWriter(reply.body)
        .field("statusCode", 400)
        .field("message", "Unexpected token in JSON at position 0")
        .field("error", "Bad Request")
        .close();
    pr.rejection = std::move(reply);
    return;
  }
  if (!have_session) pr.session = "default";
  pr.recipient = normalize_recipient(Provider::whatsapp, pr.raw_recipient);
  std::vector<std::string> problems;
  if (!chat_ok) problems.push_back("chatId must be a string");
  if (!text_ok) problems.push_back("text must be a string");
  if (!problems.empty()) pr.rejection = waha_validation(problems);
}

void parse_waba(ProviderRequest& pr, const HttpRequest& r, JsonScratch& scratch,
                Responder& responder) {
  auto path = split_target(r.target).first;
  auto first = path.find('/', 1);
  pr.object_id.assign(path.substr(first + 1, path.find('/', first + 1) - first - 1));
  std::string_view auth = r.authorization ? trim(*r.authorization) : std::string_view{};
  if (auth.size() > 7 && iequals(auth.substr(0, 7), "Bearer "))
    pr.token.assign(trim(auth.substr(7)));
  auto reject = [&](std::int64_t code, std::string_view description) {
    pr.rejection = responder.error(pr, Fault{0, code, std::string(description), 0}, r.body, 0);
  };
  if (pr.token.empty()) {
    reject(190, "");
    return;
  }
  std::string product, type = "text";
  bool have_to = false, have_body = false;
  bool ok = detail::for_each_member(
      scratch, r.body, [&](std::string_view key, simdjson::ondemand::value& v) {
        if (key == "messaging_product") return detail::scalar_text(v, product).has_value();
        if (key == "type") return detail::scalar_text(v, type).has_value();
        if (key == "to") {
          auto kind = detail::scalar_text(v, pr.raw_recipient);
          have_to = kind && (*kind == Kind::string || *kind == Kind::number);
          return kind.has_value();
        }
        if (key == "text") {
          simdjson::ondemand::object text;
          if (v.get_object().get(text) != simdjson::SUCCESS) return true;  // reported below
          auto body = [&](std::string_view k, simdjson::ondemand::value& b) {
            if (k != "body") return true;
            auto kind = detail::scalar_text(b, pr.text);
            have_body = kind == Kind::string;
            return kind.has_value();
          };
          return detail::for_each_field(text, body);
        }
        return true;
      });
  if (!ok) {
    reject(100, "(#100) The request body could not be parsed as JSON");
    return;
  }
  pr.recipient = normalize_recipient(Provider::waba, pr.raw_recipient);
  if (product.empty()) {
    reject(100, "(#100) The parameter messaging_product is required.");
  } else if (product != "whatsapp") {
    reject(100, cat("(#100) Param messaging_product must be one of {WHATSAPP} - got \"", product,
                    "\"."));
  } else if (!have_to || pr.raw_recipient.empty()) {
    reject(131008, "The parameter to is required.");
  } else if (type == "text" && (!have_body || pr.text.empty())) {
    reject(131008, "The parameter text['body'] is required.");
  } else if (json::utf8_length(pr.text) > kMaxTextChars) {
    reject(100, "(#100) Param text['body'] must be at most 4096 characters long.");
  }
}

void parse_postmark(ProviderRequest& pr, const HttpRequest& r, JsonScratch& scratch) {
  if (!r.postmark_token || trim(*r.postmark_token).empty()) {
    pr.rejection = postmark_error(
        401, 10,
        "No Account or Server API tokens were supplied in the HTTP headers. Please add a header "
        "for either X-Postmark-Server-Token or X-Postmark-Account-Token.");
    return;
  }
  pr.token.assign(*r.postmark_token);
  std::string from, html;
  auto member = [&](std::string_view key, simdjson::ondemand::value& v) {
    std::string* target = key == "From"       ? &from
                          : key == "To"       ? &pr.raw_recipient
                          : key == "Subject"  ? &pr.subject
                          : key == "TextBody" ? &pr.text
                          : key == "HtmlBody" ? &html
                                              : nullptr;
    if (!target) return true;
    auto kind = detail::scalar_text(v, *target);
    if (kind && *kind != Kind::string) target->clear();
    return kind.has_value();
  };
  bool ok = detail::for_each_member(scratch, r.body, member);
  if (!ok) {
    pr.rejection = postmark_error(422, 402, "Received invalid JSON input.");
    return;
  }
  pr.recipient = normalize_recipient(Provider::postmark, pr.raw_recipient);
  if (trim(from).empty()) {
    pr.rejection = postmark_error(422, 300, "Invalid 'From' address: ''.");
  } else if (pr.recipient.empty()) {
    pr.rejection = postmark_error(422, 300, "Zero recipients specified");
  } else if (pr.text.empty() && html.empty()) {
    pr.rejection = postmark_error(422, 300, "Provide either email TextBody or HtmlBody or both.");
  }
}

}  // namespace

ProviderRequest parse_request(Provider provider, const HttpRequest& request, Responder& responder,
                              JsonScratch& scratch) {
  ProviderRequest pr;
  pr.provider = provider;
  switch (provider) {
    case Provider::telegram:
      parse_telegram(pr, request, scratch);
      break;
    case Provider::whatsapp:
      parse_whatsapp(pr, request, scratch);
      break;
    case Provider::waba:
      parse_waba(pr, request, scratch, responder);
      break;
    case Provider::postmark:
      parse_postmark(pr, request, scratch);
      break;
  }
  return pr;
}

// ---- Responder ------------------------------------------------------------------------

Responder::Responder(std::uint64_t seed) : seed_(seed) {}

std::string Responder::trace_id() {
  // Graph trace ids look like "Az8or2yhqkZfEZ-_4Qn_Bam": 23 url-safe base64 characters.
  static constexpr char kAlphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  std::uint64_t x = seed_ + (++trace_n_) * 0x9e3779b97f4a7c15ULL;
  std::string id = "A";
  for (int i = 0; i < 22; ++i) {
    // splitmix64 steps: a deterministic, well-spread sequence.
    x += 0x9e3779b97f4a7c15ULL;
    std::uint64_t z = x;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    z ^= z >> 31;
    id.push_back(kAlphabet[z & 63]);
  }
  return id;
}

Reply Responder::success(const ProviderRequest& pr, std::int64_t now_us) {
  Reply reply;
  std::string& out = reply.body;
  switch (pr.provider) {
    case Provider::telegram: {
      reply.status = 200;
      std::string from;
      std::string_view token = pr.token;
      std::string bot_id(token.substr(0, token.find(':')));
      if (!is_integer_text(bot_id)) bot_id = "1";
      from =
          cat(R"({"id":)", bot_id,
              R"(,"is_bot":true,"first_name":"Cascade Mock Bot","username":"cascade_mock_bot"})");
      std::string chat;
      const std::string& id = pr.raw_recipient;
      if (is_integer_text(id)) {
        ObjectWriter c(chat);
        c.raw("id", id);
        if (id.front() != '-') {
          c.field("first_name", "Mock").field("type", "private");
        } else if (id.rfind("-100", 0) == 0) {
          c.field("title", "Mock supergroup").field("type", "supergroup");
        } else {
          c.field("title", "Mock group").field("type", "group");
        }
        c.close();
      } else {
        // "@channelusername": the API resolves it to a channel with a negative id.
        std::string_view name = id;
        if (!name.empty() && name.front() == '@') name.remove_prefix(1);
        ObjectWriter(chat)
            .field("id", std::int64_t{-1001000000001})
            .field("title", name)
            .field("username", name)
            .field("type", "channel")
            .close();
      }
      std::string result;
      ObjectWriter(result)
          .field("message_id", ++telegram_message_id_)
          .raw("from", from)
          .raw("chat", chat)
          .field("date", unix_seconds(now_us))
          .field("text", pr.text)
          .close();
      ObjectWriter(out).field("ok", true).raw("result", result).close();
      break;
    }
    case Provider::whatsapp: {
      reply.status = 201;
      std::string id = cat("true_", pr.raw_recipient, "_", std::to_string(++whatsapp_n_));
      ObjectWriter(out)
          .field("id", id)
          .field("timestamp", unix_seconds(now_us))
          .field("fromMe", true)
          .field("to", pr.raw_recipient)
          .field("body", pr.text)
          .close();
      break;
    }
    case Provider::waba: {
      reply.status = 200;
      std::string contact, contacts = "[", messages = "[";
      ObjectWriter(contact)
          .field("input", pr.raw_recipient)
          .field("wa_id", digits_of(pr.raw_recipient))
          .close();
      contacts.append(contact).push_back(']');
      std::string message;
      ObjectWriter(message).field("id", cat("wamid.", std::to_string(++waba_n_))).close();
      messages.append(message).push_back(']');
      ObjectWriter(out)
          .field("messaging_product", "whatsapp")
          .raw("contacts", contacts)
          .raw("messages", messages)
          .close();
      break;
    }
    case Provider::postmark: {
      reply.status = 200;
      // A version-4-looking UUID: fixed per-process parts around a counter.
      char id[40];
      std::uint64_t n = ++postmark_n_;
      std::snprintf(id, sizeof id, "%08x-%04x-4%03x-8%03x-%012llx",
                    static_cast<unsigned>(seed_ >> 32), static_cast<unsigned>(seed_ >> 16) & 0xffff,
                    static_cast<unsigned>(seed_ >> 4) & 0xfff, static_cast<unsigned>(seed_) & 0xfff,
                    static_cast<unsigned long long>(n & 0xffffffffffffULL));
      auto submitted = iso8601_utc(std::chrono::system_clock::time_point(
          std::chrono::duration_cast<std::chrono::system_clock::duration>(
              std::chrono::microseconds(now_us))));
      ObjectWriter(out)
          .field("To", pr.raw_recipient)
          .field("SubmittedAt", submitted)
          .field("MessageID", std::string_view(id))
          .field("ErrorCode", 0)
          .field("Message", "OK")
          .close();
      break;
    }
  }
  return reply;
}

int Responder::status_for(Provider p, const Fault& fault) {
  if (fault.status > 0) return fault.status;
  if (!fault.error_code) return 0;
  auto code = *fault.error_code;
  switch (p) {
    case Provider::telegram:
    case Provider::whatsapp:
      return code >= 400 && code <= 599 ? static_cast<int>(code) : 400;
    case Provider::waba:
      if (auto* c = waba_code(code)) return c->status;
      return 400;
    case Provider::postmark:
      if (auto* c = postmark_code(code)) return c->status;
      return 422;
  }
  return 400;
}

Reply Responder::error(const ProviderRequest& pr, const Fault& fault, std::string_view request_body,
                       std::int64_t now_us) {
  int status = status_for(pr.provider, fault);
  switch (pr.provider) {
    case Provider::telegram: {
      std::int64_t code = fault.error_code.value_or(status);
      int retry_after = fault.retry_after;
      // The Bot API's 429 always names the wait (Query::set_retry_after_error).
      if (code == 429 && retry_after <= 0) retry_after = 1;
      return telegram_error(
          status, code, telegram_description(code, fault.description, retry_after), retry_after);
    }
    case Provider::waba: {
      std::int64_t code = fault.error_code.value_or(waba_code_for_status(status));
      std::string description = fault.description;
      if (status == 404 && code == 100 && description.empty()) {
        // Graph's answer for a phone number id it does not know.
        description = cat("Unsupported post request. Object with ID '", pr.object_id,
                          "' does not exist, cannot be loaded due to missing permissions, or does "
                          "not support this operation");
      }
      Reply reply = waba_error(status, code, description, trace_id());
      reply.retry_after = fault.retry_after;
      return reply;
    }
    case Provider::postmark: {
      std::int64_t code = fault.error_code.value_or(postmark_code_for_status(status));
      std::string message =
          fault.description.empty() ? postmark_message(code, pr) : fault.description;
      if (message == "Error") message = std::string(reason_phrase(status));
      Reply reply = postmark_error(status, code, message);
      reply.retry_after = fault.retry_after;
      return reply;
    }
    case Provider::whatsapp: {
      Reply reply;
      reply.status = status;
      reply.retry_after = fault.retry_after;
      std::string_view session = pr.session.empty() ? std::string_view("default") : pr.session;
      std::string& out = reply.body;
      if (status == 401) {
        reply.body = waha_unauthorized().body;
      } else if (status == 400) {
        reply.body =
            waha_validation({fault.description.empty() ? std::string("text must be a string")
                                                       : fault.description})
                .body;
      } else if (status == 404) {
        // manager.core.ts getSession()
        std::string message = fault.description;
        if (message.empty()) {
          message = cat("We didn't find a session with name '", session,
                        "'.\nPlease start it first by using POST /api/sessions/", session,
                        "/start request");
        }
        ObjectWriter(out)
            .field("statusCode", 404)
            .field("message", message)
            .field("error", "Not Found")
            .close();
      } else if (status == 422) {
        // manager.abc.ts: the session did not reach WORKING within WAIT_STATUS_TIMEOUT.
        ObjectWriter(out)
            .field("error", fault.description.empty()
                                ? std::string_view("Session status is not as expected. Try again "
                                                   "later or restart the session")
                                : std::string_view(fault.description))
            .field("session", session)
            .field("status", "SCAN_QR_CODE")
            .raw("expected", R"(["WORKING"])")
            .close();
      } else if (status == 500) {
        // AllExceptionsFilter.ts
        std::string exception, request;
        ObjectWriter(exception)
            .field("message", fault.description.empty() ? std::string_view("Internal server error")
                                                        : std::string_view(fault.description))
            .field("name", "Error")
            .close();
        // The request body is echoed only when it is known to be JSON.
        bool echo = !pr.rejection && !request_body.empty();
        ObjectWriter(request)
            .field("path", "/api/sendText")
            .field("method", "POST")
            .raw("body", echo ? request_body : std::string_view("{}"))
            .close();
        auto timestamp = iso8601_utc(std::chrono::system_clock::time_point(
            std::chrono::duration_cast<std::chrono::system_clock::duration>(
                std::chrono::microseconds(now_us))));
        ObjectWriter(out)
            .field("statusCode", 500)
            .field("timestamp", timestamp)
            .raw("exception", exception)
            .raw("request", request)
            .field("version", "2024.10.1")
            .close();
      } else {
        // Any other NestJS HttpException: {"statusCode":N,"message":"..."}.
        ObjectWriter(out)
            .field("statusCode", status)
            .field("message", fault.description.empty() ? reason_phrase(status)
                                                        : std::string_view(fault.description))
            .close();
      }
      return reply;
    }
  }
  return Reply{};
}

}  // namespace cascade::mock
