#pragma once
// WhatsApp Business Platform (Cloud API): POST {base}/{version}/{phone_number_id}/messages
// with Authorization: Bearer {access_token} and a text message. Settings: phone_number_id,
// access_token (secret), version (default v23.0), api_base (default
// https://graph.facebook.com).
#include <string>

#include "channels/channel.hpp"
#include "channels/http_adapter.hpp"

namespace cascade {

class WabaChannel final : public Channel {
 public:
  static constexpr std::string_view default_api_base = "https://graph.facebook.com";
  static constexpr std::string_view default_version = "v23.0";

  explicit WabaChannel(ChannelContext& context);
  boost::asio::awaitable<Outcome> send(const SendRequest& request) override;
  bool honours_deadline() const override { return true; }

  static BuiltRequest build(const SendRequest& request, std::string_view override_base);

 private:
  HttpClient* http_;
  std::string override_base_;
};

}  // namespace cascade
