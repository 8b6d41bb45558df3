#pragma once
#include <string_view>

namespace cascade {

enum class LogFormat { text, json };

// Configures the default spdlog logger: stderr, the given format and level
// ("trace".."off"). Never log secrets: callers log ids and origins, never keys or URLs
// with paths (a Telegram token lives in the path).
void init_logging(LogFormat format, std::string_view level);

}  // namespace cascade
