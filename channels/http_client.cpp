// HTTP/1.1 client over Beast: keep-alive pools per origin, deadlines, TLS, cancellation.
//
// Every connection is owned by exactly one of: a pool's idle list, a Lease (the request
// using it), or a Waiter it was handed to. Leases and Waiters are RAII objects in the
// request coroutine's frame, so an exception, a cancellation or the frame's destruction
// closes the connection and passes its slot on: nothing leaks, nothing broken is pooled.
#include "channels/http_client.hpp"

#include <sys/socket.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <boost/intrusive/list.hpp>

#include <cerrno>
#include <deque>
#include <map>
#include <optional>
#include <stdexcept>

namespace cascade {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;
using Clock = std::chrono::steady_clock;
using boost::system::error_code;
using Error = HttpResponse::Error;

constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);
constexpr std::uint32_t header_limit = 64 * 1024;

char lower(char c) {
  return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c;
}

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i)
    if (lower(a[i]) != lower(b[i])) return false;
  return true;
}

// "Connection refused" -> "connection refused": error texts read as one sentence.
std::string describe(const error_code& ec) {
  std::string s = ec.message();
  if (!s.empty()) s[0] = lower(s[0]);
  return s;
}

bool is_ip_literal(const std::string& host) {
  error_code ec;
  asio::ip::make_address(host, ec);
  return !ec;
}

// Errors that mean "the server had already closed this connection" when they happen on a
// reused connection before any response byte arrived.
bool closed_by_peer(const error_code& ec) {
  return ec == http::error::end_of_stream || ec == asio::error::eof ||
         ec == asio::error::connection_reset || ec == asio::error::broken_pipe ||
         ec == asio::error::connection_aborted || ec == asio::error::not_connected ||
         ec == ssl::error::stream_truncated;
}

struct Conn {
  std::optional<beast::tcp_stream> plain;
  std::optional<beast::ssl_stream<beast::tcp_stream>> tls;
  beast::flat_buffer buffer;
  Clock::time_point idle_since{};
  std::uint64_t generation = 0;

  beast::tcp_stream& tcp() { return tls ? tls->next_layer() : *plain; }

  // No TLS close_notify: the peer learns from the FIN, and waiting for a polite goodbye
  // from a server that may be gone would only add a timeout path.
  void close() {
    error_code ec;
    tcp().socket().shutdown(tcp::socket::shutdown_both, ec);
    tcp().socket().close(ec);
  }

  // Cheap check before reuse: a server that closed an idle connection has sent a FIN,
  // which a non-blocking peek sees as EOF. Saves the write-then-retry round trip.
  bool looks_alive() {
    auto& sock = tcp().socket();
    if (!sock.is_open() || buffer.size() != 0) return false;
    char c;
    auto n = ::recv(sock.native_handle(), &c, 1, MSG_PEEK | MSG_DONTWAIT);
    if (n == 0) return false;
    if (n < 0) return errno == EAGAIN || errno == EWOULDBLOCK;
    // Unsolicited bytes: garbage for plain HTTP; for TLS maybe a late session ticket.
    return tls.has_value();
  }
};

// A request waiting for a slot (of a pool, or of a cap key), linked into that FIFO. A
// grant unlinks the first one, hands it the slot (for a pool, conn == nullptr: open a new
// connection; else an idle connection) and wakes it by cancelling its timer. A waiter that
// goes away ungranted (timeout, cancellation) unlinks itself: both are O(1) whatever the
// queue's length (thousands of requests may wait on one origin, and a linear removal per
// request made the queue quadratic).
struct Waiter
    : boost::intrusive::list_base_hook<boost::intrusive::link_mode<boost::intrusive::auto_unlink>> {
  explicit Waiter(const asio::any_io_executor& ex) : timer(ex) {}
  asio::steady_timer timer;
  std::unique_ptr<Conn> conn;
  bool granted = false;  // stays set once granted
  bool taken = false;    // the grant went to the request's Lease
};
// auto_unlink needs a list without a size counter: size() would be O(n), never call it.
using WaiterQueue = boost::intrusive::list<Waiter, boost::intrusive::constant_time_size<false>>;

void grant(WaiterQueue& queue, std::unique_ptr<Conn> conn) {
  Waiter& w = queue.front();
  queue.pop_front();
  w.granted = true;
  w.conn = std::move(conn);
  w.timer.cancel();
}

