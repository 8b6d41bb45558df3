#include "redis/connection.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include <charconv>
#include <deque>

#include "redis/resp.hpp"

namespace asio = boost::asio;
using asio::ip::tcp;

namespace cascade::redis {

std::string Config::describe() const {
  return host + ":" + std::to_string(port) + "/" + std::to_string(db);
}

std::optional<Config> parse_url(std::string_view url, std::string* error) {
  auto fail = [&](const char* why) -> std::optional<Config> {
    if (error) *error = why;
    return std::nullopt;
  };
  Config c;
  constexpr std::string_view scheme = "redis://";
  if (!url.starts_with(scheme)) return fail("redis URL must start with redis://");
  auto rest = url.substr(scheme.size());
  if (auto at = rest.rfind('@'); at != std::string_view::npos) {
    auto cred = rest.substr(0, at);
    rest = rest.substr(at + 1);
    if (auto colon = cred.find(':'); colon != std::string_view::npos) {
      c.username = std::string(cred.substr(0, colon));
      c.password = std::string(cred.substr(colon + 1));
    } else {
      c.password = std::string(cred);
    }
  }
  std::string_view hostport = rest, db;
  if (auto slash = rest.find('/'); slash != std::string_view::npos) {
    hostport = rest.substr(0, slash);
    db = rest.substr(slash + 1);
  }
  std::string_view host = hostport, port;
  if (!hostport.empty() && hostport.front() == '[') {
    auto close = hostport.find(']');
    if (close == std::string_view::npos) return fail("unterminated IPv6 address in redis URL");
    host = hostport.substr(1, close - 1);
    if (close + 1 < hostport.size()) {
      if (hostport[close + 1] != ':') return fail("bad port in redis URL");
      port = hostport.substr(close + 2);
    }
  } else if (auto colon = hostport.rfind(':'); colon != std::string_view::npos) {
    host = hostport.substr(0, colon);
    port = hostport.substr(colon + 1);
  }
  if (host.empty()) return fail("redis URL has no host");
  c.host = std::string(host);
  if (!port.empty()) {
    unsigned v = 0;
    auto [p, ec] = std::from_chars(port.data(), port.data() + port.size(), v);
    if (ec != std::errc() || p != port.data() + port.size() || v == 0 || v > 65535)
      return fail("bad port in redis URL");
    c.port = static_cast<std::uint16_t>(v);
  }
  if (!db.empty()) {
    int v = 0;
    auto [p, ec] = std::from_chars(db.data(), db.data() + db.size(), v);
    if (ec != std::errc() || p != db.data() + db.size() || v < 0)
      return fail("bad database number in redis URL");
    c.db = v;
  }
  return c;
}

namespace {

// A waiter's slot: the reply lands here and the timer is cancelled to wake it.
struct Pending {
  explicit Pending(asio::any_io_executor ex) : timer(ex) {}
  asio::steady_timer timer;
  std::size_t expected = 1;
  std::vector<Reply> replies;
  std::string error;  // set when the connection failed
  bool done = false;
};

}  // namespace

struct Connection::Impl : std::enable_shared_from_this<Impl> {
  Impl(asio::any_io_executor ex, Config c) : executor(ex), config(std::move(c)), socket(ex) {}

  asio::any_io_executor executor;
  Config config;
  tcp::socket socket;
  enum class State { disconnected, connecting, connected } state = State::disconnected;
  // Bumped on every (re)connect so that stale reader/writer loops stop.
  std::uint64_t generation = 0;
  std::uint64_t connect_count = 0;
  std::vector<std::shared_ptr<Pending>> connect_waiters;
  std::string connect_error;

  std::string write_buffer;
  bool writing = false;
  std::deque<std::shared_ptr<Pending>> in_flight;
  std::unique_ptr<Decoder> decoder = std::make_unique<Decoder>();
  std::function<void(const Reply&)> push_handler;
  std::function<void()> disconnect_handler;

  static bool is_push(const Reply& r) {
    return r.is_array() && !r.elements.empty() &&
           ((r.elements.size() == 3 && r.elements[0].str == "message") ||
            (r.elements.size() == 4 && r.elements[0].str == "pmessage"));
  }

