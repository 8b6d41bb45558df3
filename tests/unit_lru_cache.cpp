// The verifier's bounded cache on its own: least recently used goes first, a hit or a
// replacement makes an entry the most recent, erasures keep the index consistent.
#include <gtest/gtest.h>

#include "auth/lru_cache.hpp"

using cascade::auth::LruCache;

// Full cache, new key: the entry neither read nor written for longest is evicted.
TEST(LruCache, EvictsLeastRecentlyUsed) {
  LruCache<int> c(2);
  EXPECT_EQ(c.put("a", 1), 0u);
  EXPECT_EQ(c.put("b", 2), 0u);
  ASSERT_NE(c.find("a"), nullptr);  // a is now the most recent
  EXPECT_EQ(c.put("c", 3), 1u);
  EXPECT_EQ(c.find("b"), nullptr);
  EXPECT_EQ(*c.find("a"), 1);
  EXPECT_EQ(*c.find("c"), 3);
  EXPECT_EQ(c.size(), 2u);
}

// Replacing a present key evicts nothing and refreshes it.
TEST(LruCache, ReplaceRefreshesWithoutEvicting) {
  LruCache<int> c(2);
  c.put("a", 1);
  c.put("b", 2);
  EXPECT_EQ(c.put("a", 10), 0u);
  EXPECT_EQ(c.put("c", 3), 1u);  // b was least recent
  EXPECT_EQ(c.find("b"), nullptr);
  EXPECT_EQ(*c.find("a"), 10);
}

// erase, erase_if and clear leave a cache that still works and still bounds itself.
TEST(LruCache, ErasuresKeepTheIndexConsistent) {
  LruCache<int> c(3);
  c.put("a", 1);
  c.put("b", 2);
  c.put("c", 3);
  EXPECT_TRUE(c.erase("b"));
  EXPECT_FALSE(c.erase("b"));
  EXPECT_EQ(c.erase_if([](int v) { return v == 3; }), 1u);
  EXPECT_EQ(c.size(), 1u);
  c.put("d", 4);
  c.put("e", 5);
  EXPECT_EQ(c.put("f", 6), 1u);  // a, the oldest, goes
  EXPECT_EQ(c.find("a"), nullptr);
  c.clear();
  EXPECT_EQ(c.size(), 0u);
  EXPECT_EQ(c.find("d"), nullptr);
  c.put("g", 7);
  EXPECT_EQ(*c.find("g"), 7);
}

// Capacity 0 caches nothing.
TEST(LruCache, ZeroCapacityKeepsNothing) {
  LruCache<int> c(0);
  EXPECT_EQ(c.put("a", 1), 0u);
  EXPECT_EQ(c.find("a"), nullptr);
  EXPECT_EQ(c.size(), 0u);
}

// Keys are binary (raw SHA-256 digests): embedded NULs are part of the key.
TEST(LruCache, BinaryKeys) {
  LruCache<int> c(4);
  std::string k1("\0a", 2), k2("\0b", 2);
  c.put(k1, 1);
  c.put(k2, 2);
  EXPECT_EQ(*c.find(k1), 1);
  EXPECT_EQ(*c.find(k2), 2);
}
