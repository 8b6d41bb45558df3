#pragma once
// A real SMTP server for integration tests: tests/support/smtp_server.py on Debian's
// python3-aiosmtpd, started on a free loopback port. Events (connections, messages,
// injected faults) are read back from its JSON-lines file.
#include <chrono>
#include <csignal>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "support/process.hpp"

namespace cascade::test {

struct SmtpEvent {
  std::string event;  // connect | message | dropped | rcpt451 | rcpt550 | auth
  std::string peer;   // "127.0.0.1:PORT" of the client connection
  bool tls = false;
  std::string auth;  // login name when authenticated
  std::string mail_from;
  std::vector<std::string> rcpt_tos;
  std::string raw;  // the message as received (dot-stuffing undone)
  std::string subject, text, html, message_id, date, from, to, content_type;
  bool ok = false;        // auth events
  std::string mechanism;  // auth events: PLAIN | LOGIN
};

// A self-signed test CA and a server certificate it signed for 127.0.0.1 / localhost,
// made with the openssl CLI in a temporary directory.
struct TestCerts {
  TestCerts();
  TempDir dir;
  std::string ca_cert, server_cert, server_key;
};

struct SmtpServerOptions {
  std::string cert, key;  // enables STARTTLS (or implicit TLS)
  bool implicit_tls = false;
  bool require_starttls = false;
  std::string auth;            // "user:pass"
  std::string auth_only = "";  // offer only this mechanism: "PLAIN" or "LOGIN"
  std::uint16_t port = 0;      // 0: a free port
};

class SmtpServer {
 public:
  explicit SmtpServer(SmtpServerOptions options = {});
  ~SmtpServer();
  SmtpServer(const SmtpServer&) = delete;
  SmtpServer& operator=(const SmtpServer&) = delete;

  std::uint16_t port() const { return port_; }
  // Every event so far.
  std::vector<SmtpEvent> events() const;
  // Events of one kind.
  std::vector<SmtpEvent> events(const std::string& kind) const;
  // Waits until at least n events of `kind` were recorded; returns them (maybe fewer on
  // timeout).
  std::vector<SmtpEvent> wait_for(const std::string& kind, std::size_t n,
                                  std::chrono::milliseconds timeout = std::chrono::seconds(10));

 private:
  TempDir dir_;
  std::string out_path_;
  std::uint16_t port_ = 0;
  std::unique_ptr<Process> process_;
};

}  // namespace cascade::test
