// The metrics listener of SPEC §6 on the real cascaded: /metrics in Prometheus text format,
// /healthz, /readyz following Redis, 404/405, a slow client, and bad --metrics-listen values.
#include <gtest/gtest.h>
#include <signal.h>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>

#include <fstream>
#include <map>
#include <regex>
#include <sstream>
#include <thread>

#include "engine/engine.hpp"
#include "engine/metrics_server.hpp"
#include "support/harness.hpp"
#include "support/mock_provider.hpp"
#include "support/process.hpp"
#include "support/redis_server.hpp"
#include "support/result_json.hpp"

using namespace cascade;
using namespace std::chrono_literals;

namespace {

constexpr const char* kPrefix = "m";

// The exposition text parsed strictly: every sample line is `name{labels} value` and its
// family was declared by # HELP and # TYPE lines before it. Returns "name{labels}" -> value;
// a malformed line fails the test.
std::map<std::string, double> parse_exposition(const std::string& text) {
  static const std::regex sample(
      R"(^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[a-zA-Z_][a-zA-Z0-9_]*="[^"\\]*"(,[a-zA-Z_][a-zA-Z0-9_]*="[^"\\]*")*\})? (-?[0-9]+(\.[0-9]+)?)$)");
  static const std::regex help(R"(^# HELP ([a-zA-Z_:][a-zA-Z0-9_:]*) \S.*$)");
  static const std::regex type(R"(^# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (counter|gauge)$)");
  std::map<std::string, double> out;
  std::map<std::string, std::string> types;
  std::istringstream in(text);
  std::string line;
  std::smatch m;
  while (std::getline(in, line)) {
    if (std::regex_match(line, m, help)) continue;
    if (std::regex_match(line, m, type)) {
      types[m[1]] = m[2];
      continue;
    }
    if (!std::regex_match(line, m, sample)) {
      ADD_FAILURE() << "not an exposition line: '" << line << "'";
      continue;
    }
    EXPECT_TRUE(types.count(m[1])) << m[1] << " has no # TYPE line before it";
    if (types[m[1]] == "counter") {
      EXPECT_TRUE(std::string(m[1]).ends_with("_total")) << m[1];
    }
    out[std::string(m[1]) + std::string(m[2])] = std::stod(m[4]);
  }
  EXPECT_TRUE(text.empty() || text.back() == '\n');
  return out;
}

class Metrics : public ::testing::Test {
 protected:
  void SetUp() override {
    admin = std::make_unique<test::Admin>(redis.url(), kPrefix);
    account = admin->create_account("acme");
    api_key = admin->create_api_key(account, {"send"});
    tg_key = admin->create_channel_key(
        account, "telegram", {{"bot_token", "111:tg-secret"}, {"api_base", mock.base_url()}});
    producer = std::make_unique<test::SyncRedis>(redis.url());
  }

  std::unique_ptr<test::Process> cascaded(std::vector<std::string> args,
                                          const std::string& log = "cascaded.log") {
    std::vector<std::string> argv = {test::tool_path("cascaded"),
                                     "--redis",
                                     redis.url(),
                                     "--prefix",
                                     kPrefix,
                                     "--log-level",
                                     "info"};
    argv.insert(argv.end(), args.begin(), args.end());
    return std::make_unique<test::Process>(argv, std::vector<std::string>{},
                                           dir.path() + "/" + log);
  }
  std::string read_log(const std::string& log = "cascaded.log") {
    std::ifstream in(dir.path() + "/" + log);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
  }
  // The port of the "metrics on 127.0.0.1:PORT" log line, 0 when it did not appear in time.
  std::uint16_t metrics_port(std::chrono::milliseconds timeout = 15s) {
    const std::string needle = "metrics on 127.0.0.1:";
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
      auto log = read_log();
      if (auto at = log.find(needle); at != std::string::npos) {
        auto end = log.find_first_not_of("0123456789", at + needle.size());
        auto digits = log.substr(at + needle.size(), end - at - needle.size());
        if (!digits.empty() && end != std::string::npos)
          return static_cast<std::uint16_t>(std::stoi(digits));
      }
      std::this_thread::sleep_for(20ms);
    }
    return 0;
  }
  test::HttpResponse get(std::uint16_t port, const std::string& target,
                         const std::string& method = "GET") {
    test::HttpConnection c(port, 5s);
    return c.request(method, target);
  }
  // Polls GET /readyz until it answers `status`; false when it did not within `timeout`.
  bool wait_ready_status(std::uint16_t port, int status, std::chrono::milliseconds timeout = 20s) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
      if (get(port, "/readyz").status == status) return true;
      std::this_thread::sleep_for(50ms);
    }
    return false;
  }
  std::string telegram_body(const std::string& chat) {
    return R"({"keys":{"telegram":{"token":")" + tg_key + R"("}},"to":{"telegram":")" + chat +
           R"("},"message":{"text":"code"}})";
  }

  test::TempDir dir;
  test::RedisServer redis;
  test::MockProvider mock;
  std::unique_ptr<test::Admin> admin;
  std::unique_ptr<test::SyncRedis> producer;
  std::string account, api_key, tg_key;
};

}  // namespace

