#pragma once
// Email through SMTP submission (RFC 5321/6409), asynchronous on Asio with coroutines.
// Settings of the channel key: from, smtp_host, smtp_port (default 587, 465 for tls),
// smtp_user, smtp_pass (secret), smtp_tls = starttls (required) | tls (implicit) | none
// (plain, loopback hosts only); absent: STARTTLS when the server offers it (plain allowed
// to loopback only). Optional: smtp_helo (EHLO name, default "localhost"), smtp_pool
// (sessions per server, default 4), smtp_ca_file (extra trust anchors, PEM).
//
// Sessions stay open and are reused (RSET before each reuse), pooled per (host, port, user,
// tls) with a bound; a pooled session found broken before the final "." of DATA is
// replaced by a fresh one transparently. A connection lost (or a timeout) after the final
// "." was written is an unknown outcome (Outcome::unknown, transient).
//
// Threading: like HttpClient, one io_context run by one thread.
#include <cstddef>
#include <memory>

#include "channels/channel.hpp"

namespace cascade {

class SmtpChannel final : public Channel {
 public:
  explicit SmtpChannel(ChannelContext& context);
  ~SmtpChannel() override;
  boost::asio::awaitable<Outcome> send(const SendRequest& request) override;
  bool honours_deadline() const override { return true; }

  // Sessions opened since construction / idle now (tests check reuse).
  std::size_t sessions_opened() const;
  std::size_t idle_sessions() const;
  void close_all();

 private:
  struct Impl;
  std::shared_ptr<Impl> impl_;
};

}  // namespace cascade
