#pragma once
// What the store keeps about accounts and keys. Secrets are never stored: keys are
// looked up by the SHA-256 of their text.
#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace cascade::auth {

struct Account {
  std::string id;  // acc_...
  std::string name;
  std::string status;  // "active" | "paused"
  std::int64_t created_ms = 0;
};

struct ApiKey {
  std::string id;  // key_... (not secret; shown by `apikey list`)
  std::string account;
  std::string name;
  std::vector<std::string> scopes;    // send, read, manage, events, admin
  std::vector<std::string> channels;  // restriction: channel key ids; empty = any
  std::string status = "active";      // "active" | "revoked"
  std::int64_t created_ms = 0;
  std::int64_t expires_ms = 0;  // 0 = never
  std::string rate;             // "100/s:200" as given, empty = unlimited

  bool has_scope(std::string_view scope) const;
};

struct ChannelKey {
  std::string id;  // chk_...
  std::string account;
  std::string type;  // whatsapp | waba | telegram | email
  std::string name;
  std::string status = "active";  // "active" | "paused"
  std::int64_t created_ms = 0;
  // Provider settings (bot_token, api_base, ...). Secrets: never logged or listed.
  std::map<std::string, std::string, std::less<>> settings;
};

}  // namespace cascade::auth
