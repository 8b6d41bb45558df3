#pragma once
#include <chrono>
#include <string>

namespace cascade {

// What one send attempt on one channel came to. Classifiers map every provider reply
// onto this, so the retry policy is the same for every channel.
struct Outcome {
  enum class Kind {
    sent,         // provider accepted; provider_id set when it gave one
    retry_after,  // provider said when to try again (retry_after)
    transient,    // 5xx, timeout, connection refused, throttled without a hint
    permanent,    // bad recipient, content, credentials/config: never retried
  };
  enum class Cause { none, recipient, content, config, network, provider, throttled, paused };

  Kind kind = Kind::transient;
  Cause cause = Cause::none;
  std::string provider_id;
  // Words a support engineer understands, e.g. "provider returned 503",
  // "chat not found (telegram 400)". Never contains a credential or a URL path.
  std::string error;
  std::chrono::milliseconds retry_after{0};
  // The request was fully written but no reply came: the provider may have delivered.
  bool unknown = false;

  bool ok() const { return kind == Kind::sent; }
  bool retryable() const { return kind == Kind::retry_after || kind == Kind::transient; }

  static Outcome sent(std::string id) {
    Outcome o;
    o.kind = Kind::sent;
    o.provider_id = std::move(id);
    return o;
  }
  static Outcome transient(std::string why, Cause c = Cause::provider) {
    Outcome o;
    o.kind = Kind::transient;
    o.cause = c;
    o.error = std::move(why);
    return o;
  }
  static Outcome permanent(std::string why, Cause c) {
    Outcome o;
    o.kind = Kind::permanent;
    o.cause = c;
    o.error = std::move(why);
    return o;
  }
  static Outcome after(std::chrono::milliseconds t, std::string why) {
    Outcome o;
    o.kind = Kind::retry_after;
    o.cause = Cause::throttled;
    o.retry_after = t;
    o.error = std::move(why);
    return o;
  }
};

}  // namespace cascade
