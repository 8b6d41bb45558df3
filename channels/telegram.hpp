#pragma once
// Telegram Bot API: POST {base}/bot{bot_token}/sendMessage {"chat_id", "text"}.
// Settings: bot_token (secret), api_base (optional; default https://api.telegram.org).
#include <cstdint>
#include <optional>
#include <string>

#include "channels/channel.hpp"
#include "channels/http_adapter.hpp"

namespace cascade {

class TelegramChannel final : public Channel {
 public:
  static constexpr std::string_view default_api_base = "https://api.telegram.org";

  explicit TelegramChannel(ChannelContext& context);
  boost::asio::awaitable<Outcome> send(const SendRequest& request) override;
  bool honours_deadline() const override { return true; }

  // The request for one send. Numeric chat ids go out as JSON numbers, @usernames as
  // strings. `chat_id` replaces the recipient (resend after a supergroup migration).
  static BuiltRequest build(const SendRequest& request, std::string_view override_base,
                            std::optional<std::int64_t> chat_id = std::nullopt);

 private:
  HttpClient* http_;
  std::string override_base_;
};

}  // namespace cascade
