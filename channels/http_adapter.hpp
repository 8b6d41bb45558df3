#pragma once
// Plumbing shared by the HTTP provider adapters (telegram, whatsapp, waba, postmark):
// settings look-up, the choice of API base URL, and "send, then classify".
#include <boost/asio/awaitable.hpp>

#include <optional>
#include <string>
#include <string_view>

#include "channels/channel.hpp"
#include "channels/classify.hpp"
#include "channels/http_client.hpp"

namespace cascade {

// The HTTP request for one send, or the permanent Outcome that says why there is none
// (missing credential, bad recipient, refused base URL).
struct BuiltRequest {
  std::optional<HttpRequest> request;
  Outcome error;

  static BuiltRequest fail(std::string why, Outcome::Cause cause) {
    return {std::nullopt, Outcome::permanent(std::move(why), cause)};
  }
};

// A setting's value, "" when absent (or when there are no settings).
std::string_view setting(const ChannelSettings* settings, std::string_view name);

// The API base, by precedence: the channel key's `api_base` setting, then the global
// override for the type (`override_base`, from ChannelContext), then the provider's real
// default. Plain http:// is refused (permanent config, "insecure http base refused")
// unless the host is loopback or the setting allow_insecure_http is "1". `channel` names
// the channel in error texts. Without any base (no default), a config error.
std::optional<Url> choose_api_base(const ChannelSettings* settings, std::string_view override_base,
                                   std::string_view default_base, std::string_view channel,
                                   Outcome& error);

// True when a credential or id can go into a URL path or a header as it is: printable
// ASCII without spaces, '/', '?', '#', '%' or quotes.
bool safe_path_token(std::string_view s);

// The international digits of an E.164-ish phone number ("+33 6 12-34-56-78" ->
// "33612345678"); nullopt unless 7 to 15 digits with only +, spaces, dashes, dots and
// parentheses around them.
std::optional<std::string> phone_digits(std::string_view phone);

// A JSON POST to base.path + path.
HttpRequest json_post(const Url& base, std::string_view path, std::string body,
                      std::chrono::steady_clock::time_point deadline);

// Applies the channel key's `max_connections` setting to a built request: at most that many
// of the key's requests hold or wait for a connection at once (HttpRequest::cap_key is the
// channel key id), so that one busy key cannot take a provider's whole pool. Absent or
// "0": no cap. A malformed value fails the build: permanent config error naming `channel`.
BuiltRequest with_connection_cap(BuiltRequest built, const SendRequest& request,
                                 std::string_view channel);

// The global override of the ChannelContext for `type`, "" when none.
std::string override_for(const ChannelContext& context, std::string_view type);

using Classifier = Outcome (*)(int status, std::string_view body,
                               std::string_view retry_after_header, Secrets secrets);

// Sends and classifies: transport failures through classify_transport, HTTP replies
// through `classify` with the Retry-After header. `raw` (optional) receives the response.
boost::asio::awaitable<Outcome> send_and_classify(HttpClient* http, HttpRequest request,
                                                  Classifier classify, Secrets secrets,
                                                  HttpResponse* raw = nullptr);

}  // namespace cascade