  void fail_all(const std::string& why) {
    bool was_connected = state == State::connected;
    ++generation;
    state = State::disconnected;
    boost::system::error_code ignored;
    socket.shutdown(tcp::socket::shutdown_both, ignored);
    socket.close(ignored);
    write_buffer.clear();
    writing = false;
    decoder = std::make_unique<Decoder>();
    auto waiters = std::move(in_flight);
    in_flight.clear();
    for (auto& p : waiters) {
      p->error = why;
      p->done = true;
      p->timer.cancel();
    }
    if (was_connected && disconnect_handler) disconnect_handler();
  }

  // Raw request/response on the freshly connected socket, before the reader runs.
  asio::awaitable<Reply> handshake_exec(const Command& cmd) {
    std::string out;
    encode(out, cmd);
    co_await asio::async_write(socket, asio::buffer(out), asio::use_awaitable);
    // std::string, not a char array: g++ 12 miscompiles arrays in coroutine frames.
    std::string buf(512, '\0');
    for (;;) {
      if (auto r = decoder->next()) co_return std::move(*r);
      auto n = co_await socket.async_read_some(asio::buffer(buf), asio::use_awaitable);
      decoder->feed(std::string_view(buf.data(), n));
    }
  }

  asio::awaitable<void> do_connect() {
    auto self = shared_from_this();
    // The deadline handler may run after this frame is gone: it only touches shared state.
    auto resolver = std::make_shared<tcp::resolver>(executor);
    auto timed_out = std::make_shared<bool>(false);
    asio::steady_timer deadline(executor);
    deadline.expires_after(config.connect_timeout);
    deadline.async_wait([self, resolver, timed_out](boost::system::error_code ec) {
      if (!ec && self->state == State::connecting) {
        *timed_out = true;
        boost::system::error_code ignored;
        resolver->cancel();
        self->socket.close(ignored);
      }
    });
    try {
      auto endpoints = co_await resolver->async_resolve(config.host, std::to_string(config.port),
                                                        asio::use_awaitable);
      co_await asio::async_connect(socket, endpoints, asio::use_awaitable);
      socket.set_option(tcp::no_delay(true));
      if (!config.password.empty()) {
        Command auth = cmd("AUTH");
        if (!config.username.empty()) auth.push_back(config.username);
        auth.push_back(config.password);
        auto r = co_await handshake_exec(auth);
        // The server's text, not ours: it never echoes the password.
        if (r.is_error()) throw Error("redis AUTH failed: " + r.str);
      }
      if (config.db != 0) {
        auto r = co_await handshake_exec(cmd("SELECT", std::to_string(config.db)));
        if (r.is_error()) throw Error("redis SELECT failed: " + r.str);
      }
      deadline.cancel();
    } catch (const Error&) {
      deadline.cancel();
      throw;
    } catch (const boost::system::system_error& e) {
      deadline.cancel();
      if (*timed_out) throw Error("redis connect to " + config.describe() + " timed out");
      throw Error("redis connect to " + config.describe() + " failed: " + e.code().message());
    }
  }

  asio::awaitable<void> connect() {
    if (state == State::connected) co_return;
    if (state == State::connecting) {
      auto p = std::make_shared<Pending>(executor);
      p->timer.expires_at(asio::steady_timer::time_point::max());
      connect_waiters.push_back(p);
      co_await p->timer.async_wait(asio::as_tuple(asio::use_awaitable));
      if (!p->error.empty()) throw Error(p->error);
      co_return;
    }
    state = State::connecting;
    std::string failure;
    try {
      boost::system::error_code ignored;
      socket.close(ignored);
      socket = tcp::socket(executor);
      decoder = std::make_unique<Decoder>();
      co_await do_connect();
    } catch (const std::exception& e) {
      failure = e.what();
    }
    auto waiters = std::move(connect_waiters);
    connect_waiters.clear();
    if (!failure.empty()) {
      state = State::disconnected;
      boost::system::error_code ignored;
      socket.close(ignored);
      for (auto& w : waiters) {
        w->error = failure;
        w->timer.cancel();
      }
      throw Error(failure);
    }
    state = State::connected;
    ++generation;
    ++connect_count;
    asio::co_spawn(executor, read_loop(shared_from_this(), generation), asio::detached);
    for (auto& w : waiters)
      w->timer.cancel();
  }

