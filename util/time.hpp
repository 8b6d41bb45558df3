#pragma once
#include <chrono>
#include <optional>
#include <string>
#include <string_view>

namespace cascade {

// "2026-11-24T10:15:03.412Z"
std::string iso8601_utc(std::chrono::system_clock::time_point t);
std::int64_t unix_ms(std::chrono::system_clock::time_point t);
std::int64_t now_unix_ms();

// Parses durations like "250ms", "30s", "5m", "24h", "30d" (a bare number is seconds).
std::optional<std::chrono::milliseconds> parse_duration(std::string_view text);

}  // namespace cascade