// Invariants: leased + idle.size() <= max_connections_per_host (a connection is opened
// only when idle is empty); idle is empty while requests wait (a returned connection goes
// to the first waiter).
struct Pool {
  explicit Pool(const asio::any_io_executor& ex) : opener(ex) {}
  std::deque<std::unique_ptr<Conn>> idle;  // back = most recently used (reused first)
  std::size_t leased = 0;                  // slots in use: connection in use, being opened
  WaiterQueue waiters;                     // FIFO of requests waiting for a slot
  // New-connection budget (HttpClientConfig::connect_rate): tokens as of `refilled`;
  // `opener` wakes the queue when the next token is due.
  double tokens = 0;
  Clock::time_point refilled{};
  asio::steady_timer opener;
  bool opener_armed = false;
};

// The requests in flight under one cap key (HttpRequest::cap_key).
struct KeyGate {
  std::size_t in_flight = 0;
  std::size_t cap = 0;  // the latest request's max_in_flight
  WaiterQueue waiters;
};
using KeyGates = std::map<std::string, KeyGate, std::less<>>;

// Keeps a Waiter in its queue for exactly as long as the waiting frame exists. A grant the
// request never took (its frame went away between the grant and its wake-up) is passed on
// by `abandon`.
template <class Abandon>
class Queued {
 public:
  Queued(WaiterQueue& queue, const asio::any_io_executor& ex, Abandon abandon)
      : waiter_(ex), abandon_(std::move(abandon)) {
    queue.push_back(waiter_);
  }
  Queued(const Queued&) = delete;
  Queued& operator=(const Queued&) = delete;
  ~Queued() {
    if (waiter_.granted && !waiter_.taken) abandon_(waiter_);
    // Never granted: still linked, and leaves the queue in O(1).
    if (waiter_.is_linked()) waiter_.unlink();
  }
  Waiter& waiter() { return waiter_; }

 private:
  Waiter waiter_;
  Abandon abandon_;
};

// How one request/response exchange ended; the response itself goes straight into the
// HttpResponse (no message object outlives the parser: frames of requests in flight stay
// small when thousands wait on a slow provider).
struct Exchange {
  error_code ec;
  bool got_bytes = false;  // some response bytes arrived
  bool keep_alive = false;
};

// Its own coroutine so that the serializer (~400 bytes) is gone while the response is
// awaited: thousands of requests may wait on a slow provider at once.
template <class Stream>
asio::awaitable<error_code> write_request(Stream& stream,
                                          const http::request<http::string_body>& msg,
                                          HttpResponse& resp) {
  // Beast reports operation_aborted when a cancellation raced with the last write even
  // though every byte went out; the serializer knows the truth, and "written" must be
  // exact (it decides whether an outcome is unknown).
  http::request_serializer<http::string_body> serializer(msg);
  auto [wec, wn] = co_await http::async_write(stream, serializer, use_tuple);
  if (serializer.is_done()) resp.request_written = true;
  co_return wec;
}

template <class Stream>
asio::awaitable<Exchange> exchange(Stream& stream, Conn& conn,
                                   const http::request<http::string_body>& msg,
                                   Clock::time_point deadline, std::size_t body_limit,
                                   HttpResponse& resp) {
  Exchange x;
  conn.tcp().expires_at(deadline);
  if (auto wec = co_await write_request(stream, msg, resp)) {
    x.ec = wec;
    co_return x;
  }
  http::response_parser<http::string_body> parser;
  parser.header_limit(header_limit);
  parser.body_limit(body_limit);
  auto [rec, rn] = co_await http::async_read(stream, conn.buffer, parser, use_tuple);
  x.got_bytes = parser.got_some() || conn.buffer.size() != 0;
  if (rec && !(rec == asio::error::operation_aborted && parser.is_done())) {
    x.ec = rec;
    co_return x;
  }
  // A complete response is the provider's answer even if a cancellation raced with it;
  // but then the connection is not trusted for reuse.
  x.keep_alive = !rec && parser.keep_alive();
  auto& res = parser.get();
  resp.status = static_cast<int>(res.result_int());
  resp.body = std::move(res.body());
  resp.headers.reserve(static_cast<std::size_t>(std::distance(res.begin(), res.end())));
  for (const auto& field : res) {
    std::string name(field.name_string());
    for (auto& ch : name)
      ch = lower(ch);
    resp.headers.emplace_back(std::move(name), std::string(field.value()));
  }
  co_return x;
}

}  // namespace