  // Reads replies and hands them to waiters in order. Errors are handled inside (never
  // escapes), so detached is safe here.
  static asio::awaitable<void> read_loop(std::shared_ptr<Impl> self, std::uint64_t gen) {
    std::vector<char> buf(64 * 1024);
    for (;;) {
      auto [ec, n] = co_await self->socket.async_read_some(asio::buffer(buf),
                                                           asio::as_tuple(asio::use_awaitable));
      if (gen != self->generation) co_return;
      if (ec) {
        self->fail_all("redis connection lost: " + ec.message());
        co_return;
      }
      try {
        self->decoder->feed(std::string_view(buf.data(), n));
        while (auto reply = self->decoder->next()) {
          if (self->push_handler && is_push(*reply)) {
            self->push_handler(*reply);
            continue;
          }
          if (self->in_flight.empty()) throw Error("redis sent a reply nobody asked for");
          auto& p = self->in_flight.front();
          p->replies.push_back(std::move(*reply));
          if (p->replies.size() == p->expected) {
            p->done = true;
            p->timer.cancel();
            self->in_flight.pop_front();
          }
        }
      } catch (const std::exception& e) {
        self->fail_all(e.what());
        co_return;
      }
    }
  }

  static asio::awaitable<void> write_loop(std::shared_ptr<Impl> self, std::uint64_t gen) {
    std::string out;
    while (gen == self->generation && !self->write_buffer.empty()) {
      out.clear();
      out.swap(self->write_buffer);
      auto [ec, n] = co_await asio::async_write(self->socket, asio::buffer(out),
                                                asio::as_tuple(asio::use_awaitable));
      if (gen != self->generation) co_return;
      if (ec) {
        self->fail_all("redis write failed: " + ec.message());
        co_return;
      }
    }
    if (gen == self->generation) self->writing = false;
  }

  asio::awaitable<std::vector<Reply>> exec(std::vector<Command> cmds,
                                           std::optional<std::chrono::milliseconds> timeout) {
    if (cmds.empty()) co_return std::vector<Reply>{};
    auto self = shared_from_this();
    co_await connect();
    auto p = std::make_shared<Pending>(executor);
    p->expected = cmds.size();
    p->timer.expires_after(timeout.value_or(config.request_timeout));
    for (const auto& c : cmds)
      encode(write_buffer, c);
    in_flight.push_back(p);
    if (!writing) {
      writing = true;
      asio::co_spawn(executor, write_loop(self, generation), asio::detached);
    }
    co_await p->timer.async_wait(asio::as_tuple(asio::use_awaitable));
    if (!p->done) {
      // Timed out (or cancelled): the reply stream can no longer be trusted to line up
      // with our waiters, so drop the connection; everyone in flight fails and retries.
      fail_all("redis request timed out");
      throw Error("redis request timed out after " +
                  std::to_string(timeout.value_or(config.request_timeout).count()) + " ms");
    }
    if (!p->error.empty()) throw Error(p->error);
    co_return std::move(p->replies);
  }
};

Connection::Connection(asio::any_io_executor ex, Config config)
    : impl_(std::make_shared<Impl>(ex, std::move(config))) {}

Connection::~Connection() {
  if (!impl_) return;
  // The handlers belong to the owner being destroyed: never call them from here.
  impl_->disconnect_handler = nullptr;
  impl_->push_handler = nullptr;
  impl_->fail_all("redis connection closed");
}

asio::awaitable<void> Connection::connect() {
  return impl_->connect();
}

asio::awaitable<Reply> Connection::exec(Command cmd,
                                        std::optional<std::chrono::milliseconds> timeout) {
  std::vector<Command> cmds;
  cmds.push_back(std::move(cmd));
  auto replies = co_await impl_->exec(std::move(cmds), timeout);
  co_return std::move(replies.front());
}

asio::awaitable<std::vector<Reply>> Connection::exec_batch(
    std::vector<Command> cmds, std::optional<std::chrono::milliseconds> timeout) {
  return impl_->exec(std::move(cmds), timeout);
}

bool Connection::connected() const {
  return impl_->state == Impl::State::connected;
}
void Connection::close() {
  impl_->fail_all("redis connection closed");
}
const Config& Connection::config() const {
  return impl_->config;
}
std::uint64_t Connection::connects() const {
  return impl_->connect_count;
}

}  // namespace cascade::redis

namespace cascade::redis {

void Connection::set_push_handler(std::function<void(const Reply&)> handler) {
  impl_->push_handler = std::move(handler);
}

void Connection::set_disconnect_handler(std::function<void()> handler) {
  impl_->disconnect_handler = std::move(handler);
}

}  // namespace cascade::redis
