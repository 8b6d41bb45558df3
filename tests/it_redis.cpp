// The Redis client against a real redis-server: pipelining, timeouts, reconnects, AUTH.
#include <gtest/gtest.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <set>

#include "redis/connection.hpp"
#include "redis/sync.hpp"
#include "support/redis_server.hpp"

namespace asio = boost::asio;
using namespace cascade;
using namespace std::chrono_literals;

namespace {

redis::Config cfg(const std::string& url) {
  return *redis::parse_url(url);
}

// Runs the coroutine to completion on io; rethrows its exception.
template <class F>
void run(asio::io_context& io, F f) {
  redis::run_sync(io, f());
}

}  // namespace

// 2000 coroutines share one connection: every reply reaches its own caller, in one connect.
TEST(RedisConnection, PipelinesConcurrentRequestsOnOneConnection) {
  test::RedisServer server;
  asio::io_context io;
  redis::Connection conn(io.get_executor(), cfg(server.url()));
  std::set<std::int64_t> seen;
  int done = 0;
  for (int i = 0; i < 2000; ++i) {
    asio::co_spawn(
        io,
        [&]() -> asio::awaitable<void> {
          auto r = co_await conn.exec(redis::cmd("INCR", "counter"));
          seen.insert(r.integer);
          ++done;
        },
        [](std::exception_ptr e) {
          if (e) std::rethrow_exception(e);
        });
  }
  // run_one until all are done: the connection's reader keeps io busy forever.
  while (done < 2000 && io.run_one() > 0) {
  }
  EXPECT_EQ(done, 2000);
  EXPECT_EQ(seen.size(), 2000u);
  EXPECT_EQ(*seen.rbegin(), 2000);
  EXPECT_EQ(conn.connects(), 1u);
}

// A batch is one write whose replies come back in order.
TEST(RedisConnection, BatchRepliesInOrder) {
  test::RedisServer server;
  asio::io_context io;
  redis::Connection conn(io.get_executor(), cfg(server.url()));
  run(io, [&]() -> asio::awaitable<void> {
    auto replies = co_await conn.exec_batch(
        redis::batch(redis::cmd("SET", "a", "1"), redis::cmd("GET", "a"),
                     redis::cmd("GET", "missing"), redis::cmd("LPUSH", "a", "x")));
    EXPECT_EQ(replies.size(), 4u);
    EXPECT_EQ(replies[0].str, "OK");
    EXPECT_EQ(replies[1].str, "1");
    EXPECT_TRUE(replies[2].is_nil());
    EXPECT_TRUE(replies[3].is_error()) << "a Redis error is a reply, not an exception";
  });
}

// A request that gets no reply in time fails, and the connection heals on the next one.
TEST(RedisConnection, TimeoutFailsRequestAndNextRequestReconnects) {
  test::RedisServer server;
  asio::io_context io;
  redis::Connection conn(io.get_executor(), cfg(server.url()));
  run(io, [&]() -> asio::awaitable<void> {
    bool threw = false;
    try {
      co_await conn.exec(redis::cmd("BLPOP", "nothing", "5"), 100ms);
    } catch (const redis::Error& e) {
      threw = true;
      EXPECT_NE(std::string(e.what()).find("timed out"), std::string::npos);
    }
    EXPECT_TRUE(threw);
    auto pong = co_await conn.exec(redis::cmd("PING"));
    EXPECT_EQ(pong.str, "PONG");
  });
  EXPECT_EQ(conn.connects(), 2u);
}

// The server dies and comes back: at most the request in flight fails, then it works.
TEST(RedisConnection, ReconnectsAfterServerRestart) {
  test::RedisServer server;
  asio::io_context io;
  redis::Connection conn(io.get_executor(), cfg(server.url()));
  run(io, [&]() -> asio::awaitable<void> {
    EXPECT_EQ((co_await conn.exec(redis::cmd("PING"))).str, "PONG");
  });
  server.restart();
  run(io, [&]() -> asio::awaitable<void> {
    std::string pong;
    try {
      pong = (co_await conn.exec(redis::cmd("PING"))).str;
    } catch (const redis::Error&) {
      // The old socket's death may surface on this first request.
    }
    if (pong.empty()) pong = (co_await conn.exec(redis::cmd("PING"))).str;
    EXPECT_EQ(pong, "PONG");
  });
  EXPECT_EQ(conn.connects(), 2u);
}

// Password and database come from the URL; a wrong password fails without echoing it.
TEST(RedisConnection, AuthAndSelectFromUrl) {
  test::RedisServer server({"--requirepass", "s3cret-pw"});
  asio::io_context io;
  auto good = cfg("redis://:s3cret-pw@127.0.0.1:" + std::to_string(server.port()) + "/3");
  redis::Connection conn(io.get_executor(), good);
  run(io, [&]() -> asio::awaitable<void> {
    co_await conn.exec(redis::cmd("SET", "where", "db3"));
    auto replies = co_await conn.exec_batch(
        redis::batch(redis::cmd("SELECT", "0"), redis::cmd("EXISTS", "where")));
    EXPECT_EQ(replies[1].integer, 0) << "the key was written to db 3, not db 0";
  });
  auto bad = cfg("redis://:wrong-pw@127.0.0.1:" + std::to_string(server.port()) + "/0");
  redis::Connection wrong(io.get_executor(), bad);
  std::string message;
  try {
    run(io, [&]() -> asio::awaitable<void> { co_await wrong.exec(redis::cmd("PING")); });
  } catch (const redis::Error& e) {
    message = e.what();
  }
  EXPECT_NE(message.find("AUTH failed"), std::string::npos) << message;
  EXPECT_EQ(message.find("wrong-pw"), std::string::npos) << "password leaked: " << message;
}

// Nothing listens: the error says so, quickly.
TEST(RedisConnection, ConnectRefusedIsAnError) {
  auto port = test::free_port();
  asio::io_context io;
  redis::Connection conn(io.get_executor(), cfg("redis://127.0.0.1:" + std::to_string(port)));
  EXPECT_THROW(run(io, [&]() -> asio::awaitable<void> { co_await conn.exec(redis::cmd("PING")); }),
               redis::Error);
  EXPECT_FALSE(conn.connected());
}
