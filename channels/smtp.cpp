#include "channels/smtp.hpp"

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/ssl/ssl_stream.hpp>

#include <atomic>
#include <deque>
#include <list>
#include <map>
#include <optional>
#include <variant>

#include "channels/http_adapter.hpp"
#include "channels/postmark.hpp"
#include "channels/smtp_proto.hpp"

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;
using Clock = std::chrono::steady_clock;
using boost::system::error_code;

namespace cascade {
namespace {

constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);
constexpr auto kStepTimeout = std::chrono::seconds(60);
constexpr auto kIdleMax = std::chrono::seconds(60);

bool loopback_host(std::string_view host) {
  if (host == "localhost" || host == "::1" || host == "[::1]") return true;
  error_code ec;
  auto addr = asio::ip::make_address(host, ec);
  return !ec && addr.is_loopback();
}

bool ip_literal(const std::string& host) {
  error_code ec;
  asio::ip::make_address(host, ec);
  return !ec;
}

bool verify_failure(const error_code& ec) {
  return ec.category() == asio::error::get_ssl_category() &&
         ERR_GET_REASON(static_cast<unsigned long>(ec.value())) == SSL_R_CERTIFICATE_VERIFY_FAILED;
}

struct Session {
  explicit Session(const asio::any_io_executor& ex) : plain(std::in_place, ex), rbuf(8192) {}
  std::optional<beast::tcp_stream> plain;
  std::optional<beast::ssl_stream<beast::tcp_stream>> tls;
  smtp::ReplyParser parser;
  smtp::Capabilities caps;
  std::vector<char> rbuf;
  Clock::time_point last_used = Clock::now();

  beast::tcp_stream& tcp() { return tls ? tls->next_layer() : *plain; }
  void close() {
    error_code ec;
    tcp().socket().shutdown(tcp::socket::shutdown_both, ec);
    tcp().close();
  }
};

// The result of one step: a reply, or why there is none.
struct Step {
  enum class Error { none, timeout, closed, protocol };
  Error error = Error::none;
  std::string text;
  smtp::Reply reply;
  bool ok() const { return error == Error::none; }
};

template <class Stream>
asio::awaitable<std::tuple<error_code, std::size_t>> read_some(Stream& s, asio::mutable_buffer b) {
  co_return co_await s.async_read_some(b, use_tuple);
}

template <class Stream>
asio::awaitable<std::tuple<error_code, std::size_t>> write_all(Stream& s, asio::const_buffer b) {
  co_return co_await asio::async_write(s, b, use_tuple);
}

Clock::time_point step_deadline(Clock::time_point deadline) {
  return std::min(deadline, Clock::now() + kStepTimeout);
}

asio::awaitable<Step> read_reply(Session& s, Clock::time_point deadline) {
  Step step;
  for (;;) {
    if (auto r = s.parser.next()) {
      step.reply = std::move(*r);
      co_return step;
    }
    if (s.parser.failed()) {
      step.error = Step::Error::protocol;
      step.text = "smtp: malformed reply from server";
      co_return step;
    }
    s.tcp().expires_at(step_deadline(deadline));
    auto buf = asio::buffer(s.rbuf);
    auto [ec, n] = s.tls ? co_await read_some(*s.tls, buf) : co_await read_some(*s.plain, buf);
    if (ec == beast::error::timeout) {
      step.error = Step::Error::timeout;
      step.text = "smtp: timed out waiting for the server";
      co_return step;
    }
    if (ec) {
      step.error = Step::Error::closed;
      step.text = "smtp: connection lost (" + ec.message() + ")";
      co_return step;
    }
    s.parser.feed(std::string_view(s.rbuf.data(), n));
  }
}

asio::awaitable<Step> write(Session& s, const std::string& data, Clock::time_point deadline) {
  Step step;
  s.tcp().expires_at(step_deadline(deadline));
  auto buf = asio::buffer(data);
  auto [ec, n] = s.tls ? co_await write_all(*s.tls, buf) : co_await write_all(*s.plain, buf);
  (void)n;
  if (ec == beast::error::timeout) {
    step.error = Step::Error::timeout;
    step.text = "smtp: timed out sending to the server";
  } else if (ec) {
    step.error = Step::Error::closed;
    step.text = "smtp: connection lost (" + ec.message() + ")";
  }
  co_return step;
}

asio::awaitable<Step> command(Session& s, const std::string& line, Clock::time_point deadline) {
  auto w = co_await write(s, line, deadline);
  if (!w.ok()) co_return w;
  co_return co_await read_reply(s, deadline);
}

struct Target {
  std::string host;
  std::uint16_t port = 587;
  std::string user, pass;
  std::string tls;  // "starttls" | "tls" | "none" | "" (opportunistic)
  std::string helo;
  std::string ca_file;
  std::size_t pool_size = 4;
  std::string key() const {
    return host + "\n" + std::to_string(port) + "\n" + user + "\n" + tls + "\n" + ca_file;
  }
};

struct Pool {
  std::deque<std::unique_ptr<Session>> idle;
  std::size_t open = 0;
  std::list<asio::steady_timer*> waiters;
  std::shared_ptr<ssl::context> tls_ctx;
};

Outcome network(std::string why) {
  return Outcome::transient(std::move(why), Outcome::Cause::network);
}
Outcome config_error(std::string why) {
  return Outcome::permanent(std::move(why), Outcome::Cause::config);
}

}  // namespace

