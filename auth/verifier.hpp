#pragma once
// The verdicts of SPEC §2, in their order. Verdicts 1–6 concern the API key and come
// from authenticate(); 7 (the body) is the engine's; 8–9 come from authorize_channels().
#include <boost/asio/awaitable.hpp>

#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "auth/records.hpp"

namespace cascade::auth {

class Store;

struct Verdict {
  int status = 0;       // HTTP-like status of the rejection
  std::string error;    // exact SPEC text
  std::string field;    // for 400s on a body field
  int retry_after = 0;  // for 429

  static Verdict reject(int status, std::string error, std::string field = {}) {
    Verdict v;
    v.status = status;
    v.error = std::move(error);
    v.field = std::move(field);
    return v;
  }
};

struct Principal {
  ApiKey key;
  Account account;
};

struct ChannelToken {
  std::string channel;  // whatsapp | waba | telegram | email
  std::string token;    // ck_... (secret)
};

class Verifier {
 public:
  explicit Verifier(Store& store) : store_(store) {}

  boost::asio::awaitable<std::variant<Principal, Verdict>> authenticate(
      std::optional<std::string_view> authorization, std::optional<std::string_view> x_api_key);

  // The channel key records, in the order of `uses`, or the first rejection.
  boost::asio::awaitable<std::variant<std::vector<ChannelKey>, Verdict>> authorize_channels(
      const Principal& principal, const std::vector<ChannelToken>& uses);

 private:
  Store& store_;
};

}  // namespace cascade::auth