TEST(MetricsText, RendersEveryFamilyAndParses) {
  MetricsSnapshot s;
  s.delivered = 3;
  s.duplicates = 1;
  s.concurrency = 16;
  s.redis_ready = true;
  auto text = render_metrics(s);
  auto m = parse_exposition(text);
  EXPECT_EQ(m["cascade_jobs_total{state=\"delivered\"}"], 3);
  EXPECT_EQ(m["cascade_jobs_total{state=\"duplicate\"}"], 1);
  EXPECT_EQ(m["cascade_concurrency_limit"], 16);
  EXPECT_EQ(m["cascade_redis_ready"], 1);
  EXPECT_EQ(m["cascade_auth_cache_live"], 0);
  for (const char* name :
       {"cascade_jobs_total{state=\"failed\"}", "cascade_jobs_total{state=\"rejected\"}",
        "cascade_jobs_reclaimed_total", "cascade_job_retries_total",
        "cascade_auth_cache_hits_total", "cascade_auth_cache_misses_total",
        "cascade_auth_invalidations_total", "cascade_jobs_in_flight"})
    EXPECT_TRUE(m.count(name)) << name;
}

TEST(MetricsText, ListenAddresses) {
  auto a = parse_listen_address("127.0.0.1:9464");
  EXPECT_EQ(a.host, "127.0.0.1");
  EXPECT_EQ(a.port, 9464);
  auto b = parse_listen_address("[::1]:0");
  EXPECT_EQ(b.host, "::1");
  EXPECT_EQ(b.port, 0);
  for (const char* bad : {"9464", "127.0.0.1", "127.0.0.1:", "127.0.0.1:70000", "127.0.0.1:x",
                          ":9464", "localhost:9464", "1.2.3:80"})
    EXPECT_THROW(parse_listen_address(bad), std::invalid_argument) << bad;
}

// Delivered jobs show in /metrics; the text parses; no secrets; the probes answer.
TEST_F(Metrics, CountsDeliveredJobsAndServesProbes) {
  auto d = cascaded({"--metrics-listen", "127.0.0.1:0", "--concurrency", "8"});
  auto port = metrics_port();
  ASSERT_NE(port, 0) << read_log();
  const int n = 5;
  for (int i = 0; i < n; ++i) {
    auto id = test::push_job(
        *producer, kPrefix,
        {{"authorization", "Bearer " + api_key}, {"body", telegram_body(std::to_string(100 + i))}});
    auto r = test::wait_result(*producer, kPrefix, id);
    ASSERT_TRUE(r);
    EXPECT_EQ(test::ParsedResult(*r).str("state"), "delivered") << *r;
  }
  // A job's slot is freed just after its result is written: scrape until the last one
  // is released (bounded), then check every figure of that scrape.
  auto metrics = get(port, "/metrics");
  auto m = parse_exposition(metrics.body);
  for (auto until = std::chrono::steady_clock::now() + 5s;
       m["cascade_jobs_in_flight"] != 0 && std::chrono::steady_clock::now() < until;) {
    metrics = get(port, "/metrics");
    m = parse_exposition(metrics.body);
  }
  ASSERT_EQ(metrics.status, 200);
  EXPECT_NE(metrics.header("Content-Type").value_or("").find("version=0.0.4"), std::string::npos);
  EXPECT_EQ(m["cascade_jobs_total{state=\"delivered\"}"], n) << metrics.body;
  EXPECT_EQ(m["cascade_jobs_total{state=\"failed\"}"], 0);
  EXPECT_EQ(m["cascade_jobs_in_flight"], 0);
  EXPECT_EQ(m["cascade_concurrency_limit"], 8);
  EXPECT_EQ(m["cascade_redis_ready"], 1);
  EXPECT_EQ(m["cascade_auth_cache_hits_total"] + m["cascade_auth_cache_misses_total"] > 0, true);
  EXPECT_EQ(metrics.body.find(api_key), std::string::npos);
  EXPECT_EQ(metrics.body.find(tg_key), std::string::npos);
  EXPECT_EQ(metrics.body.find(account), std::string::npos) << "no per-account labels";

  auto health = get(port, "/healthz");
  EXPECT_EQ(health.status, 200);
  EXPECT_EQ(health.body, "ok\n");
  EXPECT_EQ(get(port, "/readyz").status, 200);
  EXPECT_EQ(get(port, "/nope").status, 404);
  EXPECT_EQ(get(port, "/metrics", "POST").status, 405);
  EXPECT_EQ(get(port, "/metrics?x=1").status, 200);

  // A client that connects and sends nothing holds only its own connection.
  test::HttpConnection idle(port, 5s);
  auto started = std::chrono::steady_clock::now();
  EXPECT_EQ(get(port, "/healthz").status, 200);
  EXPECT_LT(std::chrono::steady_clock::now() - started, 2s);

  d->signal(SIGTERM);
  EXPECT_EQ(d->wait(15s).value_or(-1), 0);
}