struct HttpClient::Impl : std::enable_shared_from_this<Impl> {
  Impl(asio::any_io_executor e, HttpClientConfig c)
      : ex(std::move(e)), config(std::move(c)), sweeper(ex) {
    if (config.max_connections_per_host == 0) config.max_connections_per_host = 1;
    if (config.connect_burst == 0) config.connect_burst = 1;
    tls_ctx.set_default_verify_paths();
    if (!config.ca_file.empty()) {
      boost::system::error_code ec;
      tls_ctx.load_verify_file(config.ca_file, ec);
      if (ec)
        throw std::invalid_argument("cannot load CA file " + config.ca_file + ": " + ec.message());
    }
    tls_ctx.set_verify_mode(ssl::verify_peer);
    SSL_CTX_set_min_proto_version(tls_ctx.native_handle(), TLS1_2_VERSION);
    // OpenSSL keeps its read and write record buffers for a connection's whole life;
    // released, they exist only while a record is in transit, and a connection waiting for
    // a slow provider's answer has none. Measured: ~2.6 KB less per TLS connection (of
    // ~67 KB: Asio's ssl stream keeps two 17 KB buffers of its own whatever we do).
    SSL_CTX_set_mode(tls_ctx.native_handle(), SSL_MODE_RELEASE_BUFFERS);
  }

  // Holds a slot of a pool (and, once open, the connection) for one request.
  class Lease {
   public:
    Lease(Impl& impl, Pool& pool) : impl_(impl), pool_(pool) {}
    Lease(const Lease&) = delete;
    Lease& operator=(const Lease&) = delete;
    ~Lease() {
      if (held_) impl_.release(pool_, std::move(conn), false);
    }
    void hold(std::unique_ptr<Conn> c) {
      held_ = true;
      conn = std::move(c);
    }
    // After a complete response: back to the pool when the server allows keep-alive.
    void give_back(bool reusable) {
      held_ = false;
      impl_.release(pool_, std::move(conn), reusable);
    }
    std::unique_ptr<Conn> conn;  // nullptr while holding only a slot

   private:
    Impl& impl_;
    Pool& pool_;
    bool held_ = false;
  };

  // Holds one of a cap key's in-flight places for one request.
  class KeyHold {
   public:
    explicit KeyHold(Impl& impl) : impl_(impl) {}
    KeyHold(const KeyHold&) = delete;
    KeyHold& operator=(const KeyHold&) = delete;
    ~KeyHold() {
      if (gate_) impl_.leave_gate(*gate_);
    }
    void hold(KeyGates::iterator gate) { gate_ = gate; }

   private:
    Impl& impl_;
    std::optional<KeyGates::iterator> gate_;
  };

  static asio::awaitable<HttpResponse> send(std::shared_ptr<Impl> self, HttpRequest request) {
    HttpResponse resp;
    try {
      co_await self->run(request, resp);
    } catch (const boost::system::system_error& e) {
      // Reached when a cancellation arrives between two operations (the next co_await
      // throws). The RAII holders have closed and released the connection; resp still
      // knows whether the request went out.
      resp.error = e.code() == asio::error::operation_aborted ? Error::cancelled : Error::io;
      resp.error_text = resp.error == Error::cancelled ? "cancelled" : describe(e.code());
      resp.status = 0;
      resp.body.clear();
      resp.headers.clear();
    }
    co_return resp;
  }