struct SmtpChannel::Impl {
  explicit Impl(ChannelContext&) {}
  std::map<std::string, Pool> pools;
  std::size_t opened = 0;

  void release(Pool& pool, std::unique_ptr<Session> s, bool reusable) {
    if (reusable) {
      s->last_used = Clock::now();
      pool.idle.push_back(std::move(s));
    } else {
      if (s) s->close();
      --pool.open;
    }
    if (!pool.waiters.empty()) pool.waiters.front()->cancel();
  }

  // Connect, greeting, EHLO, STARTTLS, EHLO, AUTH. nullopt when the session is ready.
  asio::awaitable<std::optional<Outcome>> open(Session& s, Pool& pool, const Target& t,
                                               Clock::time_point deadline) {
    using smtp::Stage;
    auto ex = co_await asio::this_coro::executor;
    std::vector<tcp::endpoint> endpoints;
    error_code ec;
    auto addr = asio::ip::make_address(t.host, ec);
    if (!ec) {
      endpoints.emplace_back(addr, t.port);
    } else {
      tcp::resolver resolver(ex);
      auto [rec, results] =
          co_await resolver.async_resolve(t.host, std::to_string(t.port), use_tuple);
      if (rec || results.empty()) co_return network("smtp: cannot resolve " + t.host);
      for (const auto& r : results)
        endpoints.push_back(r.endpoint());
    }
    s.plain->expires_at(step_deadline(deadline));
    auto [cec, ep] = co_await s.plain->async_connect(endpoints, use_tuple);
    (void)ep;
    if (cec == beast::error::timeout) co_return network("smtp: timed out connecting");
    if (cec) co_return network("smtp: cannot connect (" + cec.message() + ")");
    ++opened;
    s.plain->socket().set_option(tcp::no_delay(true), ec);

    auto handshake = [&]() -> asio::awaitable<std::optional<Outcome>> {
      s.tls.emplace(std::move(*s.plain), *pool.tls_ctx);
      s.plain.reset();
      // SNI, except for IP literals (RFC 6066).
      if (!ip_literal(t.host) && !SSL_set_tlsext_host_name(s.tls->native_handle(), t.host.c_str()))
        co_return config_error("smtp: TLS setup failed");
      s.tls->set_verify_mode(ssl::verify_peer);
      s.tls->set_verify_callback(ssl::host_name_verification(t.host));
      s.tcp().expires_at(step_deadline(deadline));
      auto [hec] = co_await s.tls->async_handshake(ssl::stream_base::client, use_tuple);
      if (hec && verify_failure(hec))
        co_return config_error("smtp: TLS certificate verification failed");
      if (hec == beast::error::timeout) co_return network("smtp: timed out in TLS handshake");
      if (hec) co_return network("smtp: TLS handshake failed (" + hec.message() + ")");
      co_return std::nullopt;
    };

    if (t.tls == "tls") {
      if (auto failed = co_await handshake()) co_return failed;
    }
    auto greeting = co_await read_reply(s, deadline);
    if (!greeting.ok()) co_return network(greeting.text);
    if (!smtp::is_success(Stage::greeting, greeting.reply))
      co_return smtp::classify(Stage::greeting, greeting.reply);
    std::string ehlo = "EHLO " + t.helo + "\r\n";
    auto hello = co_await command(s, ehlo, deadline);
    if (!hello.ok()) co_return network(hello.text);
    if (!smtp::is_success(Stage::ehlo, hello.reply))
      co_return smtp::classify(Stage::ehlo, hello.reply);
    s.caps = smtp::parse_ehlo(hello.reply);

    bool want_starttls = t.tls == "starttls" || (t.tls.empty() && s.caps.starttls);
    if (want_starttls) {
      if (!s.caps.starttls) co_return config_error("smtp: server does not offer STARTTLS");
      auto st = co_await command(s, "STARTTLS\r\n", deadline);
      if (!st.ok()) co_return network(st.text);
      if (!smtp::is_success(Stage::starttls, st.reply))
        co_return smtp::classify(Stage::starttls, st.reply);
      if (s.parser.has_pending()) co_return network("smtp: unexpected data before TLS");
      if (auto failed = co_await handshake()) co_return failed;
      auto again = co_await command(s, ehlo, deadline);
      if (!again.ok()) co_return network(again.text);
      if (!smtp::is_success(Stage::ehlo, again.reply))
        co_return smtp::classify(Stage::ehlo, again.reply);
      s.caps = smtp::parse_ehlo(again.reply);
    } else if (!s.tls && !loopback_host(t.host)) {
      co_return config_error("smtp: server offers no STARTTLS; plain SMTP only to loopback");
    }

    if (!t.user.empty()) {
      Step a;
      if (s.caps.auth_plain) {
        a = co_await command(s, "AUTH PLAIN " + smtp::auth_plain(t.user, t.pass) + "\r\n",
                             deadline);
      } else if (s.caps.auth_login) {
        a = co_await command(s, "AUTH LOGIN\r\n", deadline);
        if (a.ok() && a.reply.code == 334)
          a = co_await command(s, smtp::base64(t.user) + "\r\n", deadline);
        if (a.ok() && a.reply.code == 334)
          a = co_await command(s, smtp::base64(t.pass) + "\r\n", deadline);
      } else {
        co_return config_error("smtp: server offers no AUTH PLAIN or LOGIN");
      }
      if (!a.ok()) co_return network(a.text);
      if (a.reply.code != 235) co_return smtp::classify(smtp::Stage::auth, a.reply);
    }
    co_return std::nullopt;
  }

