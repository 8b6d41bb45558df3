// The built-in channel types. "email" is one type with two providers, chosen per channel
// key by its `provider` setting.
#include <boost/asio/awaitable.hpp>

#include "channels/channel.hpp"
#include "channels/postmark.hpp"
#include "channels/smtp.hpp"
#include "channels/telegram.hpp"
#include "channels/waba.hpp"
#include "channels/whatsapp.hpp"

namespace cascade {
namespace {

boost::asio::awaitable<Outcome> ready(Outcome outcome) {
  co_return outcome;
}

class EmailChannel final : public Channel {
 public:
  explicit EmailChannel(ChannelContext& context) : postmark_(context), smtp_(context) {}

  boost::asio::awaitable<Outcome> send(const SendRequest& request) override {
    auto provider = setting(request.settings, "provider");
    if (provider == "postmark") return postmark_.send(request);
    if (provider == "smtp") return smtp_.send(request);
    if (provider.empty())
      return ready(Outcome::permanent("email: provider not set", Outcome::Cause::config));
    return ready(Outcome::permanent("email: unknown provider", Outcome::Cause::config));
  }
  bool honours_deadline() const override { return true; }

 private:
  PostmarkChannel postmark_;
  SmtpChannel smtp_;
};

template <class T>
ChannelFactory factory() {
  return [](ChannelContext& context) -> std::unique_ptr<Channel> {
    return std::make_unique<T>(context);
  };
}

}  // namespace

ChannelRegistry ChannelRegistry::with_builtins() {
  ChannelRegistry registry;
  registry.add("telegram", factory<TelegramChannel>());
  registry.add("whatsapp", factory<WhatsAppChannel>());
  registry.add("waba", factory<WabaChannel>());
  registry.add("email", factory<EmailChannel>());
  return registry;
}

}  // namespace cascade