  // Fills resp as it goes (request_written included), so that an exception still leaves
  // an accurate record. `req` lives in send()'s frame (a by-value copy here would be one
  // more HttpRequest per request in flight); its body and headers move into the message.
  asio::awaitable<void> run(HttpRequest& req, HttpResponse& resp) {
    auto deadline =
        req.deadline == Clock::time_point{} ? Clock::now() + config.default_timeout : req.deadline;
    const std::string origin = req.url.origin();
    auto msg = build_message(req, resp);
    if (resp.error != Error::none) co_return;

    // Declared before the lease: the connection goes back before the key's place does.
    KeyHold key_hold(*this);
    if (!req.cap_key.empty() && req.max_in_flight > 0) {
      auto err = co_await enter_gate(key_hold, req.cap_key, req.max_in_flight, deadline);
      if (err != Error::none) {
        resp.error = err;
        resp.error_text = err == Error::timeout ? "timed out waiting for a free connection to " +
                                                      origin + " (key's max_connections)"
                                                : "cancelled";
        co_return;
      }
    }
    Pool& pool = pool_for(origin);
    Lease lease(*this, pool);
    if (auto err = co_await acquire(pool, lease, deadline); err != Error::none) {
      resp.error = err;
      resp.error_text = err == Error::timeout
                            ? "timed out waiting for a free connection to " + origin
                            : "cancelled";
      co_return;
    }

    for (bool first = true;; first = false) {
      const bool reused = lease.conn != nullptr;
      if (!reused) {
        auto conn = std::make_unique<Conn>();
        if (!co_await open(*conn, req.url, deadline, resp)) co_return;
        lease.conn = std::move(conn);
      }
      Conn& c = *lease.conn;
      // (Not a conditional expression: g++ 12 miscompiles co_await inside ?:.)
      Exchange x;
      if (c.tls)
        x = co_await exchange(*c.tls, c, msg, deadline, config.max_response_bytes, resp);
      else
        x = co_await exchange(*c.plain, c, msg, deadline, config.max_response_bytes, resp);
      if (!x.ec) {
        lease.give_back(x.keep_alive);
        co_return;
      }
      // The server closed a pooled connection before (or while) we used it. Nothing of a
      // response arrived, so the server did not answer this request: send it once more on
      // a fresh connection (same slot; no connect token: it replaces one, it adds none).
      if (reused && first && !x.got_bytes && closed_by_peer(x.ec)) {
        c.close();
        lease.conn.reset();
        resp.request_written = false;
        continue;
      }
      if (x.ec == beast::error::timeout) {
        resp.error = Error::timeout;
        resp.error_text = resp.request_written ? "timed out waiting for the response from " + origin
                                               : "timed out sending the request to " + origin;
      } else if (x.ec == asio::error::operation_aborted) {
        resp.error = Error::cancelled;
        resp.error_text = "cancelled";
      } else if (x.ec == http::error::body_limit || x.ec == http::error::header_limit ||
                 x.ec == http::error::buffer_overflow) {
        resp.error = Error::too_large;
        resp.error_text = "response from " + origin + " over " +
                          std::to_string(config.max_response_bytes) + " bytes";
      } else {
        resp.error = Error::io;
        resp.error_text =
            (resp.request_written ? "connection to " + origin + " lost: "
                                  : "sending the request to " + origin + " failed: ") +
            describe(x.ec);
      }
      co_return;  // the lease closes the connection
    }
  }

  // Moves the body out of `req` (it is sent once; a copy would double what each request
  // in flight holds) and drops its headers once copied into the message.
  http::request<http::string_body> build_message(HttpRequest& req, HttpResponse& resp) {
    http::request<http::string_body> m;
    auto verb = http::string_to_verb(req.method);
    if (verb == http::verb::unknown)
      m.method_string(req.method);
    else
      m.method(verb);
    m.target(req.target.empty() ? "/" : req.target);
    m.version(11);
    const bool default_port = req.url.port == (req.url.tls() ? 443 : 80);
    std::string host =
        req.url.host.find(':') != std::string::npos ? "[" + req.url.host + "]" : req.url.host;
    if (!default_port) host += ":" + std::to_string(req.url.port);
    m.set(http::field::host, host);
    m.set(http::field::user_agent, "cascade/0.1");
    for (const auto& [name, value] : req.headers) {
      // A CR/LF in a header would let a setting inject headers: refuse the request.
      if (name.find_first_of("\r\n:") != std::string::npos ||
          value.find_first_of("\r\n") != std::string::npos) {
        resp.error = Error::io;
        resp.error_text = "invalid header " + name.substr(0, name.find_first_of("\r\n"));
        return m;
      }
      m.set(name, value);
    }
    if (!req.body.empty() || verb == http::verb::post || verb == http::verb::put ||
        verb == http::verb::patch) {
      m.set(http::field::content_type, req.content_type);
      m.body() = std::move(req.body);
    }
    m.prepare_payload();
    std::vector<std::pair<std::string, std::string>>().swap(req.headers);
    return m;
  }

