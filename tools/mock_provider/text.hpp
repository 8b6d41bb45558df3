#pragma once
// String concatenation for the mock's messages and ids.
#include <string>
#include <string_view>

namespace cascade::mock {

// Concatenates anything convertible to std::string_view with one allocation. Used instead
// of literal + std::string chains, which GCC 12 at -O3 flags with a false -Wrestrict.
template <class... Parts>
std::string cat(const Parts&... parts) {
  const std::string_view views[] = {std::string_view(parts)...};
  std::size_t size = 0;
  for (auto v : views)
    size += v.size();
  std::string out;
  out.reserve(size);
  for (auto v : views)
    out.append(v);
  return out;
}

}  // namespace cascade::mock
