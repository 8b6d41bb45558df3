#include "util/rate.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>

namespace cascade {
namespace {

std::optional<double> number(std::string_view s) {
  if (s.empty()) return std::nullopt;
  double v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size() || !std::isfinite(v) || v < 0)
    return std::nullopt;
  return v;
}

}  // namespace

std::int64_t Rate::interval_us() const {
  return std::llround(1e6 / per_second);
}
std::int64_t Rate::tolerance_us() const {
  return std::llround((burst - 1) * 1e6 / per_second);
}

std::optional<Rate> parse_rate(std::string_view text, std::string* error) {
  auto fail = [&]() -> std::optional<Rate> {
    if (error)
      *error = "a rate looks like 30/s, 600/m, 100/h or 30/s:10 (burst), or 0 for no limit";
    return std::nullopt;
  };
  if (text == "0" || text == "unlimited" || text == "none") return Rate{};
  std::optional<double> burst;
  if (auto colon = text.find(':'); colon != std::string_view::npos) {
    burst = number(text.substr(colon + 1));
    if (!burst || *burst < 1) return fail();
    text = text.substr(0, colon);
  }
  double per = 1;
  if (auto slash = text.find('/'); slash != std::string_view::npos) {
    auto unit = text.substr(slash + 1);
    if (unit == "s")
      per = 1;
    else if (unit == "m")
      per = 60;
    else if (unit == "h")
      per = 3600;
    else
      return fail();
    text = text.substr(0, slash);
  }
  auto n = number(text);
  if (!n) return fail();
  Rate r;
  r.per_second = *n / per;
  if (r.per_second == 0) return Rate{};
  r.burst = burst ? *burst : std::max(1.0, std::floor(r.per_second));
  return r;
}

}  // namespace cascade
