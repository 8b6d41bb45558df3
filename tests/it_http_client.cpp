// HttpClient against a small in-test HTTP server on a loopback port (its own thread and
// io_context). The server's behaviour per request is scripted by each test; tests
// synchronise on what the server saw, never on sleeps.
#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>

#include <atomic>
#include <condition_variable>
#include <fstream>
#include <functional>
#include <map>
#include <mutex>
#include <thread>

#include "channels/classify.hpp"
#include "channels/http_client.hpp"
#include "support/process.hpp"

namespace cascade {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

// What the server does with one request.
struct Reply {
  enum Action {
    respond,            // answer, honouring keep_alive
    respond_and_close,  // answer with "keep-alive" and close anyway (idle-close race)
    close,              // read the request and close without answering
    hang,               // read the request and never answer
  };
  Action action = respond;
  int status = 200;
  std::string body = "ok";
  bool keep_alive = true;
  std::chrono::milliseconds delay{0};  // before answering (a timer: other connections go on)
};

struct Seen {
  std::string target;
  std::string body;
  std::string host;
  int connection = 0;  // 1-based number of the server connection it came on
  int nth = 0;         // 1-based number of the request on that connection
};

using Script = std::function<Reply(const Seen&)>;

class TestServer {
 public:
  explicit TestServer(Script script, ssl::context* tls = nullptr)
      : script_(std::move(script)),
        tls_(tls),
        acceptor_(ioc_, {asio::ip::make_address("127.0.0.1"), 0}) {
    port_ = acceptor_.local_endpoint().port();
    asio::co_spawn(ioc_, accept_loop(), [](std::exception_ptr) {});
    thread_ = std::thread([this] { ioc_.run(); });
  }
  ~TestServer() {
    ioc_.stop();
    thread_.join();
  }

  std::uint16_t port() const { return port_; }
  std::string base() const { return "http://127.0.0.1:" + std::to_string(port_); }
  int accepted() const { return accepted_; }
  int closed() const { return closed_; }
  int requests() const { return requests_; }
  int max_concurrent() const { return max_concurrent_; }
  // When each connection was accepted, in order.
  std::vector<Clock::time_point> accept_times() {
    std::lock_guard lock(mutex_);
    return accept_times_;
  }
  // Most requests with that target the server was handling at once.
  int max_in_flight(const std::string& target) {
    std::lock_guard lock(mutex_);
    return max_in_flight_[target];
  }

  // Waits until the server counted at least n closed connections.
  bool wait_closed(int n, std::chrono::milliseconds limit = 5s) {
    std::unique_lock lock(mutex_);
    return changed_.wait_for(lock, limit, [&] { return closed_ >= n; });
  }

 private:
  asio::awaitable<void> accept_loop() {
    for (;;) {
      auto [ec, sock] = co_await acceptor_.async_accept(use_tuple);
      if (ec) co_return;
      {
        std::lock_guard lock(mutex_);
        accept_times_.push_back(Clock::now());
      }
      int id = ++accepted_;
      int now = ++open_;
      for (int m = max_concurrent_; now > m && !max_concurrent_.compare_exchange_weak(m, now);) {
      }
      asio::co_spawn(ioc_, session(std::move(sock), id), [](std::exception_ptr) {});
    }
  }

  asio::awaitable<void> session(tcp::socket sock, int id) {
    if (tls_) {
      beast::ssl_stream<beast::tcp_stream> stream(std::move(sock), *tls_);
      auto [ec] = co_await stream.async_handshake(ssl::stream_base::server, use_tuple);
      if (!ec) co_await serve(stream, id);
      beast::get_lowest_layer(stream).close();
    } else {
      beast::tcp_stream stream(std::move(sock));
      co_await serve(stream, id);
      stream.close();
    }
    --open_;
    {
      std::lock_guard lock(mutex_);
      ++closed_;
    }
    changed_.notify_all();
  }

  template <class Stream>
  asio::awaitable<void> serve(Stream& stream, int id) {
    beast::flat_buffer buffer;
    for (int nth = 1;; ++nth) {
      http::request<http::string_body> req;
      auto [ec, n] = co_await http::async_read(stream, buffer, req, use_tuple);
      if (ec) co_return;  // client closed
      ++requests_;
      Seen seen{std::string(req.target()), req.body(), std::string(req[http::field::host]), id,
                nth};
      Reply reply = script_(seen);
      if (reply.action == Reply::close) co_return;
      if (reply.action == Reply::hang) continue;  // the next read ends when the client closes
      {
        std::lock_guard lock(mutex_);
        int now = ++in_flight_[seen.target];
        max_in_flight_[seen.target] = std::max(max_in_flight_[seen.target], now);
      }
      if (reply.delay.count() > 0) {
        asio::steady_timer timer(ioc_, reply.delay);
        co_await timer.async_wait(use_tuple);
      }
      {
        std::lock_guard lock(mutex_);
        --in_flight_[seen.target];
      }
      http::response<http::string_body> res{static_cast<http::status>(reply.status), 11};
      res.set(http::field::content_type, "text/plain");
      res.keep_alive(reply.action == Reply::respond_and_close || reply.keep_alive);
      res.body() = reply.body;
      res.prepare_payload();
      auto [wec, wn] = co_await http::async_write(stream, res, use_tuple);
      if (wec || reply.action == Reply::respond_and_close || !reply.keep_alive) co_return;
    }
  }

