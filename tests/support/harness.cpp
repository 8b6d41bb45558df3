#include "support/harness.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <future>
#include <stdexcept>

#include "auth/store.hpp"
#include "engine/engine.hpp"
#include "redis/connection.hpp"
#include "redis/sync.hpp"
#include "support/process.hpp"

namespace asio = boost::asio;

namespace cascade::test {
namespace {

redis::Config config_of(const std::string& url) {
  auto c = redis::parse_url(url);
  if (!c) throw std::invalid_argument("bad redis url " + url);
  return *c;
}

using redis::run_sync;

EngineConfig with_master_key(EngineConfig c) {
  if (c.master_key_file.empty()) c.master_key_file = master_key_file();
  return c;
}

}  // namespace

struct SyncRedis::Impl {
  explicit Impl(const std::string& url) : conn(io.get_executor(), config_of(url)) {}
  asio::io_context io;
  redis::Connection conn;
};

SyncRedis::SyncRedis(const std::string& url) : impl_(std::make_unique<Impl>(url)) {}
SyncRedis::~SyncRedis() = default;

redis::Reply SyncRedis::exec(redis::Command c, std::optional<std::chrono::milliseconds> timeout) {
  return run_sync(impl_->io, impl_->conn.exec(std::move(c), timeout));
}

struct EngineThread::Impl {
  Impl(EngineConfig config, ChannelRegistry registry)
      : engine(io, with_master_key(std::move(config)), std::move(registry)) {
    engine.start();
    thread = std::thread([this] { io.run(); });
  }
  ~Impl() { stop(); }
  void stop() {
    if (!thread.joinable()) return;
    asio::post(io, [this] { engine.stop([this] { io.stop(); }); });
    thread.join();
  }
  asio::io_context io;
  Engine engine;
  std::thread thread;
};

EngineThread::EngineThread(EngineConfig config)
    : impl_(std::make_unique<Impl>(std::move(config), ChannelRegistry::with_builtins())) {}
EngineThread::EngineThread(EngineConfig config, ChannelRegistry registry)
    : impl_(std::make_unique<Impl>(std::move(config), std::move(registry))) {}
EngineThread::~EngineThread() = default;
void EngineThread::stop() {
  impl_->stop();
}

struct Admin::Impl {
  Impl(const std::string& url, std::string prefix)
      : conn(io.get_executor(), config_of(url)),
        store(conn, std::move(prefix), auth::load_key_ring(master_key_file())) {}
  asio::io_context io;
  redis::Connection conn;
  auth::Store store;
};

Admin::Admin(const std::string& url, std::string prefix)
    : impl_(std::make_unique<Impl>(url, std::move(prefix))) {}
Admin::~Admin() = default;

std::string Admin::create_account(const std::string& name) {
  return run_sync(impl_->io, impl_->store.create_account(name)).id;
}

std::string Admin::create_api_key(const std::string& account, std::vector<std::string> scopes,
                                  std::vector<std::string> channels, std::int64_t expires_ms,
                                  std::string* id, std::string rate) {
  auth::ApiKey rec;
  rec.rate = std::move(rate);
  rec.account = account;
  rec.name = "test";
  rec.scopes = std::move(scopes);
  rec.channels = std::move(channels);
  rec.expires_ms = expires_ms;
  auto made = run_sync(impl_->io, impl_->store.create_api_key(rec));
  if (id) *id = made.record.id;
  return made.key;
}

std::string Admin::create_channel_key(const std::string& account, const std::string& type,
                                      std::map<std::string, std::string, std::less<>> settings,
                                      std::string* id) {
  auth::ChannelKey rec;
  rec.account = account;
  rec.type = type;
  rec.name = type + "-test";
  rec.settings = std::move(settings);
  auto made = run_sync(impl_->io, impl_->store.create_channel_key(rec));
  if (id) *id = made.record.id;
  return made.key;
}

void Admin::set_account_status(const std::string& account, const std::string& status) {
  run_sync(impl_->io, impl_->store.set_account_status(account, status));
}

void Admin::set_channel_status(const std::string& id, const std::string& status) {
  run_sync(impl_->io, impl_->store.set_channel_status(id, status));
}

std::string Admin::rotate_api_key(const std::string& id, std::chrono::milliseconds grace) {
  return run_sync(impl_->io, impl_->store.rotate_api_key(id, grace)).key;
}

std::map<std::string, std::int64_t> Admin::usage(const std::string& id) {
  return run_sync(impl_->io, impl_->store.usage(id));
}

void Admin::revoke_api_key(const std::string& id) {
  run_sync(impl_->io, impl_->store.revoke_api_key(id));
}

std::string push_job(SyncRedis& r, const std::string& prefix,
                     std::vector<std::pair<std::string, std::string>> fields) {
  auto c = redis::cmd("XADD", prefix + ":jobs", "*");
  for (auto& [k, v] : fields) {
    c.push_back(k);
    c.push_back(v);
  }
  auto id = r.exec(std::move(c));
  if (id.is_error()) throw std::runtime_error("XADD failed: " + id.str);
  return id.str;
}

std::optional<std::string> wait_result(SyncRedis& r, const std::string& prefix,
                                       const std::string& id, std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  std::string last = "0-0";
  for (;;) {
    auto got = r.exec(redis::cmd("GET", prefix + ":result:" + id));
    if (!got.is_nil() && !got.is_error()) return got.str;
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return std::nullopt;
    auto block = std::min<std::int64_t>(left.count(), 500);
    auto entries = r.exec(redis::cmd("XREAD", "COUNT", "1000", "BLOCK", std::to_string(block),
                                     "STREAMS", prefix + ":results", last),
                          std::chrono::milliseconds(block + 5000));
    if (entries.is_array() && !entries.elements.empty()) {
      const auto& list = entries.elements[0].elements[1].elements;
      if (!list.empty()) last = list.back().elements[0].str;
    }
  }
}

}  // namespace cascade::test
