#pragma once
// The Redis-backed store of accounts, API keys and channel keys. cascadectl manages
// through it; the verifier looks up through it.
//
// Layout (P = prefix):
//   P:account:<id>            HASH name status created
//   P:accounts                SET  account ids
//   P:apikey:<sha256 hex>     HASH id account name scopes channels status created expires rate
//   P:apikey-id:<id>          STRING sha256 hex of that key's current secret
//   P:apikey-digests:<id>     SET  sha256 hex of every secret ever issued for that id
//                                  (create and rotate add; revoke reaches them all)
//   P:account:<id>:apikeys    SET  key ids
//   P:chkey:<sha256 hex>      HASH id account type name status created s.<setting>...
//                                  (secret settings sealed: auth/secrets.hpp)
//   P:chkey-id:<id>           STRING sha256 hex
//   P:account:<id>:chkeys     SET  channel key ids
//   P:usage:<key id>          HASH accepted delivered failed rejected last_used
//   P:rate:<key id>           STRING GCRA state of the key's rate limit
//   P:auth-events             pub/sub: "apikey <hex>", "chkey <hex>", "account <id>"
#include <boost/asio/awaitable.hpp>

#include <chrono>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "auth/key.hpp"
#include "auth/records.hpp"
#include "auth/secrets.hpp"

namespace cascade::redis {
class Connection;
}

namespace cascade::auth {

class StoreError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct NewApiKey {
  ApiKey record;
  std::string key;  // the secret, shown once
};

struct NewChannelKey {
  ChannelKey record;
  std::string key;  // the secret, shown once
};

class Store {
 public:
  // `keys` seals the secret settings of new channel keys and opens them on look-up
  // (nullptr: no master key; creating a channel key with a secret is then refused, and a
  // sealed setting is dropped on look-up).
  Store(redis::Connection& redis, std::string prefix,
        std::shared_ptr<const KeyRing> keys = nullptr);

  boost::asio::awaitable<Account> create_account(std::string name);
  // Throws StoreError when the account does not exist.
  boost::asio::awaitable<void> set_account_status(std::string id, std::string status);
  boost::asio::awaitable<std::optional<Account>> find_account(std::string id);

  // `record` carries account, name, scopes, channels, expires_ms, rate. Throws
  // StoreError when the account (or a restricted channel key) does not exist.
  boost::asio::awaitable<NewApiKey> create_api_key(ApiKey record);
  boost::asio::awaitable<std::vector<ApiKey>> list_api_keys(std::string account);
  // Revokes every secret ever issued for key `id` (a rotated key's old secrets too), in
  // one atomic step, and announces each digest.
  boost::asio::awaitable<void> revoke_api_key(std::string id);
  // A new secret for key `id`; every earlier secret keeps working for `grace` at most
  // (0: they stop at once). Refused for a revoked or expired key.
  boost::asio::awaitable<NewApiKey> rotate_api_key(std::string id, std::chrono::milliseconds grace);
  // Usage counters of key `id` (accepted, delivered, failed, rejected, last_used ms).
  boost::asio::awaitable<std::map<std::string, std::int64_t>> usage(std::string id);

  boost::asio::awaitable<NewChannelKey> create_channel_key(ChannelKey record);
  // Secret settings as stored (sealed): listing never needs them.
  boost::asio::awaitable<std::vector<ChannelKey>> list_channel_keys(std::string account);
  boost::asio::awaitable<void> set_channel_status(std::string id, std::string status);
  boost::asio::awaitable<void> delete_channel_key(std::string id);
  // Re-seals the secret settings of channel key `id` (every channel key when empty) under
  // the current master key: legacy plaintext and settings sealed under an older key.
  // Returns how many settings were re-sealed. Throws StoreError when a setting opens with
  // no key of the ring.
  boost::asio::awaitable<std::size_t> rekey_channel_keys(std::string id);

  // Look-ups by digest for the verifier: one round trip each. Channel keys come with
  // their secret settings opened (plaintext in memory only).
  boost::asio::awaitable<std::optional<ApiKey>> find_api_key(const Digest& digest);
  boost::asio::awaitable<std::vector<std::optional<ChannelKey>>> find_channel_keys(
      const std::vector<Digest>& digests);

  const std::string& prefix() const { return prefix_; }
  // The pub/sub channel on which every change to keys and accounts is announced.
  std::string events_channel() const;

 private:
  // The digests of every record of a kind ("apikey", "chkey"): one SCAN pass (admin
  // operations only: it walks the keyspace).
  boost::asio::awaitable<std::vector<std::string>> all_digests(std::string_view kind);
  std::string key(std::string_view a, std::string_view b) const;
  // Digests of key `id` missing from P:apikey-digests:<id> because they were issued
  // before that set existed (empty when the set exists).
  boost::asio::awaitable<std::vector<std::string>> unindexed_api_key_digests(std::string id);
  boost::asio::awaitable<std::size_t> rekey_record(std::string hex);
  // Opens the sealed settings of `k` in place (fields as stored); legacy plaintext is
  // kept. A setting that does not open is dropped, and said so in the log.
  void open_secrets(ChannelKey& k) const;
  redis::Connection& redis_;
  std::string prefix_;
  std::shared_ptr<const KeyRing> keys_;
};

}  // namespace cascade::auth
