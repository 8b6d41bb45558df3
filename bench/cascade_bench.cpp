// cascade-bench: end-to-end load. Pushes N jobs with pipelined XADD and waits for all N
// results on <prefix>:results; prints jobs/s. With --setup it creates its own account,
// API key and telegram channel key pointing at --mock (a cascade-mock-provider).
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <charconv>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <string>

#include "auth/store.hpp"
#include "redis/connection.hpp"

namespace asio = boost::asio;
using namespace cascade;
using Clock = std::chrono::steady_clock;

namespace {

constexpr const char* kUsage =
    R"(usage: cascade-bench --redis URL [--prefix P] [--jobs N] [--batch B]
                     (--setup --mock URL | --api-key AK --channel-key CK)
                     [--timeout 300s]

Pushes N send jobs (default 100000) with pipelined XADD, B per round trip (default 1000),
and waits until every one has a result on <prefix>:results. Each job sends one Telegram
message. --setup creates an account, an API key and a Telegram channel key whose API base
is --mock and whose pacing is off (rate "unlimited": the figure is the engine's).
Prints one line: jobs, seconds, jobs/s, and the result states.
)";

struct Options {
  std::string redis = "redis://127.0.0.1:6379/0";
  std::string prefix = "cascade";
  std::size_t jobs = 100000;
  std::size_t batch = 1000;
  bool setup = false;
  std::string mock, api_key, channel_key;
  std::chrono::seconds timeout{300};
};

asio::awaitable<int> bench(Options o, redis::Connection& conn) {
  if (o.setup) {
    // Seals the bot token like cascadectl: CASCADE_MASTER_KEY_FILE (tools/stack.sh makes one).
    const char* key_file = std::getenv("CASCADE_MASTER_KEY_FILE");
    auth::Store store(conn, o.prefix, auth::load_key_ring(key_file ? key_file : ""));
    auto acc = co_await store.create_account("bench");
    auth::ChannelKey ck;
    ck.account = acc.id;
    ck.type = "telegram";
    ck.name = "bench-bot";
    ck.settings["bot_token"] = "1:bench";
    ck.settings["api_base"] = o.mock;
    // The bench measures the engine, not Telegram's 30/s per bot: one bot, unpaced.
    ck.settings["rate"] = "unlimited";
    auto made = co_await store.create_channel_key(ck);
    auth::ApiKey ak;
    ak.account = acc.id;
    ak.name = "bench";
    ak.scopes = {"send"};
    auto key = co_await store.create_api_key(ak);
    o.api_key = key.key;
    o.channel_key = made.key;
  }
  auto body = R"({"keys":{"telegram":{"token":")" + o.channel_key +
              R"("}},"to":{"telegram":"123456789"},"message":{"text":"bench message"}})";
  auto results_key = o.prefix + ":results";
  auto last = co_await conn.exec(redis::cmd("XREVRANGE", results_key, "+", "-", "COUNT", "1"));
  std::string cursor = last.elements.empty() ? "0-0" : last.elements[0].elements[0].str;

  auto start = Clock::now();
  std::string first_id;
  for (std::size_t sent = 0; sent < o.jobs;) {
    std::vector<redis::Command> cmds;
    auto n = std::min(o.batch, o.jobs - sent);
    for (std::size_t i = 0; i < n; ++i)
      cmds.push_back(redis::cmd("XADD", o.prefix + ":jobs", "*", "authorization",
                                "Bearer " + o.api_key, "body", body));
    auto replies = co_await conn.exec_batch(std::move(cmds), std::chrono::seconds(30));
    for (auto& r : replies)
      if (r.is_error()) throw std::runtime_error("XADD failed: " + r.str);
    if (first_id.empty()) first_id = replies.front().str;
    sent += n;
  }
  auto pushed = Clock::now();

  std::size_t done = 0, delivered = 0, other = 0;
  auto deadline = start + o.timeout;
  while (done < o.jobs) {
    if (Clock::now() > deadline) {
      std::fprintf(stderr, "cascade-bench: timed out with %zu of %zu results\n", done, o.jobs);
      co_return 3;
    }
    auto r = co_await conn.exec(
        redis::cmd("XREAD", "COUNT", "10000", "BLOCK", "1000", "STREAMS", results_key, cursor),
        std::chrono::seconds(10));
    if (!r.is_array() || r.elements.empty()) continue;
    for (const auto& e : r.elements[0].elements[1].elements) {
      cursor = e.elements[0].str;
      const auto& f = e.elements[1].elements;
      std::string id, status;
      for (std::size_t i = 0; i + 1 < f.size(); i += 2) {
        if (f[i].str == "id") id = f[i + 1].str;
        if (f[i].str == "status") status = f[i + 1].str;
      }
      // Only our jobs: stream ids grow, so ours are those at or after the first we pushed.
      auto ms = [](const std::string& s) { return std::stoll(s.substr(0, s.find('-'))); };
      if (id.empty() || ms(id) < ms(first_id)) continue;
      ++done;
      (status == "200" ? delivered : other)++;
    }
  }
  auto end = Clock::now();
  double secs = std::chrono::duration<double>(end - start).count();
  double push_secs = std::chrono::duration<double>(pushed - start).count();
  std::printf("jobs=%zu seconds=%.2f jobs_per_s=%.0f push_s=%.2f delivered=%zu other=%zu\n", o.jobs,
              secs, o.jobs / secs, push_secs, delivered, other);
  co_return other == 0 ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  auto need = [&](int& i) -> std::string {
    if (i + 1 >= argc) {
      std::cerr << "cascade-bench: " << argv[i] << " needs a value\n";
      std::exit(2);
    }
    return argv[++i];
  };
  auto number = [](const std::string& s, const char* name) {
    std::size_t v = 0;
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (ec != std::errc() || p != s.data() + s.size() || v == 0) {
      std::cerr << "cascade-bench: " << name << " must be a positive whole number\n";
      std::exit(2);
    }
    return v;
  };
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--help") {
      std::cout << kUsage;
      return 0;
    } else if (a == "--redis")
      o.redis = need(i);
    else if (a == "--prefix")
      o.prefix = need(i);
    else if (a == "--jobs")
      o.jobs = number(need(i), "--jobs");
    else if (a == "--batch")
      o.batch = number(need(i), "--batch");
    else if (a == "--setup")
      o.setup = true;
    else if (a == "--mock")
      o.mock = need(i);
    else if (a == "--api-key")
      o.api_key = need(i);
    else if (a == "--channel-key")
      o.channel_key = need(i);
    else if (a == "--timeout")
      o.timeout = std::chrono::seconds(number(need(i), "--timeout"));
    else {
      std::cerr << "cascade-bench: unknown option " << a << " (see --help)\n";
      return 2;
    }
  }
  if (o.setup ? o.mock.empty() : (o.api_key.empty() || o.channel_key.empty())) {
    std::cerr << "cascade-bench: give --setup --mock URL, or --api-key and --channel-key\n";
    return 2;
  }
  std::string why;
  auto cfg = redis::parse_url(o.redis, &why);
  if (!cfg) {
    std::cerr << "cascade-bench: --redis: " << why << "\n";
    return 2;
  }
  asio::io_context io;
  redis::Connection conn(io.get_executor(), *cfg);
  int rc = 1;
  asio::co_spawn(io, bench(o, conn), [&](std::exception_ptr e, int r) {
    if (e) {
      try {
        std::rethrow_exception(e);
      } catch (const std::exception& ex) {
        std::cerr << "cascade-bench: " << ex.what() << "\n";
      }
      rc = 1;
    } else {
      rc = r;
    }
    io.stop();  // the connection's reader would keep io.run() going forever
  });
  io.run();
  return rc;
}
