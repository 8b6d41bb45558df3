// RESP encoding and decoding, sans-IO: literal bytes in, replies out.
#include <gtest/gtest.h>

#include "redis/connection.hpp"
#include "redis/resp.hpp"

using namespace cascade::redis;

TEST(Resp, EncodesArrayOfBulkStrings) {
  std::string out;
  encode(out, cmd("SET", "k", std::string("a\r\nb")));
  EXPECT_EQ(out, "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$4\r\na\r\nb\r\n");
}

TEST(Resp, DecodesEveryReplyType) {
  Decoder d;
  d.feed("+OK\r\n-ERR bad\r\n:42\r\n$3\r\nabc\r\n$-1\r\n*2\r\n$1\r\nx\r\n*1\r\n:7\r\n");
  auto r = d.next();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->type, Reply::Type::status);
  EXPECT_EQ(r->str, "OK");
  r = d.next();
  EXPECT_TRUE(r->is_error());
  EXPECT_EQ(r->str, "ERR bad");
  r = d.next();
  EXPECT_EQ(r->integer, 42);
  r = d.next();
  EXPECT_EQ(r->str, "abc");
  r = d.next();
  EXPECT_TRUE(r->is_nil());
  r = d.next();
  ASSERT_TRUE(r->is_array());
  ASSERT_EQ(r->elements.size(), 2u);
  EXPECT_EQ(r->elements[0].str, "x");
  EXPECT_EQ(r->elements[1].elements[0].integer, 7);
  EXPECT_FALSE(d.next());
}

TEST(Resp, ReplySplitAcrossFeedsIsAssembled) {
  Decoder d;
  std::string bytes = "*2\r\n$5\r\nhello\r\n$5\r\nworld\r\n";
  for (std::size_t i = 0; i + 1 < bytes.size(); ++i) {
    d.feed(bytes.substr(i, 1));
    EXPECT_FALSE(d.next()) << "reply complete too early at byte " << i;
  }
  d.feed(bytes.substr(bytes.size() - 1));
  auto r = d.next();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->elements[1].str, "world");
}

TEST(Resp, ProtocolErrorThrows) {
  Decoder d;
  d.feed("?garbage\r\n");
  EXPECT_THROW(d.next(), Error);
}

TEST(RedisUrl, ParsesHostPortDbAndPassword) {
  auto c = parse_url("redis://:s3cret@127.0.0.1:6380/2");
  ASSERT_TRUE(c);
  EXPECT_EQ(c->host, "127.0.0.1");
  EXPECT_EQ(c->port, 6380);
  EXPECT_EQ(c->db, 2);
  EXPECT_EQ(c->password, "s3cret");
  EXPECT_EQ(c->describe().find("s3cret"), std::string::npos);
  auto d = parse_url("redis://user:pw@localhost");
  ASSERT_TRUE(d);
  EXPECT_EQ(d->username, "user");
  EXPECT_EQ(d->port, 6379);
}

TEST(RedisUrl, RejectsMalformed) {
  std::string why;
  EXPECT_FALSE(parse_url("http://x", &why));
  EXPECT_FALSE(why.empty());
  EXPECT_FALSE(parse_url("redis://host:99999"));
  EXPECT_FALSE(parse_url("redis://host:6379/x"));
  EXPECT_FALSE(parse_url("redis://"));
}
