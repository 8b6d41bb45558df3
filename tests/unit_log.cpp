// --log-format json writes one valid JSON object per line, whatever the message holds.
#include <gtest/gtest.h>
#include <simdjson.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <string>

#include "util/log.hpp"

TEST(JsonLogs, EveryLineIsValidJsonEvenWithQuotesAndControlCharacters) {
  char path[] = "/tmp/cascade-log-XXXXXX";
  int fd = mkstemp(path);
  ASSERT_GE(fd, 0);
  int saved = dup(2);
  dup2(fd, 2);
  cascade::init_logging(cascade::LogFormat::json, "info");
  spdlog::info("redis said \"ERR\" \\ at\ttab\nnewline {}", std::string("\xff bad utf8"));
  spdlog::warn("plain");
  spdlog::default_logger()->flush();
  dup2(saved, 2);
  close(saved);
  close(fd);
  spdlog::drop("cascade");
  std::ifstream in(path);
  std::string line;
  int lines = 0;
  simdjson::dom::parser parser;
  while (std::getline(in, line)) {
    ++lines;
    auto doc = parser.parse(line);
    ASSERT_FALSE(doc.error()) << line;
    std::string_view msg = doc["msg"].get_string().value();
    if (lines == 1) {
      EXPECT_NE(msg.find("\"ERR\""), std::string_view::npos);
    }
  }
  EXPECT_EQ(lines, 2);
  std::remove(path);
}
