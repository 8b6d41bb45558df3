// The pacing settings: `rate` parsing and the per-type defaults.
#include <gtest/gtest.h>

#include "engine/pacer.hpp"

using namespace cascade;

TEST(PaceRate, Parse) {
  auto r = parse_rate("30/s");
  ASSERT_TRUE(r);
  EXPECT_DOUBLE_EQ(r->per_second, 30);
  EXPECT_DOUBLE_EQ(r->burst, 30) << "default burst: one second's worth";
  r = parse_rate("600/m:5");
  ASSERT_TRUE(r);
  EXPECT_DOUBLE_EQ(r->per_second, 10);
  EXPECT_DOUBLE_EQ(r->burst, 5);
  r = parse_rate("0.5/s");
  ASSERT_TRUE(r);
  EXPECT_DOUBLE_EQ(r->per_second, 0.5);
  EXPECT_DOUBLE_EQ(r->burst, 1);
  r = parse_rate("12");
  ASSERT_TRUE(r);
  EXPECT_DOUBLE_EQ(r->per_second, 12);
  for (auto unlimited : {"0", "unlimited", "0/s"}) {
    r = parse_rate(unlimited);
    ASSERT_TRUE(r) << unlimited;
    EXPECT_EQ(r->per_second, 0) << unlimited;
  }
  for (auto bad : {"", "x/s", "30/d", "-1/s", "30/s:0", "30/s:", "/s", "30 /s", "inf"})
    EXPECT_FALSE(parse_rate(bad)) << bad;
}

TEST(PaceRate, Defaults) {
  EXPECT_DOUBLE_EQ(channel_rate("telegram", nullptr).per_second, 30);
  EXPECT_DOUBLE_EQ(channel_rate("waba", nullptr).per_second, 80);
  EXPECT_EQ(channel_rate("whatsapp", nullptr).per_second, 0);
  EXPECT_EQ(channel_rate("email", nullptr).per_second, 0);
  ChannelSettings s{{"rate", "5/s"}};
  EXPECT_DOUBLE_EQ(channel_rate("telegram", &s).per_second, 5);
  ChannelSettings off{{"rate", "0"}};
  EXPECT_EQ(channel_rate("telegram", &off).per_second, 0);
  ChannelSettings bad{{"rate", "lots"}};
  EXPECT_DOUBLE_EQ(channel_rate("telegram", &bad).per_second, 30) << "malformed: default";
}
