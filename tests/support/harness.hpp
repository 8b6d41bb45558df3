#pragma once
// Helpers that drive Cascade as a producer would: through Redis only.
#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <map>

#include "auth/records.hpp"
#include "channels/channel.hpp"
#include "engine/config.hpp"
#include "redis/reply.hpp"

namespace cascade::test {

// A blocking Redis client for test code (its own io_context, run per call).
class SyncRedis {
 public:
  explicit SyncRedis(const std::string& url);
  ~SyncRedis();
  redis::Reply exec(redis::Command c,
                    std::optional<std::chrono::milliseconds> timeout = std::nullopt);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// The engine on its own thread with its own io_context, as a daemon would run it.
class EngineThread {
 public:
  explicit EngineThread(EngineConfig config);
  EngineThread(EngineConfig config, ChannelRegistry registry);
  ~EngineThread();  // stops (drains) and joins
  void stop();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Account, API key and channel keys made through the store, as cascadectl would.
struct Tenant {
  std::string account;
  std::string api_key;                              // ak_...
  std::map<std::string, std::string> channel_keys;  // name -> ck_...
  std::map<std::string, std::string> channel_ids;   // name -> chk_...
};

class Admin {
 public:
  Admin(const std::string& url, std::string prefix);
  ~Admin();
  std::string create_account(const std::string& name);
  // Returns the key text; *id receives the key id.
  std::string create_api_key(const std::string& account, std::vector<std::string> scopes = {"send"},
                             std::vector<std::string> channels = {}, std::int64_t expires_ms = 0,
                             std::string* id = nullptr, std::string rate = {});
  std::string create_channel_key(const std::string& account, const std::string& type,
                                 std::map<std::string, std::string, std::less<>> settings,
                                 std::string* id = nullptr);
  void set_account_status(const std::string& account, const std::string& status);
  void set_channel_status(const std::string& id, const std::string& status);
  void revoke_api_key(const std::string& id);
  // Returns the new key text.
  std::string rotate_api_key(const std::string& id, std::chrono::milliseconds grace);
  std::map<std::string, std::int64_t> usage(const std::string& id);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Pushes a job (XADD <prefix>:jobs) and returns its id. Fields as name/value pairs.
std::string push_job(SyncRedis& r, const std::string& prefix,
                     std::vector<std::pair<std::string, std::string>> fields);
// Waits for the result of job `id` (blocking reads of <prefix>:results, no polling
// sleeps); returns the result JSON or nullopt after `timeout`.
std::optional<std::string> wait_result(
    SyncRedis& r, const std::string& prefix, const std::string& id,
    std::chrono::milliseconds timeout = std::chrono::seconds(20));

}  // namespace cascade::test
