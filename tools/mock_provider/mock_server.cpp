#include "tools/mock_provider/mock_server.hpp"

#include <sys/prctl.h>
#include <sys/resource.h>
#include <unistd.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <exception>
#include <iostream>
#include <optional>
#include <string>
#include <string_view>

#include "tools/mock_provider/mock_core.hpp"

namespace cascade::mock {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;

constexpr auto kTuple = asio::as_tuple(asio::use_awaitable);
// A keep-alive connection may sit idle this long between requests (clients' pools keep
// connections open; a dead client is noticed by the kernel long before).
constexpr auto kIdleTimeout = std::chrono::seconds(120);
constexpr auto kWriteTimeout = std::chrono::seconds(30);
constexpr auto kHandshakeTimeout = std::chrono::seconds(10);
constexpr std::uint64_t kBodyLimit = 16 * 1024 * 1024;

std::int64_t now_us() {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

struct Server {
  explicit Server(const Options& options) : core(options.record_limit), verbose(options.verbose) {}
  asio::io_context ioc{1};
  MockCore core;
  bool verbose;
  std::optional<ssl::context> tls;  // set when the main listener serves HTTPS
};

// Which listener a connection came in on: the main one (provider endpoints and control
// API; HTTPS when TLS is on) or --control-listen (plain HTTP, /__mock/* only).
enum class Listener { main, control };

std::optional<std::string_view> header(const http::request<http::string_body>& request,
                                       std::string_view name) {
  auto it = request.find(name);
  if (it == request.end()) return std::nullopt;
  return std::string_view(it->value());
}

void log_request(Server& server, const Decision& d, int status) {
  if (!server.verbose || !d.provider) return;
  // Never the token: it is a credential (and telegram's lives in the path).
  const Record* record = server.core.recorder().find(d.record);
  std::fprintf(stderr, "%s #%llu %s %s%s\n", std::string(provider_name(*d.provider)).c_str(),
               static_cast<unsigned long long>(d.record),
               d.action == Action::respond ? std::to_string(status).c_str()
                                           : std::string(action_name(d.action)).c_str(),
               record ? "recipient=" : "", record ? record->recipient.c_str() : "");
}

// Closes the TCP connection under `stream` (for TLS without close_notify: the clients
// tolerate a truncated stream once the response is complete).
template <class Stream>
void close(Stream& stream) {
  boost::system::error_code ignored;
  auto& socket = beast::get_lowest_layer(stream).socket();
  socket.shutdown(tcp::socket::shutdown_both, ignored);
  socket.close(ignored);
}

// A request Beast could not parse: answer like any HTTP server would, then close.
template <class Stream>
asio::awaitable<void> reject_malformed(Stream& stream, const boost::system::error_code& ec) {
  bool too_large = ec == http::error::body_limit || ec == http::error::header_limit;
  http::response<http::string_body> res{
      too_large ? http::status::payload_too_large : http::status::bad_request, 11};
  res.set(http::field::content_type, "text/plain");
  res.body() = too_large ? "request too large\n" : "malformed HTTP request\n";
  res.keep_alive(false);
  res.prepare_payload();
  beast::get_lowest_layer(stream).expires_after(kWriteTimeout);
  co_await http::async_write(stream, res, kTuple);
}

bool is_control_target(std::string_view target) {
  return target.substr(0, 8) == "/__mock/";
}

// Serves requests on one connection (plain or TLS, handshake done) until it closes.
template <class Stream>
asio::awaitable<void> serve_requests(Server& server, Stream& stream, Listener listener) {
  beast::flat_buffer buffer;
  for (;;) {
    http::request_parser<http::string_body> parser;
    parser.body_limit(kBodyLimit);
    beast::get_lowest_layer(stream).expires_after(kIdleTimeout);
    auto [read_ec, read_n] = co_await http::async_read(stream, buffer, parser, kTuple);
    if (read_ec) {
      // Beast's own errors are protocol errors: the peer sent something that is not HTTP.
      bool protocol_error =
          read_ec.category() == http::make_error_code(http::error::bad_method).category() &&
          read_ec != http::error::end_of_stream && read_ec != http::error::partial_message;
      if (protocol_error) co_await reject_malformed(stream, read_ec);
      break;
    }
    const auto received_us = now_us();
    auto& req = parser.get();
    if (listener == Listener::control && !is_control_target(std::string_view(req.target()))) {
      // Provider endpoints are not served here: nothing is matched or recorded.
      http::response<http::string_body> res{http::status::not_found, req.version()};
      res.set(http::field::server, "cascade-mock-provider");
      res.set(http::field::content_type, "application/json");
      res.body() = "{\"error\":\"the control listener serves /__mock/* only\"}\n";
      res.keep_alive(req.keep_alive());
      res.prepare_payload();
      beast::get_lowest_layer(stream).expires_after(kWriteTimeout);
      auto [ec, n] = co_await http::async_write(stream, res, kTuple);
      if (ec || !res.keep_alive()) break;
      continue;
    }
    HttpRequest view;
    view.method = req.method_string();
    view.target = req.target();
    view.content_type = std::string_view(req[http::field::content_type]);
    view.body = req.body();
    view.x_api_key = header(req, "X-Api-Key");
    view.authorization = header(req, "Authorization");
    view.postmark_token = header(req, "X-Postmark-Server-Token");
    Decision decision = server.core.handle(view, received_us);

    if (decision.delay.count() > 0) {
      // A timer, not a sleep: every other connection keeps being served meanwhile.
      asio::steady_timer timer(co_await asio::this_coro::executor, decision.delay);
      co_await timer.async_wait(kTuple);
    }
    if (decision.action != Action::respond) {
      server.core.finished(decision.record, 0, 0);
      log_request(server, decision, 0);
      break;
    }

    bool keep_alive = req.keep_alive();
    http::response<http::string_body> res;
    res.version(req.version());
    res.result(static_cast<unsigned>(decision.reply.status));
    res.set(http::field::server, "cascade-mock-provider");
    res.set(http::field::content_type, decision.reply.content_type);
    if (decision.reply.retry_after > 0)
      res.set(http::field::retry_after, std::to_string(decision.reply.retry_after));
    res.keep_alive(keep_alive);
    res.body() = std::move(decision.reply.body);
    res.prepare_payload();
    beast::get_lowest_layer(stream).expires_after(kWriteTimeout);
    auto [write_ec, write_n] = co_await http::async_write(stream, res, kTuple);
    server.core.finished(decision.record, write_ec ? 0 : decision.reply.status, now_us());
    log_request(server, decision, write_ec ? 0 : decision.reply.status);
    if (write_ec || !keep_alive) break;
  }
}

asio::awaitable<void> serve_connection(Server& server, tcp::socket socket, Listener listener) {
  if (server.tls && listener == Listener::main) {
    beast::ssl_stream<beast::tcp_stream> stream(std::move(socket), *server.tls);
    beast::get_lowest_layer(stream).expires_after(kHandshakeTimeout);
    auto [ec] = co_await stream.async_handshake(ssl::stream_base::server, kTuple);
    if (!ec) {
      co_await serve_requests(server, stream, listener);
    } else if (server.verbose) {
      // Typically a client that does not trust the certificate (it sends an alert).
      std::fprintf(stderr, "TLS handshake failed: %s\n", ec.message().c_str());
    }
    close(stream);
    co_return;
  }
  beast::tcp_stream stream(std::move(socket));
  co_await serve_requests(server, stream, listener);
  close(stream);
}

void report_exception(const char* what, std::exception_ptr e) {
  if (!e) return;
  try {
    std::rethrow_exception(e);
  } catch (const std::exception& ex) {
    std::fprintf(stderr, "cascade-mock-provider: %s: %s\n", what, ex.what());
  }
}

asio::awaitable<void> accept_loop(Server& server, tcp::acceptor& acceptor, Listener listener) {
  for (;;) {
    auto [ec, socket] = co_await acceptor.async_accept(kTuple);
    if (ec == asio::error::operation_aborted) co_return;
    if (ec) {
      // Typically EMFILE under a connection storm: back off instead of spinning.
      asio::steady_timer pause(server.ioc, std::chrono::milliseconds(10));
      co_await pause.async_wait(kTuple);
      continue;
    }
    boost::system::error_code ignored;
    socket.set_option(tcp::no_delay(true), ignored);
    asio::co_spawn(server.ioc, serve_connection(server, std::move(socket), listener),
                   [](std::exception_ptr e) { report_exception("connection", e); });
  }
}

// Load benchmarks open many connections: allow as many descriptors as the hard limit.
void raise_fd_limit() {
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur < limit.rlim_max) {
    limit.rlim_cur = limit.rlim_max;
    setrlimit(RLIMIT_NOFILE, &limit);
  }
}

// Binds and listens; prints the reason and returns false when it cannot.
bool open_listener(tcp::acceptor& acceptor, const std::string& host, std::uint16_t port) {
  boost::system::error_code ec;
  tcp::endpoint endpoint(asio::ip::make_address(host, ec), port);
  if (!ec) acceptor.open(endpoint.protocol(), ec);
  if (!ec) acceptor.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) acceptor.bind(endpoint, ec);
  if (!ec) acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec)
    std::fprintf(stderr, "cascade-mock-provider: cannot listen on %s: %s\n",
                 format_address(host, port).c_str(), ec.message().c_str());
  return !ec;
}