  Script script_;
  ssl::context* tls_;
  asio::io_context ioc_;
  tcp::acceptor acceptor_;
  std::uint16_t port_ = 0;
  std::thread thread_;
  std::atomic<int> accepted_{0}, open_{0}, max_concurrent_{0}, requests_{0};
  std::mutex mutex_;
  std::condition_variable changed_;
  int closed_ = 0;
  std::vector<Clock::time_point> accept_times_;
  std::map<std::string, int> in_flight_, max_in_flight_;
};

HttpRequest make_request(const std::string& base, std::chrono::milliseconds timeout = 5s) {
  HttpRequest r;
  r.url = *parse_url(base);
  r.target = "/bot123:SECRET/sendMessage";
  r.body = R"({"chat_id":1,"text":"hi"})";
  r.deadline = Clock::now() + timeout;
  return r;
}

// Runs one test coroutine on ioc to completion (bounded, so a hang fails instead of blocking).
void run(asio::io_context& ioc, std::function<asio::awaitable<void>()> body) {
  bool done = false;
  std::exception_ptr error;
  asio::co_spawn(ioc, body(), [&](std::exception_ptr e) {
    error = e;
    done = true;
    ioc.stop();  // idle-sweep timers would otherwise keep run() going
  });
  ioc.run_for(20s);
  ioc.restart();
  ASSERT_TRUE(done) << "test coroutine did not finish";
  if (error) std::rethrow_exception(error);
}

// Runs handlers one at a time until pred() holds (or the limit passes).
void run_until(asio::io_context& ioc, const std::function<bool()>& pred,
               std::chrono::milliseconds limit = 10s) {
  auto end = Clock::now() + limit;
  ioc.restart();
  while (!pred() && Clock::now() < end)
    ioc.run_one_for(end - Clock::now());
}

// Ten sequential requests share one keep-alive connection.
TEST(HttpClient, KeepAliveReusesOneConnection) {
  TestServer server([](const Seen&) { return Reply{}; });
  asio::io_context ioc;
  HttpClient client(ioc.get_executor());
  run(ioc, [&]() -> asio::awaitable<void> {
    for (int i = 0; i < 10; ++i) {
      auto r = co_await client.send(make_request(server.base()));
      EXPECT_EQ(r.error, HttpResponse::Error::none) << r.error_text;
      EXPECT_EQ(r.status, 200);
      EXPECT_EQ(r.body, "ok");
      EXPECT_EQ(r.header("Content-Type"), "text/plain");
    }
  });
  EXPECT_EQ(client.connections_opened(), 1u);
  EXPECT_EQ(client.idle_connections(), 1u);
  EXPECT_EQ(server.accepted(), 1);
  EXPECT_EQ(server.requests(), 10);
}

// The Host header carries the port; the target goes out verbatim.
TEST(HttpClient, SendsHostAndTarget) {
  std::string host, target, body;
  TestServer server([&](const Seen& s) {
    host = s.host;
    target = s.target;
    body = s.body;
    return Reply{};
  });
  asio::io_context ioc;
  HttpClient client(ioc.get_executor());
  run(ioc, [&]() -> asio::awaitable<void> {
    auto r = co_await client.send(make_request(server.base()));
    EXPECT_EQ(r.status, 200);
  });
  EXPECT_EQ(host, "127.0.0.1:" + std::to_string(server.port()));
  EXPECT_EQ(target, "/bot123:SECRET/sendMessage");
  EXPECT_EQ(body, R"({"chat_id":1,"text":"hi"})");
}

// The server closes the connection right after answering (while claiming keep-alive):
// the next request goes out on a new connection without the caller noticing.
TEST(HttpClient, ServerClosedIdleConnectionIsReplaced) {
  TestServer server([](const Seen&) { return Reply{Reply::respond_and_close}; });
  asio::io_context ioc;
  HttpClient client(ioc.get_executor());
  run(ioc, [&]() -> asio::awaitable<void> {
    auto r1 = co_await client.send(make_request(server.base()));
    EXPECT_EQ(r1.status, 200);
    EXPECT_TRUE(server.wait_closed(1));
    auto r2 = co_await client.send(make_request(server.base()));
    EXPECT_EQ(r2.error, HttpResponse::Error::none) << r2.error_text;
    EXPECT_EQ(r2.status, 200);
  });
  EXPECT_EQ(client.connections_opened(), 2u);
  EXPECT_EQ(server.requests(), 2);
}

// The race the peek cannot see: the pooled connection looks alive, the request is
// written, and the server closes it without a byte of response. Retried once, fresh.
TEST(HttpClient, StalePooledConnectionRetriedOnceOnFreshConnection) {
  TestServer server([](const Seen& s) { return s.nth == 2 ? Reply{Reply::close} : Reply{}; });
  asio::io_context ioc;
  HttpClient client(ioc.get_executor());
  run(ioc, [&]() -> asio::awaitable<void> {
    auto r1 = co_await client.send(make_request(server.base()));
    EXPECT_EQ(r1.status, 200);
    auto r2 = co_await client.send(make_request(server.base()));
    EXPECT_EQ(r2.error, HttpResponse::Error::none) << r2.error_text;
    EXPECT_EQ(r2.status, 200);
  });
  EXPECT_EQ(client.connections_opened(), 2u);
  EXPECT_EQ(server.requests(), 3);  // first, the lost one, the retry
}

// On a fresh connection the same failure is not retried: the server may have acted.
TEST(HttpClient, FreshConnectionClosedAfterRequestIsNotRetried) {
  TestServer server([](const Seen&) { return Reply{Reply::close}; });
  asio::io_context ioc;
  HttpClient client(ioc.get_executor());
  run(ioc, [&]() -> asio::awaitable<void> {
    auto r = co_await client.send(make_request(server.base()));
    EXPECT_EQ(r.error, HttpResponse::Error::io);
    EXPECT_TRUE(r.request_written);
    auto o = classify_transport(r);
    EXPECT_EQ(o.kind, Outcome::Kind::transient);
    EXPECT_TRUE(o.unknown);
  });
  EXPECT_EQ(server.requests(), 1);
  EXPECT_EQ(client.idle_connections(), 0u);
}

// The server reads the request and never answers: timeout at the deadline, flagged as
// written (outcome unknown), connection not pooled.
TEST(HttpClient, DeadlineAfterRequestWrittenIsTimeoutWithUnknownOutcome) {
  TestServer server([](const Seen&) { return Reply{Reply::hang}; });
  asio::io_context ioc;
  HttpClient client(ioc.get_executor());
  run(ioc, [&]() -> asio::awaitable<void> {
    auto start = Clock::now();
    auto r = co_await client.send(make_request(server.base(), 300ms));
    auto took = Clock::now() - start;
    EXPECT_EQ(r.error, HttpResponse::Error::timeout);
    EXPECT_TRUE(r.request_written);
    EXPECT_GE(took, 250ms);
    EXPECT_LT(took, 3s);
    EXPECT_EQ(r.error_text.find("SECRET"), std::string::npos);
    auto o = classify_transport(r);
    EXPECT_EQ(o.kind, Outcome::Kind::transient);
    EXPECT_TRUE(o.unknown);
    EXPECT_EQ(o.error, "timed out after request was sent (outcome unknown)");
  });
  EXPECT_EQ(client.idle_connections(), 0u);
  EXPECT_TRUE(server.wait_closed(1));  // the client closed it
}

// Nobody listens: a connect error, nothing written.
TEST(HttpClient, ConnectionRefusedIsConnectError) {
  auto port = test::free_port();
  asio::io_context ioc;
  HttpClient client(ioc.get_executor());
  run(ioc, [&]() -> asio::awaitable<void> {
    auto r = co_await client.send(make_request("http://127.0.0.1:" + std::to_string(port)));
    EXPECT_EQ(r.error, HttpResponse::Error::connect);
    EXPECT_FALSE(r.request_written);
    EXPECT_NE(r.error_text.find("connection refused"), std::string::npos) << r.error_text;
    auto o = classify_transport(r);
    EXPECT_EQ(o.kind, Outcome::Kind::transient);
    EXPECT_EQ(o.cause, Outcome::Cause::network);
    EXPECT_FALSE(o.unknown);
  });
  EXPECT_EQ(client.connections_opened(), 0u);
}

// A body over max_response_bytes fails as too_large and the connection is dropped.
TEST(HttpClient, ResponseOverLimitIsTooLarge) {
  TestServer server([](const Seen& s) {
    return s.target == "/small" ? Reply{} : Reply{Reply::respond, 200, std::string(5000, 'x')};
  });
  asio::io_context ioc;
  HttpClientConfig cfg;
  cfg.max_response_bytes = 4096;
  HttpClient client(ioc.get_executor(), cfg);
  run(ioc, [&]() -> asio::awaitable<void> {
    auto r = co_await client.send(make_request(server.base()));
    EXPECT_EQ(r.error, HttpResponse::Error::too_large) << r.error_text;
    EXPECT_TRUE(r.request_written);
    EXPECT_EQ(client.idle_connections(), 0u);
    auto small = make_request(server.base());
    small.target = "/small";
    auto r2 = co_await client.send(small);
    EXPECT_EQ(r2.status, 200);
  });
  EXPECT_EQ(client.connections_opened(), 2u);
}

// 100 concurrent requests through a pool of 4: never more than 4 connections, all served.
TEST(HttpClient, PoolBoundHoldsUnderConcurrency) {
  TestServer server([](const Seen&) { return Reply{}; });
  asio::io_context ioc;
  HttpClientConfig cfg;
  cfg.max_connections_per_host = 4;
  HttpClient client(ioc.get_executor(), cfg);
  int ok = 0, done = 0;
  for (int i = 0; i < 100; ++i) {
    asio::co_spawn(ioc, client.send(make_request(server.base(), 10s)),
                   [&](std::exception_ptr e, HttpResponse r) {
                     if (!e && r.error == HttpResponse::Error::none && r.status == 200) ++ok;
                     ++done;
                   });
  }
  run_until(ioc, [&] { return done == 100; });
  EXPECT_EQ(done, 100);
  EXPECT_EQ(ok, 100);
  EXPECT_EQ(client.connections_opened(), 4u);
  EXPECT_LE(server.max_concurrent(), 4);
  EXPECT_EQ(server.accepted(), 4);
  EXPECT_EQ(client.idle_connections(), 4u);
}

// A request that waits for a slot longer than its deadline times out, unwritten.
TEST(HttpClient, WaitingForASlotHonoursTheDeadline) {
  TestServer server([](const Seen&) { return Reply{Reply::hang}; });
  asio::io_context ioc;
  HttpClientConfig cfg;
  cfg.max_connections_per_host = 1;
  HttpClient client(ioc.get_executor(), cfg);
  std::optional<HttpResponse> first, second;
  asio::co_spawn(ioc, client.send(make_request(server.base(), 2s)),
                 [&](std::exception_ptr, HttpResponse r) { first = std::move(r); });
  asio::co_spawn(ioc, client.send(make_request(server.base(), 200ms)),
                 [&](std::exception_ptr, HttpResponse r) { second = std::move(r); });
  run_until(ioc, [&] { return second.has_value(); });
  ASSERT_TRUE(second);
  EXPECT_EQ(second->error, HttpResponse::Error::timeout);
  EXPECT_FALSE(second->request_written);
  EXPECT_NE(second->error_text.find("waiting for a free connection"), std::string::npos);
  EXPECT_FALSE(first);  // still hanging
  EXPECT_EQ(server.requests(), 1);
}

// Cancelling a request in flight closes its connection and frees its slot: with a pool of
// one, the next request still gets through.
TEST(HttpClient, CancelledRequestFreesItsConnection) {
  asio::io_context ioc;
  asio::cancellation_signal cancel;
  TestServer server([&](const Seen& s) {
    if (s.connection == 1) {
      // Cancel once the request is on the server: the client is then blocked in its read.
      asio::post(ioc, [&] { cancel.emit(asio::cancellation_type::terminal); });
      return Reply{Reply::hang};
    }
    return Reply{};
  });
  HttpClientConfig cfg;
  cfg.max_connections_per_host = 1;
  HttpClient client(ioc.get_executor(), cfg);
  std::optional<HttpResponse> cancelled;
  asio::co_spawn(
      ioc, client.send(make_request(server.base(), 10s)),
      asio::bind_cancellation_slot(cancel.slot(), [&](std::exception_ptr e, HttpResponse r) {
        EXPECT_FALSE(e);
        cancelled = std::move(r);
      }));
  run_until(ioc, [&] { return cancelled.has_value(); });
  ASSERT_TRUE(cancelled);
  EXPECT_EQ(cancelled->error, HttpResponse::Error::cancelled);
  EXPECT_TRUE(cancelled->request_written);
  EXPECT_EQ(client.idle_connections(), 0u);
  EXPECT_TRUE(server.wait_closed(1));  // the client closed the connection

  run(ioc, [&]() -> asio::awaitable<void> {
    auto r = co_await client.send(make_request(server.base(), 2s));
    EXPECT_EQ(r.error, HttpResponse::Error::none) << r.error_text;
    EXPECT_EQ(r.status, 200);
  });
  EXPECT_EQ(client.connections_opened(), 2u);
  EXPECT_EQ(client.idle_connections(), 1u);
}

// A request cancelled while queued for a slot leaves the queue; when the slot holder is
// cancelled too, the next queued request gets the slot.
TEST(HttpClient, CancelledWaiterLeavesQueue) {
  asio::io_context ioc;
  asio::cancellation_signal cancel_a, cancel_b;
  TestServer server([&](const Seen& s) {
    if (s.connection == 1) {
      asio::post(ioc, [&] { cancel_b.emit(asio::cancellation_type::terminal); });
      return Reply{Reply::hang};
    }
    return Reply{};
  });
  HttpClientConfig cfg;
  cfg.max_connections_per_host = 1;
  HttpClient client(ioc.get_executor(), cfg);
  std::optional<HttpResponse> a, b, c;
  auto spawn = [&](std::optional<HttpResponse>& out, asio::cancellation_signal* sig) {
    auto handler = [&out](std::exception_ptr, HttpResponse r) { out = std::move(r); };
    if (sig)
      asio::co_spawn(ioc, client.send(make_request(server.base(), 10s)),
                     asio::bind_cancellation_slot(sig->slot(), handler));
    else
      asio::co_spawn(ioc, client.send(make_request(server.base(), 10s)), handler);
  };
  spawn(a, &cancel_a);  // gets the only slot, hangs on the server
  spawn(b, &cancel_b);  // queued; cancelled once the server saw a's request
  run_until(ioc, [&] { return b.has_value(); });
  ASSERT_TRUE(b);
  EXPECT_EQ(b->error, HttpResponse::Error::cancelled);
  EXPECT_FALSE(b->request_written);
  EXPECT_FALSE(a);

  spawn(c, nullptr);  // queued behind a
  asio::post(ioc, [&] { cancel_a.emit(asio::cancellation_type::terminal); });
  run_until(ioc, [&] { return a && c; });
  ASSERT_TRUE(a);
  EXPECT_EQ(a->error, HttpResponse::Error::cancelled);
  ASSERT_TRUE(c);
  EXPECT_EQ(c->error, HttpResponse::Error::none) << c->error_text;
  EXPECT_EQ(c->status, 200);
  EXPECT_EQ(client.connections_opened(), 2u);
  EXPECT_EQ(server.requests(), 2);
}

// A gate the server's script can block on (the server has one thread: while it waits,
// the connection it serves gets no answer).
class Gate {
 public:
  void wait() {
    std::unique_lock lock(mutex_);
    open_cv_.wait(lock, [&] { return open_; });
  }
  void open() {
    {
      std::lock_guard lock(mutex_);
      open_ = true;
    }
    open_cv_.notify_all();
  }