  Pool& pool_for(const std::string& origin) {
    auto [it, fresh] = pools.try_emplace(origin, ex);
    if (fresh) {
      it->second.tokens = static_cast<double>(config.connect_burst);
      it->second.refilled = Clock::now();
    }
    return it->second;
  }

  // A place under `key`, waiting FIFO while max_in_flight requests of that key are in
  // flight.
  asio::awaitable<Error> enter_gate(KeyHold& hold, const std::string& key,
                                    std::size_t max_in_flight, Clock::time_point deadline) {
    auto it = gates.try_emplace(key).first;
    KeyGate& gate = it->second;
    gate.cap = max_in_flight;
    if (gate.in_flight < gate.cap && gate.waiters.empty()) {
      ++gate.in_flight;
      hold.hold(it);
      co_return Error::none;
    }
    // Waiting implies in_flight >= 1, so the gate outlives this waiter.
    Queued queued(gate.waiters, ex, [this, it](Waiter&) { leave_gate(it); });
    Waiter& w = queued.waiter();
    w.timer.expires_at(deadline);
    auto [ec] = co_await w.timer.async_wait(use_tuple);
    if (w.granted) {  // the grant wins over a timeout or cancellation that raced with it
      w.taken = true;
      hold.hold(it);  // the place was transferred: in_flight is unchanged
      co_return Error::none;
    }
    co_return ec == asio::error::operation_aborted ? Error::cancelled : Error::timeout;
  }

  // A request of the key is done: its place goes to the first waiter (unless the cap was
  // lowered meanwhile), else the count drops and an unused gate is forgotten.
  void leave_gate(KeyGates::iterator it) {
    KeyGate& gate = it->second;
    if (!gate.waiters.empty() && gate.in_flight <= gate.cap) {
      grant(gate.waiters, nullptr);
      return;
    }
    if (--gate.in_flight == 0 && gate.waiters.empty()) gates.erase(it);
  }

  // One new-connection token of `pool`, if its bucket has one.
  bool take_token(Pool& pool, Clock::time_point now) {
    if (config.connect_rate <= 0) return true;
    const double refill =
        std::chrono::duration<double>(now - pool.refilled).count() * config.connect_rate;
    pool.tokens = std::min(static_cast<double>(config.connect_burst), pool.tokens + refill);
    pool.refilled = now;
    if (pool.tokens < 1) return false;
    pool.tokens -= 1;
    return true;
  }

  // Wakes the pool's queue when its next token is due.
  void arm_opener(Pool& pool) {
    if (pool.opener_armed || config.connect_rate <= 0) return;
    pool.opener_armed = true;
    const std::chrono::duration<double> due((1.0 - pool.tokens) / config.connect_rate);
    pool.opener.expires_after(std::chrono::ceil<Clock::duration>(due));
    pool.opener.async_wait([weak = weak_from_this(), &pool](error_code) {
      auto self = weak.lock();
      if (!self) return;
      pool.opener_armed = false;
      self->pump(pool);
    });
  }

  // Grants free slots (new connections) to waiters while the bucket has tokens.
  void pump(Pool& pool) {
    const auto now = Clock::now();
    while (!pool.waiters.empty() && pool.leased < config.max_connections_per_host) {
      if (!take_token(pool, now)) {
        arm_opener(pool);
        return;
      }
      ++pool.leased;
      grant(pool.waiters, nullptr);
    }
  }

  // A slot (and maybe an idle connection) of `pool`, waiting FIFO when the pool is full or
  // out of connect tokens.
  asio::awaitable<Error> acquire(Pool& pool, Lease& lease, Clock::time_point deadline) {
    const auto now = Clock::now();
    prune(pool, now);
    while (!pool.idle.empty()) {
      auto conn = std::move(pool.idle.back());
      pool.idle.pop_back();
      if (conn->looks_alive()) {
        ++pool.leased;
        lease.hold(std::move(conn));
        co_return Error::none;
      }
      conn->close();
    }
    if (pool.waiters.empty() && pool.leased < config.max_connections_per_host &&
        take_token(pool, now)) {
      ++pool.leased;
      lease.hold(nullptr);
      co_return Error::none;
    }
    Queued queued(pool.waiters, ex, [this, &pool](Waiter& w) {
      // Granted, but the request gave up (cancelled) before using it: pass it on.
      const bool reusable = w.conn != nullptr;
      release(pool, std::move(w.conn), reusable);
    });
    // Short of tokens rather than of slots: the bucket's timer wakes the queue.
    if (pool.leased < config.max_connections_per_host) arm_opener(pool);
    Waiter& w = queued.waiter();
    w.timer.expires_at(deadline);
    auto [ec] = co_await w.timer.async_wait(use_tuple);
    if (w.granted) {  // the grant wins over a timeout or cancellation that raced with it
      w.taken = true;
      lease.hold(std::move(w.conn));  // the slot was transferred: leased is unchanged
      co_return Error::none;
    }
    co_return ec == asio::error::operation_aborted ? Error::cancelled : Error::timeout;
  }

