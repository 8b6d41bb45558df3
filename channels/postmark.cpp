#include "channels/postmark.hpp"

#include "util/json.hpp"

namespace cascade {

std::string email_subject(const Message& message) {
  if (!message.subject.empty()) return message.subject;
  std::string out;
  std::size_t chars = 0;
  for (std::size_t i = 0; i < message.text.size(); ++i) {
    auto c = static_cast<unsigned char>(message.text[i]);
    bool starts_char = (c & 0xC0) != 0x80;
    if (starts_char && ++chars > 78) break;
    out.push_back(c == '\r' || c == '\n' || c == '\t' ? ' ' : static_cast<char>(c));
  }
  return out;
}

PostmarkChannel::PostmarkChannel(ChannelContext& context)
    : http_(context.http), override_base_(override_for(context, "email")) {}

BuiltRequest PostmarkChannel::build(const SendRequest& request, std::string_view override_base) {
  using Cause = Outcome::Cause;
  Outcome error;
  auto base = choose_api_base(request.settings, override_base, default_api_base, "postmark", error);
  if (!base) return {std::nullopt, error};
  auto token = setting(request.settings, "server_token");
  if (token.empty()) return BuiltRequest::fail("postmark: server_token not set", Cause::config);
  if (!safe_path_token(token))
    return BuiltRequest::fail("postmark: malformed server_token", Cause::config);
  auto from = setting(request.settings, "from");
  if (from.empty()) return BuiltRequest::fail("postmark: from address not set", Cause::config);
  if (!request.message) return BuiltRequest::fail("postmark: no message", Cause::content);
  const std::string& to = request.recipient;
  if (to.find('@') == std::string::npos || to.find_first_of("\r\n,;") != std::string::npos)
    return BuiltRequest::fail("email: invalid address", Cause::recipient);
  auto stream = setting(request.settings, "message_stream");

  std::string body;
  json::ObjectWriter w(body);
  w.field("From", from)
      .field("To", std::string_view(to))
      .field("Subject", email_subject(*request.message))
      .field("TextBody", std::string_view(request.message->text));
  if (!request.message->html.empty()) w.field("HtmlBody", std::string_view(request.message->html));
  w.field("MessageStream", stream.empty() ? std::string_view("outbound") : stream);
  w.close();
  auto req = json_post(*base, "/email", std::move(body), request.deadline);
  req.headers.emplace_back("X-Postmark-Server-Token", std::string(token));
  return with_connection_cap({std::move(req), {}}, request, "postmark");
}

boost::asio::awaitable<Outcome> PostmarkChannel::send(const SendRequest& request) {
  auto built = build(request, override_base_);
  if (!built.request) co_return built.error;
  std::string_view secrets[] = {setting(request.settings, "server_token")};
  co_return co_await send_and_classify(http_, std::move(*built.request), classify_postmark,
                                       secrets);
}

}  // namespace cascade
