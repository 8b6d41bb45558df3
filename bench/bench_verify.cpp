// Micro-benchmarks of API key verification (Google Benchmark): a cached verdict, an
// uncached one (Redis look-ups), and a garbage key rejected by its format. Needs a Redis:
// CASCADE_BENCH_REDIS=redis://127.0.0.1:PORT/0 (bench/run_micro.sh starts one).
#include <benchmark/benchmark.h>

#include <boost/asio/io_context.hpp>

#include <cstdlib>
#include <iostream>

#include "auth/store.hpp"
#include "auth/verifier.hpp"
#include "redis/connection.hpp"
#include "redis/sync.hpp"

namespace asio = boost::asio;
using namespace cascade;

namespace {

struct World {
  asio::io_context io;
  redis::Connection conn;
  auth::Store store;
  std::string key;
  explicit World(const redis::Config& cfg)
      : conn(io.get_executor(), cfg), store(conn, "bench-verify") {
    auto acc = redis::run_sync(io, store.create_account("bench"));
    auth::ApiKey k;
    k.account = acc.id;
    k.name = "bench";
    k.scopes = {"send"};
    key = redis::run_sync(io, store.create_api_key(k)).key;
  }
};

World& world() {
  static World* w = [] {
    const char* url = std::getenv("CASCADE_BENCH_REDIS");
    auto cfg = redis::parse_url(url ? url : "redis://127.0.0.1:6379/0");
    if (!cfg) {
      std::cerr << "bad CASCADE_BENCH_REDIS\n";
      std::exit(2);
    }
    return new World(*cfg);
  }();
  return *w;
}

void run(benchmark::State& state, auth::Verifier& v, const std::string& key, int expect) {
  auto& w = world();
  std::string header = "Bearer " + key;
  for (auto _ : state) {
    auto r = redis::run_sync(w.io, v.authenticate(std::string_view(header), std::nullopt));
    int status = std::holds_alternative<auth::Principal>(r) ? 0 : std::get<auth::Verdict>(r).status;
    if (status != expect) state.SkipWithError("unexpected verdict");
    benchmark::DoNotOptimize(r);
  }
}

void BM_VerifyCached(benchmark::State& state) {
  auto& w = world();
  auth::Verifier v(w.store, w.conn);
  v.set_cache_live(true);  // as when the invalidation subscription is up
  run(state, v, w.key, 0);
}

void BM_VerifyUncached(benchmark::State& state) {
  auto& w = world();
  auth::Verifier v(w.store, w.conn);  // cache not live: every verdict reads Redis
  run(state, v, w.key, 0);
}

void BM_VerifyGarbageKey(benchmark::State& state) {
  auto& w = world();
  auth::Verifier v(w.store, w.conn);
  run(state, v, "ak_this-is-not-a-key-at-all-no-checksum-000", 401);
}

}  // namespace

BENCHMARK(BM_VerifyCached);
BENCHMARK(BM_VerifyUncached);
BENCHMARK(BM_VerifyGarbageKey);
BENCHMARK_MAIN();
