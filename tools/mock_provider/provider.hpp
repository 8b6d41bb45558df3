#pragma once
// The four provider APIs the mock imitates, without any I/O: routing a request target to
// a provider, reducing a request to what rules match on and what is recorded, and building
// the provider's own success and error replies (formats from the team's provider reference:
// Telegram Bot API, WhatsApp Cloud API, WAHA, Postmark).
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

namespace cascade::mock {

// Scratch space for parsing JSON bodies (a simdjson parser and a padded copy of the
// input), reused across requests so that parsing does not allocate once warm.
class JsonScratch {
 public:
  JsonScratch();
  ~JsonScratch();
  JsonScratch(const JsonScratch&) = delete;
  JsonScratch& operator=(const JsonScratch&) = delete;
  struct State;  // defined in json_read.hpp
  State& state() { return *state_; }

 private:
  std::unique_ptr<State> state_;
};

enum class Provider { telegram, whatsapp, waba, postmark };
inline constexpr Provider kAllProviders[] = {Provider::telegram, Provider::whatsapp, Provider::waba,
                                             Provider::postmark};
inline constexpr std::size_t kProviderCount = 4;

std::string_view provider_name(Provider p);  // "telegram", "whatsapp", "waba", "postmark"
std::optional<Provider> parse_provider(std::string_view name);

// An HTTP request as the server read it. Views into the server's buffers; the optional
// headers are nullopt when absent (an empty header is present and empty).
struct HttpRequest {
  std::string_view method;  // "POST"
  std::string_view target;  // path and query as received
  std::string_view content_type;
  std::string_view body;
  std::optional<std::string_view> x_api_key;       // WAHA
  std::optional<std::string_view> authorization;   // WABA: "Bearer <token>"
  std::optional<std::string_view> postmark_token;  // X-Postmark-Server-Token
};

// What the mock answers.
struct Reply {
  int status = 200;
  std::string body;
  std::string_view content_type = "application/json";  // always a string literal
  int retry_after = 0;                                 // > 0: a Retry-After header (seconds)
};

// Which provider a request target belongs to (by path only; the query is ignored):
//   /bot<token>/<method>          telegram (any method; telegram also accepts GET)
//   /api/sendText                 whatsapp (WAHA), POST only
//   /<version>/<id>/messages      waba (Cloud API), POST only
//   /email                        postmark, POST only
// nullopt: not a provider endpoint (the caller answers 404).
std::optional<Provider> route(std::string_view method, std::string_view target);

// A provider request reduced to what rules match on, what is recorded and what the
// provider's replies echo.
struct ProviderRequest {
  Provider provider = Provider::telegram;
  std::string token;          // bot token / bearer token / X-Api-Key / server token, as received
  std::string recipient;      // normalize_recipient(provider, raw_recipient)
  std::string raw_recipient;  // chat_id (a number rendered as text) / chatId / to / To
  std::string text;           // text / text / text.body / TextBody
  std::string subject;        // postmark Subject
  std::string session;        // whatsapp session
  std::string object_id;      // waba phone number id
  // The provider's own answer when the request is malformed, unauthorized or names an
  // unknown method: the mock answers this unless a rule says otherwise.
  std::optional<Reply> rejection;
};

class Responder;

// Parses a request routed to `provider`. Never throws; problems end up in `rejection`
// (built with `responder`, which numbers Graph trace ids).
ProviderRequest parse_request(Provider provider, const HttpRequest& request, Responder& responder,
                              JsonScratch& scratch);

// The canonical form rules compare and records show:
//   telegram: the chat_id text as is ("123", "-100123", "@channel");
//   whatsapp: the part of chatId before '@' ("33612345678@c.us" -> "33612345678"), '+' dropped;
//   waba:     `to` without a leading '+';
//   postmark: the address (inside <...> when present), lower-cased, surrounding blanks trimmed.
std::string normalize_recipient(Provider p, std::string_view recipient);

// A fault to render in the provider's own error format. status 0: derived from
// error_code (telegram/whatsapp: the same number; waba/postmark: the code's usual status).
struct Fault {
  int status = 0;
  // telegram error_code / waba error.code / postmark ErrorCode
  std::optional<std::int64_t> error_code;
  std::string description;  // empty: the provider's usual text for the code
  int retry_after = 0;
};

std::string_view reason_phrase(int status);

// Builds replies. Holds the counters providers number their messages with; one per mock.
class Responder {
 public:
  explicit Responder(std::uint64_t seed = 0x9e3779b97f4a7c15ULL);

  // The provider's success reply for an accepted request (numbers the message).
  Reply success(const ProviderRequest& request, std::int64_t now_us);
  // The provider's error reply for `fault`. `request_body` is echoed by WAHA's 500 body.
  Reply error(const ProviderRequest& request, const Fault& fault, std::string_view request_body,
              std::int64_t now_us);
  // Resolves a fault's HTTP status (see Fault).
  static int status_for(Provider p, const Fault& fault);

 private:
  std::string trace_id();

  std::uint64_t seed_;
  std::int64_t telegram_message_id_ = 0;
  std::uint64_t whatsapp_n_ = 0;
  std::uint64_t waba_n_ = 0;
  std::uint64_t postmark_n_ = 0;
  std::uint64_t trace_n_ = 0;
};

}  // namespace cascade::mock
