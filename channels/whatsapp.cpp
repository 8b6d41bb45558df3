#include "channels/whatsapp.hpp"

#include "util/json.hpp"

namespace cascade {

WhatsAppChannel::WhatsAppChannel(ChannelContext& context)
    : http_(context.http), override_base_(override_for(context, "whatsapp")) {}

BuiltRequest WhatsAppChannel::build(const SendRequest& request, std::string_view override_base) {
  using Cause = Outcome::Cause;
  Outcome error;
  auto base = choose_api_base(request.settings, override_base, {}, "whatsapp", error);
  if (!base) return {std::nullopt, error};
  auto key = setting(request.settings, "gateway_key");
  if (!key.empty() && !safe_path_token(key))
    return BuiltRequest::fail("whatsapp: malformed gateway_key", Cause::config);
  if (!request.message) return BuiltRequest::fail("whatsapp: no message", Cause::content);
  auto digits = phone_digits(request.recipient);
  if (!digits) return BuiltRequest::fail("whatsapp: invalid phone number", Cause::recipient);
  auto session = setting(request.settings, "session");

  std::string body;
  json::ObjectWriter(body)
      .field("session", session.empty() ? std::string_view("default") : session)
      .field("chatId", *digits + "@c.us")
      .field("text", std::string_view(request.message->text))
      .close();
  auto req = json_post(*base, "/api/sendText", std::move(body), request.deadline);
  if (!key.empty()) req.headers.emplace_back("X-Api-Key", std::string(key));
  return with_connection_cap({std::move(req), {}}, request, "whatsapp");
}

boost::asio::awaitable<Outcome> WhatsAppChannel::send(const SendRequest& request) {
  auto built = build(request, override_base_);
  if (!built.request) co_return built.error;
  std::string_view secrets[] = {setting(request.settings, "gateway_key")};
  co_return co_await send_and_classify(http_, std::move(*built.request), classify_whatsapp_waha,
                                       secrets);
}

}  // namespace cascade