  // Returns a slot (and the connection, if reusable) to the pool: a connection to the
  // first waiter if any, else to the idle list; a slot without a connection to the
  // waiters as tokens allow.
  void release(Pool& pool, std::unique_ptr<Conn> conn, bool reusable) {
    if (conn && (!reusable || conn->generation != generation || config.max_idle_per_host == 0)) {
      conn->close();
      conn.reset();
    }
    if (!conn) {
      --pool.leased;
      pump(pool);
      return;
    }
    if (!pool.waiters.empty()) {
      grant(pool.waiters, std::move(conn));
      return;
    }
    --pool.leased;
    conn->idle_since = Clock::now();
    pool.idle.push_back(std::move(conn));
    if (pool.idle.size() > config.max_idle_per_host) {
      pool.idle.front()->close();
      pool.idle.pop_front();
    }
    arm_sweeper();
  }

  // Resolve, connect and (for https) handshake, all bounded by the deadline. On failure
  // fills resp and returns false.
  asio::awaitable<bool> open(Conn& c, const Url& url, Clock::time_point deadline,
                             HttpResponse& resp) {
    const std::string origin = url.origin();
    auto fail = [&](Error e, std::string text) {
      resp.error = e;
      resp.error_text = std::move(text);
      return false;
    };
    std::vector<tcp::endpoint> endpoints;
    error_code ec;
    auto addr = asio::ip::make_address(url.host, ec);
    if (!ec) {
      endpoints.emplace_back(addr, url.port);
    } else {
      auto r = co_await resolve(url, deadline);
      if (r.error == Error::timeout)
        co_return fail(Error::timeout, "timed out resolving " + url.host);
      if (r.error == Error::cancelled) co_return fail(Error::cancelled, "cancelled");
      if (r.ec || r.endpoints.empty())
        co_return fail(Error::connect, "cannot resolve " + url.host + ": " + describe(r.ec));
      endpoints = std::move(r.endpoints);
    }

    c.generation = generation;
    if (url.tls())
      c.tls.emplace(ex, tls_ctx);
    else
      c.plain.emplace(ex);
    auto& stream = c.tcp();
    stream.expires_at(deadline);
    auto [cec, ep] = co_await stream.async_connect(endpoints, use_tuple);
    if (cec == beast::error::timeout)
      co_return fail(Error::timeout, "timed out connecting to " + origin);
    if (cec == asio::error::operation_aborted) co_return fail(Error::cancelled, "cancelled");
    if (cec) co_return fail(Error::connect, "connect to " + origin + ": " + describe(cec));
    ++opened;
    stream.socket().set_option(tcp::no_delay(true), ec);

    if (c.tls) {
      // SNI (not for IP literals, RFC 6066) and RFC 6125 name check on top of chain checks.
      if (!is_ip_literal(url.host) &&
          !SSL_set_tlsext_host_name(c.tls->native_handle(), url.host.c_str()))
        co_return fail(Error::connect, "TLS setup for " + origin + " failed");
      c.tls->set_verify_mode(ssl::verify_peer);
      c.tls->set_verify_callback(ssl::host_name_verification(url.host));
      stream.expires_at(deadline);
      auto [hec] = co_await c.tls->async_handshake(ssl::stream_base::client, use_tuple);
      if (hec == beast::error::timeout)
        co_return fail(Error::timeout, "timed out in TLS handshake with " + origin);
      if (hec == asio::error::operation_aborted) co_return fail(Error::cancelled, "cancelled");
      if (hec)
        co_return fail(Error::connect, "TLS handshake with " + origin + ": " + describe(hec));
    }
    co_return true;
  }