  // Takes an idle session (reused = true) or opens a new one, waiting for a free slot
  // when the pool is at its bound.
  asio::awaitable<std::variant<std::unique_ptr<Session>, Outcome>> lease(Pool& pool,
                                                                         const Target& t,
                                                                         Clock::time_point deadline,
                                                                         bool& reused) {
    auto ex = co_await asio::this_coro::executor;
    for (;;) {
      while (!pool.idle.empty()) {
        auto s = std::move(pool.idle.back());
        pool.idle.pop_back();
        if (Clock::now() - s->last_used > kIdleMax) {
          release(pool, std::move(s), false);
          continue;
        }
        reused = true;
        co_return s;
      }
      if (pool.open < t.pool_size) break;
      asio::steady_timer wake(ex);
      wake.expires_at(deadline);
      pool.waiters.push_back(&wake);
      auto it = std::prev(pool.waiters.end());
      co_await wake.async_wait(use_tuple);
      pool.waiters.erase(it);
      if (Clock::now() >= deadline) co_return network("smtp: no free session before the deadline");
    }
    ++pool.open;
    reused = false;
    auto s = std::make_unique<Session>(ex);
    auto failed = co_await open(*s, pool, t, deadline);
    if (failed) {
      release(pool, std::move(s), false);
      co_return std::move(*failed);
    }
    co_return s;
  }

  struct Transaction {
    std::optional<Outcome> outcome;  // set: final
    bool session_ok = true;          // the session may be pooled again
    bool retry_fresh = false;        // broken before the final dot: try a fresh session
  };

