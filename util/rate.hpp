#pragma once
// Rates as operators write them: "30/s", "600/m:5", "100/h", "12" (per second), each with an
// optional ":burst"; "0", "unlimited" or "none" for no limit. Used for API key rate limits
// and for channel key pacing. Pure.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace cascade {

struct Rate {
  double per_second = 0;  // 0: unlimited
  double burst = 1;       // requests allowed back to back (at least 1)

  bool unlimited() const { return per_second <= 0; }
  // GCRA terms: the time one request costs, and how far ahead a burst may run.
  std::int64_t interval_us() const;
  std::int64_t tolerance_us() const;
};

// nullopt (and *error, a sentence) when malformed. The default burst is one second's worth.
std::optional<Rate> parse_rate(std::string_view text, std::string* error = nullptr);

}  // namespace cascade
