#include "util/log.hpp"

#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include <string>

namespace cascade {

void init_logging(LogFormat format, std::string_view level) {
  auto logger = spdlog::stderr_logger_mt("cascade");
  if (format == LogFormat::json) {
    // Message text is produced by our code from ids and numbers only; quotes are escaped
    // by keeping messages free of them (see log call sites).
    logger->set_pattern(R"({"ts":"%Y-%m-%dT%H:%M:%S.%eZ","level":"%l","msg":"%v"})",
                        spdlog::pattern_time_type::utc);
  } else {
    logger->set_pattern("%Y-%m-%dT%H:%M:%S.%eZ %l %v", spdlog::pattern_time_type::utc);
  }
  logger->set_level(spdlog::level::from_str(std::string(level)));
  spdlog::set_default_logger(logger);
}

}  // namespace cascade
