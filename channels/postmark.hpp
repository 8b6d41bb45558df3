#pragma once
// Email through Postmark's HTTP API: POST {base}/email with X-Postmark-Server-Token and
// {From, To, Subject, TextBody, HtmlBody, MessageStream}. Settings: server_token (secret),
// from, message_stream (default "outbound"), api_base (default https://api.postmarkapp.com).
#include <string>

#include "channels/channel.hpp"
#include "channels/http_adapter.hpp"

namespace cascade {

class PostmarkChannel final : public Channel {
 public:
  static constexpr std::string_view default_api_base = "https://api.postmarkapp.com";

  explicit PostmarkChannel(ChannelContext& context);
  boost::asio::awaitable<Outcome> send(const SendRequest& request) override;
  bool honours_deadline() const override { return true; }

  static BuiltRequest build(const SendRequest& request, std::string_view override_base);

 private:
  HttpClient* http_;
  std::string override_base_;
};

// The subject to send: message.subject, else the first 78 characters of the text (line
// breaks as spaces), as SPEC §1.1 says.
std::string email_subject(const Message& message);

}  // namespace cascade