 private:
  std::mutex mutex_;
  std::condition_variable open_cv_;
  bool open_ = false;
};

// 200 requests queue behind one busy connection; every third is cancelled and every
// seventh times out while queued. They leave the middle of the queue; the others are
// served in their order on the one connection, and nothing written was lost.
TEST(HttpClient, CancelledWaitersLeaveTheMiddleOfALongQueue) {
  constexpr int n = 200;
  Gate gate;
  std::mutex seen_mutex;
  std::vector<std::string> served;  // bodies in the order the server saw them
  TestServer server([&](const Seen& s) {
    if (s.body == "first") gate.wait();
    std::lock_guard lock(seen_mutex);
    served.push_back(s.body);
    return Reply{};
  });
  asio::io_context ioc;
  HttpClientConfig cfg;
  cfg.max_connections_per_host = 1;
  HttpClient client(ioc.get_executor(), cfg);
  auto request = [&](std::string body, std::chrono::milliseconds timeout) {
    auto r = make_request(server.base(), timeout);
    r.body = std::move(body);
    return r;
  };
  std::optional<HttpResponse> first;
  asio::co_spawn(ioc, client.send(request("first", 10s)),
                 [&](std::exception_ptr, HttpResponse r) { first = std::move(r); });
  std::vector<asio::cancellation_signal> signals(n);
  std::vector<std::optional<HttpResponse>> out(n);
  auto cancelled = [](int i) { return i % 3 == 0; };
  auto times_out = [&](int i) { return !cancelled(i) && i % 7 == 0; };
  for (int i = 0; i < n; ++i)
    asio::co_spawn(ioc, client.send(request(std::to_string(i), times_out(i) ? 100ms : 10s)),
                   asio::bind_cancellation_slot(
                       signals[i].slot(),
                       [&out, i](std::exception_ptr, HttpResponse r) { out[i] = std::move(r); }));
  run_until(ioc, [&] { return server.requests() == 1; });  // "first" holds the connection
  for (int i = 0; i < n; ++i)
    if (cancelled(i)) signals[i].emit(asio::cancellation_type::terminal);
  auto left = [&] {
    for (int i = 0; i < n; ++i)
      if ((cancelled(i) || times_out(i)) && !out[i]) return false;
    return true;
  };
  run_until(ioc, left);
  ASSERT_TRUE(left());
  gate.open();
  run_until(ioc, [&] {
    if (!first) return false;
    for (auto& o : out)
      if (!o) return false;
    return true;
  });
  ASSERT_TRUE(first);
  EXPECT_EQ(first->status, 200);
  std::vector<std::string> expected{"first"};
  for (int i = 0; i < n; ++i) {
    ASSERT_TRUE(out[i]) << i;
    if (cancelled(i)) {
      EXPECT_EQ(out[i]->error, HttpResponse::Error::cancelled) << i;
      EXPECT_FALSE(out[i]->request_written) << i;
    } else if (times_out(i)) {
      EXPECT_EQ(out[i]->error, HttpResponse::Error::timeout) << i;
      EXPECT_FALSE(out[i]->request_written) << i;
    } else {
      EXPECT_EQ(out[i]->error, HttpResponse::Error::none) << i << ": " << out[i]->error_text;
      expected.push_back(std::to_string(i));
    }
  }
  std::lock_guard lock(seen_mutex);
  EXPECT_EQ(served, expected);  // FIFO among those still waiting
  EXPECT_EQ(client.connections_opened(), 1u);
  EXPECT_EQ(client.idle_connections(), 1u);
}

// The connection is granted to a queued request in the same turn as that request is
// cancelled (its cancellation is emitted from the completion of the request that freed
// the connection). Whichever wins, the cancelled request ends as cancelled, unwritten, and
// its slot passes on: the request queued behind it is served.
TEST(HttpClient, GrantRacingCancellationPassesTheSlotOn) {
  TestServer server([](const Seen&) { return Reply{}; });
  asio::io_context ioc;
  HttpClientConfig cfg;
  cfg.max_connections_per_host = 1;
  HttpClient client(ioc.get_executor(), cfg);
  asio::cancellation_signal cancel_b;
  std::optional<HttpResponse> a, b, c;
  asio::co_spawn(ioc, client.send(make_request(server.base())),
                 [&](std::exception_ptr, HttpResponse r) {
                   a = std::move(r);
                   cancel_b.emit(asio::cancellation_type::terminal);
                 });
  asio::co_spawn(
      ioc, client.send(make_request(server.base())),
      asio::bind_cancellation_slot(cancel_b.slot(), [&](std::exception_ptr e, HttpResponse r) {
        EXPECT_FALSE(e);
        b = std::move(r);
      }));
  asio::co_spawn(ioc, client.send(make_request(server.base())),
                 [&](std::exception_ptr, HttpResponse r) { c = std::move(r); });
  run_until(ioc, [&] { return a && b && c; });
  ASSERT_TRUE(a && b && c);
  EXPECT_EQ(a->status, 200);
  EXPECT_EQ(b->error, HttpResponse::Error::cancelled) << b->error_text;
  EXPECT_FALSE(b->request_written);
  EXPECT_EQ(c->error, HttpResponse::Error::none) << c->error_text;
  EXPECT_EQ(c->status, 200);
  EXPECT_EQ(server.requests(), 2);
  EXPECT_LE(client.connections_opened(), 2u);
  // Nothing leaked: the slot is free again and one more request goes through at once.
  run(ioc, [&]() -> asio::awaitable<void> {
    auto r = co_await client.send(make_request(server.base()));
    EXPECT_EQ(r.status, 200);
  });
}

// 300 concurrent requests answered after 100 ms, pool of 16: the server never sees more
// than 16 connections, and the client's count of open ones never exceeds it either.
TEST(HttpClient, ConnectionLimitHoldsUnderLoad) {
  TestServer server([](const Seen&) {
    Reply r;
    r.delay = 100ms;
    return r;
  });
  asio::io_context ioc;
  HttpClientConfig cfg;
  cfg.max_connections_per_host = 16;
  HttpClient client(ioc.get_executor(), cfg);
  int ok = 0, done = 0;
  std::size_t most_open = 0;
  for (int i = 0; i < 300; ++i)
    asio::co_spawn(ioc, client.send(make_request(server.base(), 15s)),
                   [&](std::exception_ptr e, HttpResponse r) {
                     if (!e && r.status == 200) ++ok;
                     ++done;
                   });
  run_until(ioc, [&] {
    most_open = std::max(most_open, client.open_connections());
    return done == 300;
  });
  EXPECT_EQ(ok, 300);
  EXPECT_LE(server.max_concurrent(), 16);
  EXPECT_EQ(server.accepted(), 16);
  EXPECT_LE(most_open, 16u);
  EXPECT_EQ(client.open_connections(), 16u);  // all idle now
}

// connect_rate 50/s with a burst of 5: 30 concurrent requests (answered after 1 s, so each
// needs its own connection) open 5 connections at once, then one per 20 ms.
TEST(HttpClient, NewConnectionsAreOpenedAtTheConnectRate) {
  TestServer server([](const Seen&) {
    Reply r;
    r.delay = 1s;
    return r;
  });
  asio::io_context ioc;
  HttpClientConfig cfg;
  cfg.connect_rate = 50;
  cfg.connect_burst = 5;
  HttpClient client(ioc.get_executor(), cfg);
  int ok = 0, done = 0;
  for (int i = 0; i < 30; ++i)
    asio::co_spawn(ioc, client.send(make_request(server.base(), 15s)),
                   [&](std::exception_ptr e, HttpResponse r) {
                     if (!e && r.status == 200) ++ok;
                     ++done;
                   });
  run_until(ioc, [&] { return done == 30; });
  EXPECT_EQ(ok, 30);
  auto times = server.accept_times();
  ASSERT_EQ(times.size(), 30u);
  for (std::size_t k = 5; k < times.size(); ++k) {
    // Token k (0-based) is due (k - 4) / 50 s after the start; a little slack for the
    // scheduler (a connection is never early by more than a tick of the clock).
    auto due = std::chrono::duration<double>((static_cast<double>(k) - 4) / 50.0);
    EXPECT_GE(times[k] - times[0], due - 5ms) << k;
  }
  EXPECT_LT(times[4] - times[0], 100ms);  // the burst went at once
  EXPECT_GE(times.back() - times[0], 450ms);
}

// A request waiting for a connect token takes a connection freed meanwhile instead: one
// token a second, five quick requests, all served at once on the first connection.
TEST(HttpClient, FreedConnectionServesRequestsWaitingForATokenFirst) {
  TestServer server([](const Seen&) { return Reply{}; });
  asio::io_context ioc;
  HttpClientConfig cfg;
  cfg.connect_rate = 1;
  cfg.connect_burst = 1;
  HttpClient client(ioc.get_executor(), cfg);
  int ok = 0, done = 0;
  auto start = Clock::now();
  for (int i = 0; i < 5; ++i)
    asio::co_spawn(ioc, client.send(make_request(server.base(), 10s)),
                   [&](std::exception_ptr e, HttpResponse r) {
                     if (!e && r.status == 200) ++ok;
                     ++done;
                   });
  run_until(ioc, [&] { return done == 5; });
  EXPECT_EQ(ok, 5);
  EXPECT_LT(Clock::now() - start, 900ms);
  EXPECT_EQ(client.connections_opened(), 1u);
}

// Key "a" may have 2 requests in flight: its 12 requests (answered after 150 ms) never
// exceed 2 on the server, and a request of key "b" sent after them is not queued behind
// them: the pool (4) still has room for it.
TEST(HttpClient, PerKeyCapLeavesThePoolToOtherKeys) {
  TestServer server([](const Seen&) {
    Reply r;
    r.delay = 150ms;
    return r;
  });
  asio::io_context ioc;
  HttpClientConfig cfg;
  cfg.max_connections_per_host = 4;
  HttpClient client(ioc.get_executor(), cfg);
  auto keyed = [&](const std::string& key) {
    auto r = make_request(server.base(), 15s);
    r.target = "/" + key;
    r.cap_key = key;
    r.max_in_flight = 2;
    return r;
  };
  int a_ok = 0, a_done = 0;
  std::optional<HttpResponse> b;
  Clock::time_point b_done{};
  for (int i = 0; i < 12; ++i)
    asio::co_spawn(ioc, client.send(keyed("a")), [&](std::exception_ptr e, HttpResponse r) {
      if (!e && r.status == 200) ++a_ok;
      ++a_done;
    });
  auto b_start = Clock::now();
  asio::co_spawn(ioc, client.send(keyed("b")), [&](std::exception_ptr, HttpResponse r) {
    b = std::move(r);
    b_done = Clock::now();
  });
  run_until(ioc, [&] { return a_done == 12 && b; });
  EXPECT_EQ(a_ok, 12);
  ASSERT_TRUE(b);
  EXPECT_EQ(b->status, 200);
  EXPECT_LT(b_done - b_start, 400ms);  // uncapped by "a": served in one round
  EXPECT_EQ(server.max_in_flight("/a"), 2);
  EXPECT_LE(server.max_concurrent(), 4);
}

// A request cancelled while queued under its key leaves that queue; the key's place passes
// on when the holder finishes, and nothing is left behind.
TEST(HttpClient, CancelledRequestLeavesItsKeysQueue) {
  asio::io_context ioc;
  asio::cancellation_signal cancel;
  TestServer server([&](const Seen& s) {
    // Cancel once the first request is on the server: the other two wait for the key.
    if (s.connection == 1 && s.nth == 1)
      asio::post(ioc, [&] { cancel.emit(asio::cancellation_type::terminal); });
    Reply r;
    r.delay = 200ms;
    return r;
  });
  HttpClient client(ioc.get_executor());
  auto keyed = [&] {
    auto r = make_request(server.base(), 10s);
    r.cap_key = "k";
    r.max_in_flight = 1;
    return r;
  };
  std::optional<HttpResponse> a, b, c;
  asio::co_spawn(ioc, client.send(keyed()),
                 [&](std::exception_ptr, HttpResponse r) { a = std::move(r); });
  asio::co_spawn(ioc, client.send(keyed()),
                 asio::bind_cancellation_slot(
                     cancel.slot(), [&](std::exception_ptr, HttpResponse r) { b = std::move(r); }));
  asio::co_spawn(ioc, client.send(keyed()),
                 [&](std::exception_ptr, HttpResponse r) { c = std::move(r); });
  run_until(ioc, [&] { return a && b && c; });
  ASSERT_TRUE(a && b && c);
  EXPECT_EQ(b->error, HttpResponse::Error::cancelled);
  EXPECT_FALSE(b->request_written);
  EXPECT_EQ(a->status, 200);
  EXPECT_EQ(c->status, 200);
  EXPECT_EQ(server.requests(), 2);
  EXPECT_EQ(client.connections_opened(), 1u);  // one at a time: c reused a's connection
}

// Idle connections are closed once idle_timeout passes (waiting here is the behaviour
// under test, not synchronisation).
TEST(HttpClient, IdleConnectionsExpire) {
  TestServer server([](const Seen&) { return Reply{}; });
  asio::io_context ioc;
  HttpClientConfig cfg;
  cfg.idle_timeout = 100ms;
  HttpClient client(ioc.get_executor(), cfg);
  run(ioc, [&]() -> asio::awaitable<void> {
    auto r = co_await client.send(make_request(server.base()));
    EXPECT_EQ(r.status, 200);
    EXPECT_EQ(client.idle_connections(), 1u);
    asio::steady_timer t(ioc, 400ms);
    co_await t.async_wait(asio::use_awaitable);
    EXPECT_EQ(client.idle_connections(), 0u);
  });
  EXPECT_TRUE(server.wait_closed(1));
}

// "Connection: close" responses are never pooled.
TEST(HttpClient, ConnectionCloseIsNotPooled) {
  TestServer server([](const Seen&) {
    Reply r;
    r.keep_alive = false;
    return r;
  });
  asio::io_context ioc;
  HttpClient client(ioc.get_executor());
  run(ioc, [&]() -> asio::awaitable<void> {
    for (int i = 0; i < 3; ++i) {
      auto r = co_await client.send(make_request(server.base()));
      EXPECT_EQ(r.status, 200);
    }
  });
  EXPECT_EQ(client.connections_opened(), 3u);
  EXPECT_EQ(client.idle_connections(), 0u);
}

// close_all() drops idle connections.
TEST(HttpClient, CloseAllDropsIdleConnections) {
  TestServer server([](const Seen&) { return Reply{}; });
  asio::io_context ioc;
  HttpClient client(ioc.get_executor());
  run(ioc, [&]() -> asio::awaitable<void> {
    auto r = co_await client.send(make_request(server.base()));
    EXPECT_EQ(r.status, 200);
  });
  EXPECT_EQ(client.idle_connections(), 1u);
  client.close_all();
  EXPECT_EQ(client.idle_connections(), 0u);
  EXPECT_TRUE(server.wait_closed(1));
}

// --- TLS -------------------------------------------------------------------------------

struct Cert {
  std::string cert_pem, key_pem;
};

// A self-signed certificate for "localhost" (DNS name only, no IP address).
Cert make_localhost_cert() {
  EVP_PKEY* key = EVP_EC_gen("P-256");
  X509* x = X509_new();
  X509_set_version(x, 2);
  ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
  X509_gmtime_adj(X509_getm_notBefore(x), -3600);
  X509_gmtime_adj(X509_getm_notAfter(x), 3600);
  X509_set_pubkey(x, key);
  X509_NAME* name = X509_get_subject_name(x);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>("localhost"), -1, -1, 0);
  X509_set_issuer_name(x, name);
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, x, x, nullptr, nullptr, 0);
  for (auto [nid, value] : {std::pair{NID_subject_alt_name, "DNS:localhost"},
                            std::pair{NID_basic_constraints, "critical,CA:TRUE"}}) {
    X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value);
    X509_add_ext(x, ext, -1);
    X509_EXTENSION_free(ext);
  }
  X509_sign(x, key, EVP_sha256());
  auto pem = [](auto write) {
    BIO* bio = BIO_new(BIO_s_mem());
    write(bio);
    char* data = nullptr;
    long n = BIO_get_mem_data(bio, &data);
    std::string out(data, static_cast<std::size_t>(n));
    BIO_free(bio);
    return out;
  };
  Cert c{pem([&](BIO* b) { PEM_write_bio_X509(b, x); }), pem([&](BIO* b) {
           PEM_write_bio_PrivateKey(b, key, nullptr, nullptr, 0, nullptr, nullptr);
         })};
  X509_free(x);
  EVP_PKEY_free(key);
  return c;
}

