// cascaded: the Cascade worker daemon. A thin main: flags and env fill EngineConfig.
#include <spdlog/spdlog.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>

#include <charconv>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <string>

#include "auth/secrets.hpp"
#include "engine/engine.hpp"
#include "util/log.hpp"
#include "util/time.hpp"

namespace {

constexpr const char* kUsage = R"(usage: cascaded [options]

Consumes send jobs from the Redis stream <prefix>:jobs, authenticates them, delivers
them through the cascade of channels and writes one result per job.

options (each has an environment twin; the flag wins):
  --master-key-file FILE   required: the master key that opens the channel keys' provider
                           credentials, 64 hex characters (the first line seals, any others
                           only open); make one with
                             openssl rand -hex 32 > master.key && chmod 600 master.key
                           (CASCADE_MASTER_KEY_FILE)
  --redis URL              redis://[[user]:password@]host[:port][/db]
                           (CASCADE_REDIS_URL, default redis://127.0.0.1:6379/0)
  --prefix P               key prefix (CASCADE_PREFIX, default cascade)
  --concurrency N          jobs in flight at most, all threads together (CASCADE_CONCURRENCY,
                           default 1024)
  --threads N              event loops, each with its own Redis connections, verifier cache,
                           HTTP/SMTP pools and an equal share of --concurrency; shard i > 0
                           reads as <consumer>-<i> (CASCADE_THREADS, default 1)
  --consumer NAME          consumer name in the group (CASCADE_CONSUMER, default host-pid)
  --group NAME             consumer group (CASCADE_GROUP, default cascade)
  --attempt-timeout D      deadline of one try on one channel (CASCADE_ATTEMPT_TIMEOUT, 10s)
  --channel-timeout D      deadline of all tries of a channel in a tier (CASCADE_CHANNEL_TIMEOUT, 30s)
  --retries N              retries of a transient failure inside a tier (CASCADE_RETRIES, 2)
  --retry-base D           first backoff, doubled per retry, full jitter (CASCADE_RETRY_BASE, 200ms)
  --result-ttl D           lifetime of <prefix>:result:<id> (CASCADE_RESULT_TTL, 24h)
  --results-maxlen N       approximate cap of <prefix>:results (CASCADE_RESULTS_MAXLEN, 1000000)
  --dead-maxlen N          approximate cap of <prefix>:dead, the dead letters (CASCADE_DEAD_MAXLEN,
                           100000); each copied field is cut at 8 KiB (marked)
  --drain-timeout D        on SIGTERM/SIGINT, how long in-flight jobs may finish (CASCADE_DRAIN_TIMEOUT, 30s)
  --reclaim-idle D         jobs pending longer than this (a dead worker's) are claimed and run
                           again; keep it above the longest job (CASCADE_RECLAIM_IDLE, 60s)
  --job-retry-delays LIST  delays before job attempts 2, 3, ... when every failure was transient;
                           then the dead letters (CASCADE_JOB_RETRY_DELAYS, 5s,30s,2m,10m,1h;
                           "none" disables job retries)
  --http-max-per-host N    connections per provider origin (scheme, host, port); more requests
                           wait for one. HTTP/1.1 sends one request per connection at a time,
                           so a provider's throughput is at most N / its latency
                           (CASCADE_HTTP_MAX_PER_HOST, default 4 x --concurrency: a job may
                           send on its four channel types at once, maybe to one origin)
  --ca-file FILE           extra trust anchors (PEM) for the HTTP providers' TLS, besides the
                           system CA store: a private CA or a TLS-inspecting proxy (CASCADE_CA_FILE,
                           default none; SMTP keys use their own smtp_ca_file setting)
  --metrics-listen HOST:PORT
                           serve GET /metrics (Prometheus text), /healthz and /readyz over plain
                           HTTP on this address, e.g. 127.0.0.1:9464; port 0 picks a free one
                           (logged as "metrics on HOST:PORT") (CASCADE_METRICS_LISTEN, default off)
  --log-format text|json   (CASCADE_LOG_FORMAT, default text)
  --log-level LEVEL        trace|debug|info|warn|error|off (CASCADE_LOG_LEVEL, default info)
  --help                   this text

Provider API bases default to the real providers; override them globally with
CASCADE_TELEGRAM_API_BASE, CASCADE_WABA_API_BASE, CASCADE_POSTMARK_API_BASE and
CASCADE_WHATSAPP_API_BASE (a channel key's own --api-base wins).
Durations: 250ms, 30s, 5m, 24h, 30d.
)";

[[noreturn]] void die(const std::string& msg) {
  std::cerr << "cascaded: " << msg << "\n";
  std::exit(2);
}

std::size_t to_size(const std::string& name, const std::string& v) {
  std::size_t out = 0;
  auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), out);
  if (ec != std::errc() || p != v.data() + v.size())
    die(name + " must be a whole number, got '" + v + "'");
  return out;
}

std::chrono::milliseconds to_duration(const std::string& name, const std::string& v) {
  auto d = cascade::parse_duration(v);
  if (!d) die(name + " must be a duration like 250ms, 30s, 5m, got '" + v + "'");
  return *d;
}

// Every job in flight may hold a socket (10,000 jobs: 10,000 provider connections), and
// the usual soft limit is 1024: take the hard limit, and say so when even that is short.
void raise_open_files_limit(std::size_t concurrency) {
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) != 0) return;
  if (limit.rlim_cur < limit.rlim_max) {
    limit.rlim_cur = limit.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &limit) != 0) getrlimit(RLIMIT_NOFILE, &limit);
  }
  // Redis connections, the metrics listener, SMTP sessions, logs: a few dozen besides.
  constexpr rlim_t spare = 64;
  if (limit.rlim_cur != RLIM_INFINITY && limit.rlim_cur < concurrency + spare)
    spdlog::warn(
        "open files limit {} is below --concurrency {} (+{} spare): under full load provider "
        "connections will fail with \"too many open files\"; raise it (ulimit -n, LimitNOFILE=)",
        static_cast<unsigned long long>(limit.rlim_cur), concurrency, spare);
}

}  // namespace

