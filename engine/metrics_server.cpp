#include "engine/metrics_server.hpp"

#include <spdlog/spdlog.h>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http.hpp>

#include <charconv>
#include <chrono>
#include <stdexcept>
#include <unordered_set>

namespace cascade {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

constexpr auto kTuple = asio::as_tuple(asio::use_awaitable);
// A request (headers included) must arrive within this, also between keep-alive requests:
// a slow or idle client holds only its own connection, and not for long.
constexpr auto kReadTimeout = std::chrono::seconds(10);
constexpr auto kWriteTimeout = std::chrono::seconds(10);
// Scrapers and probes need a handful; more are closed at once (descriptor floods).
constexpr std::size_t kMaxConnections = 64;

void family(std::string& out, std::string_view name, std::string_view type, std::string_view help) {
  out.append("# HELP ").append(name).append(" ").append(help).append("\n");
  out.append("# TYPE ").append(name).append(" ").append(type).append("\n");
}

void sample(std::string& out, std::string_view name, std::string_view labels, std::uint64_t value) {
  out.append(name).append(labels).append(" ").append(std::to_string(value)).append("\n");
}

}  // namespace

std::string render_metrics(const MetricsSnapshot& s) {
  std::string out;
  family(out, "cascade_jobs_total", "counter", "Jobs finished (a result written), by outcome.");
  sample(out, "cascade_jobs_total", "{state=\"delivered\"}", s.delivered);
  sample(out, "cascade_jobs_total", "{state=\"failed\"}", s.failed);
  sample(out, "cascade_jobs_total", "{state=\"rejected\"}", s.rejected);
  sample(out, "cascade_jobs_total", "{state=\"duplicate\"}", s.duplicates);
  family(out, "cascade_jobs_reclaimed_total", "counter",
         "Jobs claimed from dead workers (XAUTOCLAIM) and run again.");
  sample(out, "cascade_jobs_reclaimed_total", "", s.reclaimed);
  family(out, "cascade_job_retries_total", "counter",
         "Job attempts that ended in a scheduled job-level retry.");
  sample(out, "cascade_job_retries_total", "", s.retried);
  family(out, "cascade_auth_cache_hits_total", "counter",
         "Authentications answered from the in-process key cache.");
  sample(out, "cascade_auth_cache_hits_total", "", s.auth_cache_hits);
  family(out, "cascade_auth_cache_misses_total", "counter",
         "Authentications that read key records from Redis.");
  sample(out, "cascade_auth_cache_misses_total", "", s.auth_cache_misses);
  family(out, "cascade_auth_invalidations_total", "counter",
         "Invalidation messages received on <prefix>:auth-events.");
  sample(out, "cascade_auth_invalidations_total", "", s.auth_invalidations);
  family(out, "cascade_jobs_in_flight", "gauge", "Jobs running in this process.");
  sample(out, "cascade_jobs_in_flight", "", s.in_flight);
  family(out, "cascade_concurrency_limit", "gauge", "Jobs in flight at most (--concurrency).");
  sample(out, "cascade_concurrency_limit", "", s.concurrency);
  family(out, "cascade_redis_ready", "gauge",
         "1 while Redis is reachable and the consumer is reading jobs.");
  sample(out, "cascade_redis_ready", "", s.redis_ready ? 1 : 0);
  family(out, "cascade_auth_cache_live", "gauge",
         "1 while the auth invalidation subscription is live (the key cache is in use).");
  sample(out, "cascade_auth_cache_live", "", s.auth_cache_live ? 1 : 0);
  return out;
}

ListenAddress parse_listen_address(std::string_view text) {
  auto colon = text.rfind(':');
  if (colon == std::string_view::npos)
    throw std::invalid_argument("'" + std::string(text) + "' is not HOST:PORT");
  std::string_view host = text.substr(0, colon);
  std::string_view port = text.substr(colon + 1);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']')
    host = host.substr(1, host.size() - 2);
  unsigned value = 0;
  auto [p, ec] = std::from_chars(port.data(), port.data() + port.size(), value);
  if (port.empty() || ec != std::errc() || p != port.data() + port.size() || value > 65535)
    throw std::invalid_argument("'" + std::string(text) + "': bad port '" + std::string(port) +
                                "'");
  if (host.empty()) throw std::invalid_argument("'" + std::string(text) + "': missing host");
  boost::system::error_code bad;
  asio::ip::make_address(std::string(host), bad);
  if (bad)
    throw std::invalid_argument("'" + std::string(text) + "': '" + std::string(host) +
                                "' is not an IP address");
  return ListenAddress{std::string(host), static_cast<std::uint16_t>(value)};
}

struct MetricsServer::State : std::enable_shared_from_this<State> {
  State(asio::io_context& io, Source source) : io(io), source(std::move(source)), acceptor(io) {}
  asio::io_context& io;
  Source source;
  tcp::acceptor acceptor;
  std::uint16_t port = 0;
  bool closed = false;
  std::unordered_set<beast::tcp_stream*> open;  // connections being served