  asio::awaitable<Transaction> transact(Session& s, bool reused, const std::string& from,
                                        const std::string& to, const std::string& payload,
                                        Clock::time_point deadline) {
    using smtp::Stage;
    Transaction tx;
    auto io_fail = [&](const Step& st) {
      tx.session_ok = false;
      tx.retry_fresh = reused;
      tx.outcome = network(st.text);
    };
    auto reply_fail = [&](Stage stage, const Step& st) {
      tx.outcome = smtp::classify(stage, st.reply);
      if (st.reply.code == 421) tx.session_ok = false;
    };
    if (reused) {
      auto r = co_await command(s, "RSET\r\n", deadline);
      if (!r.ok()) {
        io_fail(r);
        co_return tx;
      }
      if (r.reply.klass() != 2) {
        tx.session_ok = false;
        tx.retry_fresh = true;
        tx.outcome = smtp::classify(Stage::rset, r.reply);
        co_return tx;
      }
    }
    // Limits the server announced: SIZE, and SMTPUTF8 for non-ASCII addresses (RFC 6531).
    if (s.caps.size && payload.size() > s.caps.size) {
      tx.outcome = Outcome::permanent("smtp: message larger than the server accepts",
                                      Outcome::Cause::content);
      co_return tx;
    }
    bool utf8 = !smtp::is_ascii(from) || !smtp::is_ascii(to);
    if (utf8 && !s.caps.smtputf8) {
      tx.outcome = Outcome::permanent("smtp: server cannot take non-ASCII addresses",
                                      Outcome::Cause::recipient);
      co_return tx;
    }
    std::string mail = "MAIL FROM:<" + from + ">";
    if (s.caps.eightbitmime) mail += " BODY=8BITMIME";
    if (utf8) mail += " SMTPUTF8";
    mail += "\r\n";
    auto m = co_await command(s, mail, deadline);
    if (!m.ok()) {
      io_fail(m);
      co_return tx;
    }
    if (!smtp::is_success(Stage::mail, m.reply)) {
      reply_fail(Stage::mail, m);
      co_return tx;
    }
    auto r = co_await command(s, "RCPT TO:<" + to + ">\r\n", deadline);
    if (!r.ok()) {
      io_fail(r);
      co_return tx;
    }
    if (!smtp::is_success(Stage::rcpt, r.reply)) {
      reply_fail(Stage::rcpt, r);
      co_return tx;
    }
    auto d = co_await command(s, "DATA\r\n", deadline);
    if (!d.ok()) {
      io_fail(d);
      co_return tx;
    }
    if (!smtp::is_success(Stage::data, d.reply)) {
      reply_fail(Stage::data, d);
      co_return tx;
    }
    auto w = co_await write(s, payload, deadline);
    if (!w.ok()) {
      // The final dot may not have reached the server: nothing was accepted.
      io_fail(w);
      co_return tx;
    }
    auto done = co_await read_reply(s, deadline);
    if (!done.ok()) {
      tx.session_ok = false;
      Outcome o =
          network("smtp: " +
                  std::string(done.error == Step::Error::timeout ? "no reply" : "connection lost") +
                  " after the message was sent (outcome unknown)");
      o.unknown = true;
      tx.outcome = std::move(o);
      co_return tx;
    }
    if (done.reply.code != 250) {
      reply_fail(Stage::body, done);
      co_return tx;
    }
    std::string id;
    if (!done.reply.lines.empty()) id = done.reply.lines.back();
    // "2.0.0 Ok: queued as ABC123" -> "ABC123"; else the whole text.
    auto q = id.rfind("queued as ");
    if (q != std::string::npos) id = id.substr(q + 10);
    if (id.size() > 128) id.resize(128);
    tx.outcome = Outcome::sent(std::move(id));
    co_return tx;
  }

