#pragma once
// Provider replies -> Outcome. Pure functions, no I/O: one HTTP reply (status, body,
// Retry-After header) in, one classified Outcome out, following the tables of
// shared/reference/provider-apis.md. Unit-tested with literal replies.
//
// Error texts are short and human ("provider returned 503", "telegram: chat not found
// (400)"). Provider texts quoted in them are cut to a sentence's length, and every value
// in `secrets` (the tokens the adapter sent) is masked, in case a provider echoes one.
#include <cstdint>
#include <optional>
#include <span>
#include <string_view>

#include "channels/http_client.hpp"
#include "channels/outcome.hpp"

namespace cascade {

using Secrets = std::span<const std::string_view>;

// Telegram Bot API sendMessage. 429 + retry_after -> retry_after; 5xx (JSON or not) ->
// transient; 400 chat/user not found, 403 blocked/kicked -> permanent recipient; 400 text
// problems -> permanent content; 401/404 -> permanent config.
Outcome classify_telegram(int status, std::string_view body, std::string_view retry_after_header,
                          Secrets secrets = {});

// WAHA POST /api/sendText. Any 2xx -> sent (id from id | id._serialized | key.id);
// 401/403/404 -> config; 422 (session not WORKING) -> transient; 400 -> content; 5xx ->
// transient.
Outcome classify_whatsapp_waha(int status, std::string_view body,
                               std::string_view retry_after_header = {}, Secrets secrets = {});

// WhatsApp Business Platform (Graph API) messages: decided on error.code, not HTTP status.
Outcome classify_waba(int status, std::string_view body, std::string_view retry_after_header = {},
                      Secrets secrets = {});

// Postmark POST /email: decided on ErrorCode where there is one, else on HTTP status.
Outcome classify_postmark(int status, std::string_view body,
                          std::string_view retry_after_header = {}, Secrets secrets = {});

// A request that got no HTTP reply (response.error != none): connect errors, timeouts,
// broken connections. Transient; `unknown` when the request had been fully written.
Outcome classify_transport(const HttpResponse& response);

// Telegram's "group chat was upgraded to a supergroup chat" reply carries the new chat id
// (parameters.migrate_to_chat_id): the one case where resending to another id is right.
std::optional<std::int64_t> telegram_migrate_to_chat_id(std::string_view body);

// Retry-After as delta-seconds (HTTP-dates are not used by these providers).
std::optional<std::chrono::seconds> parse_retry_after(std::string_view header);

}  // namespace cascade