  // The system resolver cannot be cancelled mid-lookup, so the lookup runs on its own
  // and the request waits on a timer: at the deadline (or on cancellation) it gives up and
  // the late answer is dropped.
  struct Resolving {
    explicit Resolving(const asio::any_io_executor& e) : resolver(e), timer(e) {}
    tcp::resolver resolver;
    asio::steady_timer timer;
    bool done = false;
    bool abandoned = false;
    error_code ec;
    std::vector<tcp::endpoint> endpoints;
  };
  struct Resolved {
    Error error = Error::none;  // none, timeout or cancelled
    error_code ec;              // the resolver's own error
    std::vector<tcp::endpoint> endpoints;
  };

  asio::awaitable<Resolved> resolve(const Url& url, Clock::time_point deadline) {
    auto r = std::make_shared<Resolving>(ex);
    r->timer.expires_at(deadline);
    r->resolver.async_resolve(url.host, std::to_string(url.port),
                              [r](error_code ec, const tcp::resolver::results_type& results) {
                                if (r->abandoned) return;
                                r->done = true;
                                r->ec = ec;
                                for (const auto& e : results)
                                  r->endpoints.push_back(e.endpoint());
                                r->timer.cancel();
                              });
    auto [ec] = co_await r->timer.async_wait(use_tuple);
    if (r->done) co_return Resolved{Error::none, r->ec, std::move(r->endpoints)};
    r->abandoned = true;
    r->resolver.cancel();
    co_return Resolved{
        ec == asio::error::operation_aborted ? Error::cancelled : Error::timeout, {}, {}};
  }

  void prune(Pool& pool, Clock::time_point now) {
    while (!pool.idle.empty() && pool.idle.front()->idle_since + config.idle_timeout <= now) {
      pool.idle.front()->close();
      pool.idle.pop_front();
    }
  }

  // One timer for all pools, due when the oldest idle connection expires.
  void arm_sweeper() {
    if (sweep_armed) return;
    std::optional<Clock::time_point> oldest;
    for (auto& [origin, pool] : pools)
      if (!pool.idle.empty() && (!oldest || pool.idle.front()->idle_since < *oldest))
        oldest = pool.idle.front()->idle_since;
    if (!oldest) return;
    sweep_armed = true;
    sweeper.expires_at(*oldest + config.idle_timeout);
    sweeper.async_wait([weak = weak_from_this()](error_code) {
      auto self = weak.lock();
      if (!self) return;
      self->sweep_armed = false;
      auto now = Clock::now();
      for (auto& [origin, pool] : self->pools)
        self->prune(pool, now);
      self->arm_sweeper();
    });
  }

  void close_all() {
    ++generation;  // connections in use now are closed when they come back
    for (auto& [origin, pool] : pools) {
      for (auto& c : pool.idle)
        c->close();
      pool.idle.clear();
    }
    sweeper.cancel();
  }

  asio::any_io_executor ex;
  HttpClientConfig config;
  ssl::context tls_ctx{ssl::context::tls_client};
  std::map<std::string, Pool, std::less<>> pools;  // never erased: leases keep Pool&
  KeyGates gates;                                  // erased when nothing holds or waits
  std::size_t opened = 0;
  std::uint64_t generation = 0;
  asio::steady_timer sweeper;
  bool sweep_armed = false;
};

std::string HttpResponse::header(std::string_view name) const {
  for (const auto& [n, v] : headers)
    if (iequals(n, name)) return v;
  return {};
}

HttpClient::HttpClient(boost::asio::any_io_executor ex, HttpClientConfig config)
    : impl_(std::make_shared<Impl>(std::move(ex), std::move(config))) {}

HttpClient::~HttpClient() {
  impl_->close_all();
}

boost::asio::awaitable<HttpResponse> HttpClient::send(HttpRequest request) {
  return Impl::send(impl_, std::move(request));
}

std::size_t HttpClient::idle_connections() const {
  std::size_t n = 0;
  for (const auto& [origin, pool] : impl_->pools)
    n += pool.idle.size();
  return n;
}

std::size_t HttpClient::connections_opened() const {
  return impl_->opened;
}

std::size_t HttpClient::open_connections() const {
  std::size_t n = 0;
  for (const auto& [origin, pool] : impl_->pools)
    n += pool.leased + pool.idle.size();
  return n;
}

void HttpClient::close_all() {
  impl_->close_all();
}

}  // namespace cascade