  http::response<http::string_body> answer(const http::request<http::string_body>& req) {
    http::response<http::string_body> res{http::status::ok, req.version()};
    res.set(http::field::server, "cascaded");
    res.set(http::field::content_type, "text/plain; charset=utf-8");
    std::string_view target = req.target();
    target = target.substr(0, target.find('?'));
    bool known = target == "/metrics" || target == "/healthz" || target == "/readyz";
    if (!known) {
      res.result(http::status::not_found);
      res.body() = "not found\n";
    } else if (req.method() != http::verb::get) {
      res.result(http::status::method_not_allowed);
      res.set(http::field::allow, "GET");
      res.body() = "method not allowed\n";
    } else if (target == "/healthz") {
      res.body() = "ok\n";
    } else if (target == "/readyz") {
      auto s = source();
      if (s.stopping) {
        res.result(http::status::service_unavailable);
        res.body() = "not ready: draining\n";
      } else if (!s.redis_ready) {
        res.result(http::status::service_unavailable);
        res.body() = "not ready: redis unreachable or the consumer is not reading\n";
      } else {
        res.body() = "ready\n";
      }
    } else {
      res.set(http::field::content_type, "text/plain; version=0.0.4; charset=utf-8");
      res.body() = render_metrics(source());
    }
    res.keep_alive(req.keep_alive());
    res.prepare_payload();
    return res;
  }

  static asio::awaitable<void> serve(std::shared_ptr<State> self, tcp::socket socket) {
    beast::tcp_stream stream(std::move(socket));
    self->open.insert(&stream);
    beast::flat_buffer buffer;
    while (!self->closed) {
      http::request_parser<http::string_body> parser;
      parser.header_limit(8 * 1024);
      parser.body_limit(4 * 1024);
      stream.expires_after(kReadTimeout);
      auto [read_ec, read_n] = co_await http::async_read(stream, buffer, parser, kTuple);
      // Timeout, close, garbage or close(): just drop the connection.
      if (read_ec || self->closed) break;
      auto res = self->answer(parser.get());
      stream.expires_after(kWriteTimeout);
      auto [write_ec, write_n] = co_await http::async_write(stream, res, kTuple);
      if (write_ec || !res.keep_alive()) break;
    }
    self->open.erase(&stream);
    boost::system::error_code ignored;
    stream.socket().shutdown(tcp::socket::shutdown_both, ignored);
    stream.socket().close(ignored);
  }

  static asio::awaitable<void> accept_loop(std::shared_ptr<State> self) {
    while (!self->closed) {
      auto [ec, socket] = co_await self->acceptor.async_accept(kTuple);
      if (self->closed || ec == asio::error::operation_aborted) break;
      if (ec) {
        // Typically EMFILE: back off instead of spinning.
        asio::steady_timer pause(self->io, std::chrono::milliseconds(50));
        co_await pause.async_wait(kTuple);
        continue;
      }
      if (self->open.size() >= kMaxConnections) {
        boost::system::error_code ignored;
        socket.close(ignored);
        continue;
      }
      asio::co_spawn(self->io, serve(self, std::move(socket)), [](std::exception_ptr e) {
        if (!e) return;
        try {
          std::rethrow_exception(e);
        } catch (const std::exception& ex) {
          spdlog::warn("metrics connection: {}", ex.what());
        }
      });
    }
  }
};

MetricsServer::MetricsServer(asio::io_context& io, Source source)
    : state_(std::make_shared<State>(io, std::move(source))) {}

MetricsServer::~MetricsServer() {
  close();
}

void MetricsServer::listen(std::string_view address) {
  ListenAddress where;
  try {
    where = parse_listen_address(address);
  } catch (const std::invalid_argument& e) {
    throw std::runtime_error(std::string("metrics listener: ") + e.what());
  }
  boost::system::error_code ec;
  tcp::endpoint endpoint(asio::ip::make_address(where.host), where.port);
  auto& acceptor = state_->acceptor;
  acceptor.open(endpoint.protocol(), ec);
  if (!ec) acceptor.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) acceptor.bind(endpoint, ec);
  if (!ec) acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    boost::system::error_code ignored;
    acceptor.close(ignored);
    throw std::runtime_error("metrics listener: cannot listen on " + std::string(address) + ": " +
                             ec.message());
  }
  state_->port = acceptor.local_endpoint().port();
  std::string shown = endpoint.address().is_v6() ? "[" + where.host + "]" : where.host;
  spdlog::info("metrics on {}:{}", shown, state_->port);
  asio::co_spawn(state_->io, State::accept_loop(state_), [](std::exception_ptr e) {
    if (!e) return;
    try {
      std::rethrow_exception(e);
    } catch (const std::exception& ex) {
      spdlog::error("metrics listener stopped: {}", ex.what());
    }
  });
}

std::uint16_t MetricsServer::port() const {
  return state_->port;
}

void MetricsServer::close() {
  if (state_->closed) return;
  state_->closed = true;
  boost::system::error_code ignored;
  state_->acceptor.close(ignored);
  for (auto* stream : state_->open)
    stream->socket().cancel(ignored);
}

}  // namespace cascade
