#include "auth/verifier.hpp"

#include <algorithm>

#include "auth/credentials.hpp"
#include "auth/key.hpp"
#include "auth/store.hpp"
#include "util/time.hpp"

namespace asio = boost::asio;

namespace cascade::auth {

asio::awaitable<std::variant<Principal, Verdict>> Verifier::authenticate(
    std::optional<std::string_view> authorization, std::optional<std::string_view> x_api_key) {
  auto cred = extract_api_key(authorization, x_api_key);
  if (auto* err = std::get_if<CredentialError>(&cred)) {
    if (*err == CredentialError::missing) co_return Verdict::reject(401, "API key is missing");
    co_return Verdict::reject(400, "Invalid request: conflicting credentials");
  }
  const auto& key = std::get<std::string>(cred);
  // Garbage fails here, before any Redis I/O.
  if (!valid_key_format(key, KeyKind::api)) co_return Verdict::reject(401, "Invalid API key");
  auto record = co_await store_.find_api_key(sha256(key));
  if (!record || record->status != "active") co_return Verdict::reject(401, "Invalid API key");
  if (record->expires_ms != 0 && now_unix_ms() >= record->expires_ms)
    co_return Verdict::reject(401, "Invalid API key");
  if (!record->has_scope("send"))
    co_return Verdict::reject(403, "API key does not have the send permission");
  auto account = co_await store_.find_account(record->account);
  if (!account) co_return Verdict::reject(401, "Invalid API key");
  if (account->status != "active") co_return Verdict::reject(403, "Account is paused");
  co_return Principal{std::move(*record), std::move(*account)};
}

asio::awaitable<std::variant<std::vector<ChannelKey>, Verdict>> Verifier::authorize_channels(
    const Principal& principal, const std::vector<ChannelToken>& uses) {
  auto foreign = [](const std::string& channel) {
    return Verdict::reject(403, "Channel key for " + channel + " does not belong to this account");
  };
  std::vector<Digest> digests;
  for (const auto& use : uses) {
    if (!valid_key_format(use.token, KeyKind::channel)) co_return foreign(use.channel);
    digests.push_back(sha256(use.token));
  }
  auto found = co_await store_.find_channel_keys(digests);
  std::vector<ChannelKey> out;
  for (std::size_t i = 0; i < uses.size(); ++i) {
    if (!found[i] || found[i]->account != principal.account.id) co_return foreign(uses[i].channel);
  }
  for (std::size_t i = 0; i < uses.size(); ++i) {
    const auto& allowed = principal.key.channels;
    if (!allowed.empty() &&
        std::find(allowed.begin(), allowed.end(), found[i]->id) == allowed.end())
      co_return Verdict::reject(403, "API key does not authorize this channel key");
  }
  for (std::size_t i = 0; i < uses.size(); ++i) {
    if (found[i]->type != uses[i].channel) {
      // A key of this account used under the wrong channel name: the producer's mistake,
      // so a 400 that names the field rather than a misleading ownership error.
      co_return Verdict::reject(400,
                                "Invalid request: keys." + uses[i].channel + ".token is a " +
                                    found[i]->type + " channel key",
                                "keys." + uses[i].channel + ".token");
    }
    out.push_back(std::move(*found[i]));
  }
  co_return out;
}

}  // namespace cascade::auth