// The HTTPS context from --tls-cert/--tls-key; prints the reason and returns false when
// the files cannot be used.
bool load_tls(Server& server, const Options& options) {
  auto& ctx = server.tls.emplace(ssl::context::tls_server);
  ctx.set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 |
                  ssl::context::no_sslv3 | ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1);
  boost::system::error_code ec;
  const char* what = "certificate";
  const std::string* file = &options.tls_cert;
  ctx.use_certificate_chain_file(options.tls_cert, ec);
  if (!ec) {
    what = "private key";
    file = &options.tls_key;
    // Also checks that the key matches the certificate.
    ctx.use_private_key_file(options.tls_key, ssl::context::pem, ec);
  }
  if (ec)
    std::fprintf(stderr, "cascade-mock-provider: cannot use TLS %s %s: %s\n", what, file->c_str(),
                 ec.message().c_str());
  return !ec;
}

}  // namespace

int run_server(const Options& options) {
  raise_fd_limit();
  Server server(options);
  // Handlers first: a test may signal as soon as it has read the "listening on" line.
  asio::signal_set signals(server.ioc, SIGINT, SIGTERM);
  signals.async_wait([&](const boost::system::error_code& error, int) {
    if (!error) server.ioc.stop();
  });
  if (options.exit_with_parent) {
    // The kernel sends SIGTERM when the parent dies; if it died before this call we were
    // already re-parented and nobody is left to stop us.
    ::prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (::getppid() == 1) return 0;
  }
  boost::system::error_code ec;
  asio::ip::make_address(options.host, ec);
  if (ec) {
    std::fprintf(stderr, "cascade-mock-provider: bad address %s: %s\n", options.host.c_str(),
                 ec.message().c_str());
    return 2;
  }
  if (!options.tls_cert.empty() && !load_tls(server, options)) return 2;
  tcp::acceptor acceptor(server.ioc);
  if (!open_listener(acceptor, options.host, options.port)) return 1;
  tcp::acceptor control(server.ioc);
  if (options.control_host && !open_listener(control, *options.control_host, options.control_port))
    return 1;
  // Both listeners are open before either line is printed: a reader of the lines may
  // connect at once.
  std::cout << "listening on " << format_address(options.host, acceptor.local_endpoint().port())
            << (server.tls ? " (https)" : "") << "\n";
  if (options.control_host)
    std::cout << "control on "
              << format_address(*options.control_host, control.local_endpoint().port()) << "\n";
  std::cout << std::flush;

  asio::co_spawn(server.ioc, accept_loop(server, acceptor, Listener::main),
                 [](std::exception_ptr e) { report_exception("accept loop", e); });
  if (options.control_host)
    asio::co_spawn(server.ioc, accept_loop(server, control, Listener::control),
                   [](std::exception_ptr e) { report_exception("control accept loop", e); });
  server.ioc.run();
  return 0;
}

}  // namespace cascade::mock
