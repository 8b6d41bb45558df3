#pragma once
// WhatsApp through a WhatsApp-Web gateway, WAHA style: POST {api_base}/api/sendText with
// {"session", "chatId": "<digits>@c.us", "text"}. Settings: api_base (the gateway; no
// default), session (default "default"), gateway_key (optional, secret: X-Api-Key).
#include <string>

#include "channels/channel.hpp"
#include "channels/http_adapter.hpp"

namespace cascade {

class WhatsAppChannel final : public Channel {
 public:
  explicit WhatsAppChannel(ChannelContext& context);
  boost::asio::awaitable<Outcome> send(const SendRequest& request) override;
  bool honours_deadline() const override { return true; }

  static BuiltRequest build(const SendRequest& request, std::string_view override_base);

 private:
  HttpClient* http_;
  std::string override_base_;
};

}  // namespace cascade