class HttpClientTls : public ::testing::Test {
 protected:
  HttpClientTls() : server_ctx_(ssl::context::tls_server) {
    cert_ = make_localhost_cert();
    server_ctx_.use_certificate_chain(asio::buffer(cert_.cert_pem));
    server_ctx_.use_private_key(asio::buffer(cert_.key_pem), ssl::context::pem);
    ca_file_ = dir_.path() + "/ca.pem";
    std::ofstream(ca_file_) << cert_.cert_pem;
  }
  Cert cert_;
  ssl::context server_ctx_;
  test::TempDir dir_;
  std::string ca_file_;
};

// https to a server whose certificate matches the name and is trusted: works, keep-alive.
TEST_F(HttpClientTls, VerifiedConnectionWorksAndIsReused) {
  TestServer server([](const Seen&) { return Reply{}; }, &server_ctx_);
  asio::io_context ioc;
  HttpClientConfig cfg;
  cfg.ca_file = ca_file_;
  HttpClient client(ioc.get_executor(), cfg);
  run(ioc, [&]() -> asio::awaitable<void> {
    for (int i = 0; i < 3; ++i) {
      auto r =
          co_await client.send(make_request("https://localhost:" + std::to_string(server.port())));
      EXPECT_EQ(r.error, HttpResponse::Error::none) << r.error_text;
      EXPECT_EQ(r.status, 200);
    }
  });
  EXPECT_EQ(client.connections_opened(), 1u);
}