// /readyz follows Redis: 503 with a reason while it is down, 200 again after it is back.
TEST_F(Metrics, ReadyzFollowsRedis) {
  auto d = cascaded({"--metrics-listen", "127.0.0.1:0"});
  auto port = metrics_port();
  ASSERT_NE(port, 0) << read_log();
  ASSERT_TRUE(wait_ready_status(port, 200));
  producer.reset();
  redis.stop();
  ASSERT_TRUE(wait_ready_status(port, 503));
  auto down = get(port, "/readyz");
  EXPECT_EQ(down.status, 503);
  EXPECT_NE(down.body.find("redis"), std::string::npos) << down.body;
  EXPECT_EQ(down.body.find('\n'), down.body.size() - 1) << "one line";
  EXPECT_EQ(get(port, "/healthz").status, 200) << "alive while Redis is down";
  EXPECT_EQ(parse_exposition(get(port, "/metrics").body)["cascade_redis_ready"], 0);
  redis.restart();
  ASSERT_TRUE(wait_ready_status(port, 200));
  d->signal(SIGTERM);
  EXPECT_EQ(d->wait(15s).value_or(-1), 0);
}

// A bad address or a port in use: a clear error and exit 2.
TEST_F(Metrics, BadListenAddressExitsTwo) {
  auto bad = cascaded({"--metrics-listen", "not-an-address"}, "bad.log");
  EXPECT_EQ(bad->wait(15s).value_or(-1), 2);
  EXPECT_NE(read_log("bad.log").find("not-an-address"), std::string::npos) << read_log("bad.log");

  auto in_use =
      cascaded({"--metrics-listen", "127.0.0.1:" + std::to_string(mock.port())}, "in_use.log");
  EXPECT_EQ(in_use->wait(15s).value_or(-1), 2);
  EXPECT_NE(read_log("in_use.log").find("cannot listen"), std::string::npos)
      << read_log("in_use.log");

  // The environment twin.
  test::Process env({test::tool_path("cascaded"), "--redis", redis.url(), "--prefix", kPrefix},
                    {"CASCADE_METRICS_LISTEN=127.0.0.1:99999"}, dir.path() + "/env.log");
  EXPECT_EQ(env.wait(15s).value_or(-1), 2);
  EXPECT_NE(read_log("env.log").find("bad port"), std::string::npos) << read_log("env.log");
}

// Embedding: Engine::metrics_port() gives the bound port; stop() closes the listener.
TEST_F(Metrics, EngineServesAndStopClosesTheListener) {
  EngineConfig cfg;
  cfg.redis_url = redis.url();
  cfg.prefix = kPrefix;
  cfg.metrics_listen = "127.0.0.1:0";
  boost::asio::io_context io(1);
  Engine engine(io, cfg);
  engine.start();
  auto port = engine.metrics_port();
  ASSERT_NE(port, 0);
  std::thread runner([&] { io.run(); });
  EXPECT_EQ(get(port, "/healthz").status, 200);
  EXPECT_TRUE(wait_ready_status(port, 200));
  boost::asio::post(io, [&] { engine.stop([&] { io.stop(); }); });
  runner.join();
  EXPECT_THROW(test::HttpConnection(port, 1s), std::runtime_error) << "listener still open";
}
