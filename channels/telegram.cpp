#include "channels/telegram.hpp"

#include <charconv>

#include "util/json.hpp"

namespace cascade {

TelegramChannel::TelegramChannel(ChannelContext& context)
    : http_(context.http), override_base_(override_for(context, "telegram")) {}

BuiltRequest TelegramChannel::build(const SendRequest& request, std::string_view override_base,
                                    std::optional<std::int64_t> chat_id) {
  using Cause = Outcome::Cause;
  Outcome error;
  auto base = choose_api_base(request.settings, override_base, default_api_base, "telegram", error);
  if (!base) return {std::nullopt, error};
  auto token = setting(request.settings, "bot_token");
  if (token.empty()) return BuiltRequest::fail("telegram: bot_token not set", Cause::config);
  if (!safe_path_token(token))
    return BuiltRequest::fail("telegram: malformed bot_token", Cause::config);
  if (!request.message) return BuiltRequest::fail("telegram: no message", Cause::content);

  std::string body;
  json::ObjectWriter w(body);
  if (chat_id) {
    w.field("chat_id", *chat_id);
  } else {
    const std::string& to = request.recipient;
    // int64 ids (they exceed 32 bits) as numbers; anything else (@channelusername) as a
    // string, which Telegram resolves or rejects with "chat not found".
    std::int64_t id = 0;
    auto [end, ec] = std::from_chars(to.data(), to.data() + to.size(), id);
    bool numeric = !to.empty() && ec == std::errc() && end == to.data() + to.size() && to[0] != '+';
    if (numeric)
      w.field("chat_id", id);
    else if (!to.empty())
      w.field("chat_id", std::string_view(to));
    else
      return BuiltRequest::fail("telegram: no recipient", Cause::recipient);
  }
  w.field("text", std::string_view(request.message->text));
  w.close();
  return with_connection_cap({json_post(*base, "/bot" + std::string(token) + "/sendMessage",
                                        std::move(body), request.deadline),
                              {}},
                             request, "telegram");
}

boost::asio::awaitable<Outcome> TelegramChannel::send(const SendRequest& request) {
  auto built = build(request, override_base_);
  if (!built.request) co_return built.error;
  std::string_view secrets[] = {setting(request.settings, "bot_token")};
  HttpResponse raw;
  auto outcome = co_await send_and_classify(http_, std::move(*built.request), classify_telegram,
                                            secrets, &raw);
  // A group that became a supergroup answers with the new chat id: resend there, once.
  if (outcome.kind == Outcome::Kind::permanent && outcome.cause == Outcome::Cause::recipient) {
    if (auto moved = telegram_migrate_to_chat_id(raw.body)) {
      auto again = build(request, override_base_, *moved);
      if (again.request)
        outcome = co_await send_and_classify(http_, std::move(*again.request), classify_telegram,
                                             secrets);
    }
  }
  co_return outcome;
}

}  // namespace cascade