// The certificate is for "localhost", the URL says 127.0.0.1: host name verification fails.
TEST_F(HttpClientTls, HostNameMismatchIsRefused) {
  TestServer server([](const Seen&) { return Reply{}; }, &server_ctx_);
  asio::io_context ioc;
  HttpClientConfig cfg;
  cfg.ca_file = ca_file_;
  HttpClient client(ioc.get_executor(), cfg);
  run(ioc, [&]() -> asio::awaitable<void> {
    auto r =
        co_await client.send(make_request("https://127.0.0.1:" + std::to_string(server.port())));
    EXPECT_EQ(r.error, HttpResponse::Error::connect);
    EXPECT_NE(r.error_text.find("certificate verify failed"), std::string::npos) << r.error_text;
  });
  EXPECT_EQ(server.requests(), 0);
}

// Without the extra CA, the self-signed certificate is not trusted by the system store.
TEST_F(HttpClientTls, UntrustedCertificateIsRefused) {
  TestServer server([](const Seen&) { return Reply{}; }, &server_ctx_);
  asio::io_context ioc;
  HttpClient client(ioc.get_executor());
  run(ioc, [&]() -> asio::awaitable<void> {
    auto r =
        co_await client.send(make_request("https://localhost:" + std::to_string(server.port())));
    EXPECT_EQ(r.error, HttpResponse::Error::connect);
    EXPECT_NE(r.error_text.find("certificate verify failed"), std::string::npos) << r.error_text;
  });
  EXPECT_EQ(server.requests(), 0);
}

}  // namespace
}  // namespace cascade
