#include "channels/waba.hpp"

#include <algorithm>

#include "util/json.hpp"

namespace cascade {
namespace {

// "v23.0": what Graph accepts as a version path segment.
bool valid_version(std::string_view v) {
  if (v.size() < 2 || v[0] != 'v') return false;
  auto dot = v.find('.');
  auto digits = [](std::string_view s) {
    return !s.empty() &&
           std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
  };
  return dot != std::string_view::npos && digits(v.substr(1, dot - 1)) && digits(v.substr(dot + 1));
}

}  // namespace

WabaChannel::WabaChannel(ChannelContext& context)
    : http_(context.http), override_base_(override_for(context, "waba")) {}

BuiltRequest WabaChannel::build(const SendRequest& request, std::string_view override_base) {
  using Cause = Outcome::Cause;
  Outcome error;
  auto base = choose_api_base(request.settings, override_base, default_api_base, "waba", error);
  if (!base) return {std::nullopt, error};
  auto number_id = setting(request.settings, "phone_number_id");
  if (number_id.empty()) return BuiltRequest::fail("waba: phone_number_id not set", Cause::config);
  if (!safe_path_token(number_id))
    return BuiltRequest::fail("waba: malformed phone_number_id", Cause::config);
  auto token = setting(request.settings, "access_token");
  if (token.empty()) return BuiltRequest::fail("waba: access_token not set", Cause::config);
  if (!safe_path_token(token))
    return BuiltRequest::fail("waba: malformed access_token", Cause::config);
  auto version = setting(request.settings, "version");
  if (version.empty()) version = default_version;
  if (!valid_version(version)) return BuiltRequest::fail("waba: malformed version", Cause::config);
  if (!request.message) return BuiltRequest::fail("waba: no message", Cause::content);
  auto digits = phone_digits(request.recipient);
  if (!digits) return BuiltRequest::fail("waba: invalid phone number", Cause::recipient);

  std::string text;
  json::ObjectWriter(text)
      .field("body", std::string_view(request.message->text))
      .field("preview_url", false)
      .close();
  std::string body;
  json::ObjectWriter(body)
      .field("messaging_product", "whatsapp")
      .field("recipient_type", "individual")
      .field("to", "+" + *digits)
      .field("type", "text")
      .raw("text", text)
      .close();
  // Appended, not `"/" + std::string(...)`: g++ 12 -O3 reports that insert as an
  // overlapping memcpy (-Wrestrict, a false positive).
  std::string target = "/";
  target.append(version).append("/").append(number_id).append("/messages");
  auto req = json_post(*base, target, std::move(body), request.deadline);
  std::string authorization = "Bearer ";
  authorization.append(token);
  req.headers.emplace_back("Authorization", std::move(authorization));
  return with_connection_cap({std::move(req), {}}, request, "waba");
}

boost::asio::awaitable<Outcome> WabaChannel::send(const SendRequest& request) {
  auto built = build(request, override_base_);
  if (!built.request) co_return built.error;
  std::string_view secrets[] = {setting(request.settings, "access_token")};
  co_return co_await send_and_classify(http_, std::move(*built.request), classify_waba, secrets);
}

}  // namespace cascade
