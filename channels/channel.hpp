#pragma once
// The Channel interface: one implementation per channel type (telegram, whatsapp, ...).
// Embedding code may register its own types in a ChannelRegistry.
#include <boost/asio/awaitable.hpp>

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <string>

#include "channels/outcome.hpp"

namespace cascade {

class HttpClient;

// Provider settings of one channel key (bot_token, api_base, session, gateway_key, ...),
// as stored with the key. Values are secrets where the name says so; never log them.
using ChannelSettings = std::map<std::string, std::string, std::less<>>;

struct Message {
  std::string text;
  std::string subject;  // email only; empty means "first 78 characters of text"
  std::string html;     // email only
};

struct SendRequest {
  std::string job_id;                 // for logs and stable Message-IDs
  std::string channel_key_id;         // chk_... of the channel key ("" when unknown)
  const ChannelSettings* settings{};  // the channel key's provider settings
  std::string recipient;              // to.phone / to.telegram / to.email as given
  const Message* message{};
  // The attempt must complete (successfully or not) by this time.
  std::chrono::steady_clock::time_point deadline;
};

class Channel {
 public:
  virtual ~Channel() = default;
  // One attempt: never throws for provider or network failures, they are Outcomes.
  virtual boost::asio::awaitable<Outcome> send(const SendRequest& request) = 0;
  // True when send() always completes by request.deadline on its own (the built-in
  // types). Otherwise the engine races every send against a backstop timer, which costs a
  // timer and two coroutines per send.
  virtual bool honours_deadline() const { return false; }
};

// Shared resources handed to channel factories.
struct ChannelContext {
  HttpClient* http{};
  // Global API base overrides (CASCADE_TELEGRAM_API_BASE, ...) keyed by channel type.
  std::map<std::string, std::string, std::less<>> api_base_overrides;
};

using ChannelFactory = std::function<std::unique_ptr<Channel>(ChannelContext&)>;

class ChannelRegistry {
 public:
  // The built-in types: telegram, whatsapp (and more as they are written).
  static ChannelRegistry with_builtins();
  void add(std::string type, ChannelFactory factory) {
    factories_[std::move(type)] = std::move(factory);
  }
  bool has(std::string_view type) const { return factories_.find(type) != factories_.end(); }
  const std::map<std::string, ChannelFactory, std::less<>>& factories() const { return factories_; }

 private:
  std::map<std::string, ChannelFactory, std::less<>> factories_;
};

}  // namespace cascade