int main(int argc, char** argv) {
  std::map<std::string, std::string> opt;
  const std::map<std::string, std::string> env_of = {
      {"--redis", "CASCADE_REDIS_URL"},
      {"--prefix", "CASCADE_PREFIX"},
      {"--concurrency", "CASCADE_CONCURRENCY"},
      {"--threads", "CASCADE_THREADS"},
      {"--consumer", "CASCADE_CONSUMER"},
      {"--group", "CASCADE_GROUP"},
      {"--attempt-timeout", "CASCADE_ATTEMPT_TIMEOUT"},
      {"--channel-timeout", "CASCADE_CHANNEL_TIMEOUT"},
      {"--retries", "CASCADE_RETRIES"},
      {"--retry-base", "CASCADE_RETRY_BASE"},
      {"--result-ttl", "CASCADE_RESULT_TTL"},
      {"--results-maxlen", "CASCADE_RESULTS_MAXLEN"},
      {"--dead-maxlen", "CASCADE_DEAD_MAXLEN"},
      {"--drain-timeout", "CASCADE_DRAIN_TIMEOUT"},
      {"--reclaim-idle", "CASCADE_RECLAIM_IDLE"},
      {"--job-retry-delays", "CASCADE_JOB_RETRY_DELAYS"},
      {"--ca-file", "CASCADE_CA_FILE"},
      {"--http-max-per-host", "CASCADE_HTTP_MAX_PER_HOST"},
      {"--metrics-listen", "CASCADE_METRICS_LISTEN"},
      {"--log-format", "CASCADE_LOG_FORMAT"},
      {"--log-level", "CASCADE_LOG_LEVEL"},
      {"--master-key-file", "CASCADE_MASTER_KEY_FILE"},
  };
  // This process holds the providers' credentials in the clear: no core dumps, and no
  // ptrace or /proc/<pid>/mem from other processes of the same user.
  prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
  for (const auto& [flag, env] : env_of)
    if (const char* v = std::getenv(env.c_str())) opt[flag] = v;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--help" || a == "-h") {
      std::cout << kUsage;
      return 0;
    }
    std::string value;
    if (auto eq = a.find('='); eq != std::string::npos) {
      value = a.substr(eq + 1);
      a = a.substr(0, eq);
    } else if (env_of.count(a)) {
      if (i + 1 >= argc) die(a + " needs a value");
      value = argv[++i];
    }
    if (!env_of.count(a)) die("unknown option '" + a + "' (see --help)");
    opt[a] = value;
  }

  cascade::EngineConfig cfg;
  if (opt.count("--redis")) cfg.redis_url = opt["--redis"];
  if (opt.count("--prefix")) cfg.prefix = opt["--prefix"];
  if (cfg.prefix.empty()) die("--prefix must not be empty");
  if (opt.count("--concurrency")) cfg.concurrency = to_size("--concurrency", opt["--concurrency"]);
  if (cfg.concurrency == 0) die("--concurrency must be at least 1");
  if (opt.count("--threads")) cfg.threads = to_size("--threads", opt["--threads"]);
  if (cfg.threads == 0 || cfg.threads > 256) die("--threads must be from 1 to 256");
  if (cfg.concurrency < cfg.threads) die("--concurrency must be at least --threads");
  if (opt.count("--consumer")) cfg.consumer = opt["--consumer"];
  if (opt.count("--group")) cfg.group = opt["--group"];
  if (opt.count("--attempt-timeout"))
    cfg.attempt_timeout = to_duration("--attempt-timeout", opt["--attempt-timeout"]);
  if (opt.count("--channel-timeout"))
    cfg.channel_timeout = to_duration("--channel-timeout", opt["--channel-timeout"]);
  if (opt.count("--retries"))
    cfg.retry.max_retries = static_cast<int>(to_size("--retries", opt["--retries"]));
  if (opt.count("--retry-base")) cfg.retry.base = to_duration("--retry-base", opt["--retry-base"]);
  if (opt.count("--result-ttl")) {
    auto ttl = std::chrono::duration_cast<std::chrono::seconds>(
        to_duration("--result-ttl", opt["--result-ttl"]));
    if (ttl.count() < 1) die("--result-ttl must be at least 1s");
    cfg.result_ttl = ttl;
  }
  if (opt.count("--results-maxlen"))
    cfg.results_maxlen = to_size("--results-maxlen", opt["--results-maxlen"]);
  if (opt.count("--dead-maxlen")) cfg.dead_maxlen = to_size("--dead-maxlen", opt["--dead-maxlen"]);
  if (cfg.dead_maxlen == 0) die("--dead-maxlen must be at least 1");
  if (opt.count("--drain-timeout"))
    cfg.drain_timeout = to_duration("--drain-timeout", opt["--drain-timeout"]);
  if (opt.count("--reclaim-idle")) {
    cfg.reclaim_idle = to_duration("--reclaim-idle", opt["--reclaim-idle"]);
    if (cfg.reclaim_idle.count() < 1) die("--reclaim-idle must be at least 1ms");
  }
  if (opt.count("--job-retry-delays")) {
    cfg.job_retry_delays.clear();
    const auto& list = opt["--job-retry-delays"];
    if (list != "none") {
      std::size_t start = 0;
      for (;;) {
        auto comma = list.find(',', start);
        auto part = list.substr(start, comma == std::string::npos ? comma : comma - start);
        cfg.job_retry_delays.push_back(to_duration("--job-retry-delays", part));
        if (comma == std::string::npos) break;
        start = comma + 1;
      }
    }
  }
  if (opt.count("--ca-file")) cfg.ca_file = opt["--ca-file"];
  if (opt.count("--http-max-per-host")) {
    cfg.http_max_per_host = to_size("--http-max-per-host", opt["--http-max-per-host"]);
    if (cfg.http_max_per_host == 0) die("--http-max-per-host must be at least 1");
  }
  if (opt.count("--metrics-listen")) cfg.metrics_listen = opt["--metrics-listen"];
  if (opt.count("--master-key-file")) cfg.master_key_file = opt["--master-key-file"];
  if (cfg.master_key_file.empty())
    die(std::string("no master key: --master-key-file FILE (or CASCADE_MASTER_KEY_FILE) is "
                    "required, to open the provider credentials; ") +
        cascade::auth::kMasterKeyHowTo);
  try {
    cascade::auth::KeyRing::load(cfg.master_key_file);  // early: a clear error, exit 2
  } catch (const cascade::auth::SecretError& e) {
    die(e.what());
  }
  for (auto [type, env] :
       {std::pair{"telegram", "CASCADE_TELEGRAM_API_BASE"},
        std::pair{"waba", "CASCADE_WABA_API_BASE"}, std::pair{"email", "CASCADE_POSTMARK_API_BASE"},
        std::pair{"whatsapp", "CASCADE_WHATSAPP_API_BASE"}}) {
    if (const char* v = std::getenv(env); v && *v) cfg.api_base_overrides[type] = v;
  }

  auto format = opt.count("--log-format") ? opt["--log-format"] : "text";
  if (format != "text" && format != "json") die("--log-format must be text or json");
  auto level = opt.count("--log-level") ? opt["--log-level"] : "info";
  if (spdlog::level::from_str(level) == spdlog::level::off && level != "off")
    die("--log-level must be one of trace, debug, info, warn, error, off");
  cascade::init_logging(format == "json" ? cascade::LogFormat::json : cascade::LogFormat::text,
                        level);
  struct stat key_stat {};
  if (::stat(cfg.master_key_file.c_str(), &key_stat) == 0 && (key_stat.st_mode & 077) != 0)
    spdlog::warn("master key file {} is readable by other users: chmod 600 it",
                 cfg.master_key_file);

  raise_open_files_limit(cfg.concurrency);

  try {
    boost::asio::io_context io(1);
    cascade::Engine engine(io, cfg);
    boost::asio::signal_set signals(io, SIGINT, SIGTERM);
    signals.async_wait([&](boost::system::error_code ec, int sig) {
      if (ec) return;
      spdlog::info("signal {}: draining (up to {} ms)", sig, cfg.drain_timeout.count());
      engine.stop([&] { io.stop(); });
    });
    engine.start();
    io.run();
    auto s = engine.stats();
    spdlog::info("stopped: {} jobs ({} delivered, {} failed, {} rejected)", s.jobs, s.delivered,
                 s.failed, s.rejected);
  } catch (const std::exception& e) {
    die(e.what());
  }
  return 0;
}