  asio::awaitable<Outcome> send(const SendRequest& request) {
    using Cause = Outcome::Cause;
    const auto* settings = request.settings;
    Target t;
    t.host = std::string(setting(settings, "smtp_host"));
    if (t.host.empty()) co_return config_error("smtp: smtp_host not set");
    t.tls = std::string(setting(settings, "smtp_tls"));
    if (!t.tls.empty() && t.tls != "starttls" && t.tls != "tls" && t.tls != "none")
      co_return config_error("smtp: smtp_tls must be none, starttls or tls");
    if (t.tls == "none" && !loopback_host(t.host))
      co_return config_error("smtp: smtp_tls=none is only allowed to loopback hosts");
    auto port_text = setting(settings, "smtp_port");
    t.port = t.tls == "tls" ? 465 : 587;
    if (!port_text.empty()) {
      int p = 0;
      for (char c : port_text) {
        if (c < '0' || c > '9' || p > 65535) co_return config_error("smtp: invalid smtp_port");
        p = p * 10 + (c - '0');
      }
      if (p <= 0 || p > 65535) co_return config_error("smtp: invalid smtp_port");
      t.port = static_cast<std::uint16_t>(p);
    }
    t.user = std::string(setting(settings, "smtp_user"));
    t.pass = std::string(setting(settings, "smtp_pass"));
    t.helo = std::string(setting(settings, "smtp_helo"));
    if (t.helo.empty()) t.helo = "localhost";
    if (t.helo.find_first_of(" \r\n") != std::string::npos)
      co_return config_error("smtp: invalid smtp_helo");
    t.ca_file = std::string(setting(settings, "smtp_ca_file"));
    if (auto n = setting(settings, "smtp_pool"); !n.empty()) {
      std::size_t v = 0;
      for (char c : n)
        if (c >= '0' && c <= '9' && v < 1000) v = v * 10 + static_cast<std::size_t>(c - '0');
      if (v > 0) t.pool_size = v;
    }
    std::string from(setting(settings, "from"));
    if (!smtp::valid_address(from)) co_return config_error("smtp: from address not set or invalid");
    if (!smtp::valid_address(request.recipient))
      co_return Outcome::permanent("email: invalid address", Cause::recipient);
    if (!request.message) co_return Outcome::permanent("smtp: no message", Cause::content);

    smtp::MimeMessage mime;
    mime.from = from;
    mime.to = request.recipient;
    mime.subject = email_subject(*request.message);
    mime.text = request.message->text;
    mime.html = request.message->html;
    mime.message_id =
        smtp::message_id(request.job_id, request.channel_key_id, smtp::address_domain(from));
    mime.date = std::time(nullptr);
    mime.boundary = "=_cascade_" + smtp::base64(request.job_id + request.channel_key_id);
    for (auto& c : mime.boundary)
      if (c == '/' || c == '+' || c == '=') c = '_';
    auto payload = smtp::dot_stuff(smtp::build_mime(mime));

    auto& pool = pools[t.key()];
    if (!pool.tls_ctx) {
      auto ctx = std::make_shared<ssl::context>(ssl::context::tls_client);
      error_code ec;
      ctx->set_default_verify_paths(ec);
      if (!t.ca_file.empty()) {
        ctx->load_verify_file(t.ca_file, ec);
        if (ec) co_return config_error("smtp: cannot read smtp_ca_file");
      }
      ctx->set_verify_mode(ssl::verify_peer);
      pool.tls_ctx = std::move(ctx);
    }
    // At most one transparent replacement of a broken pooled session.
    for (int round = 0;; ++round) {
      bool reused = false;
      auto leased = co_await lease(pool, t, request.deadline, reused);
      if (auto* o = std::get_if<Outcome>(&leased)) co_return std::move(*o);
      auto s = std::move(std::get<std::unique_ptr<Session>>(leased));
      auto tx = co_await transact(*s, reused, from, request.recipient, payload, request.deadline);
      release(pool, std::move(s), tx.session_ok);
      if (tx.retry_fresh && round == 0 && Clock::now() < request.deadline) continue;
      co_return std::move(*tx.outcome);
    }
  }
};

SmtpChannel::SmtpChannel(ChannelContext& context) : impl_(std::make_shared<Impl>(context)) {}
SmtpChannel::~SmtpChannel() {
  close_all();
}

boost::asio::awaitable<Outcome> SmtpChannel::send(const SendRequest& request) {
  auto keep = impl_;
  co_return co_await keep->send(request);
}

std::size_t SmtpChannel::sessions_opened() const {
  return impl_->opened;
}

std::size_t SmtpChannel::idle_sessions() const {
  std::size_t n = 0;
  for (const auto& [k, p] : impl_->pools)
    n += p.idle.size();
  return n;
}

void SmtpChannel::close_all() {
  for (auto& [k, p] : impl_->pools) {
    for (auto& s : p.idle)
      s->close();
    p.open -= p.idle.size();
    p.idle.clear();
  }
}

}  // namespace cascade
