#include "support/smtp_server.hpp"

#include <simdjson.h>

#include <fstream>
#include <sstream>
#include <stdexcept>
#include <thread>

namespace cascade::test {
namespace {

void run(const std::string& command) {
  if (std::system(command.c_str()) != 0) throw std::runtime_error("failed: " + command);
}

std::string str(simdjson::dom::element e, const char* key) {
  std::string_view v;
  if (e[key].get(v)) return "";
  return std::string(v);
}

}  // namespace

TestCerts::TestCerts() {
  const auto& d = dir.path();
  ca_cert = d + "/ca.pem";
  server_cert = d + "/server.pem";
  server_key = d + "/server.key";
  std::string q = " >/dev/null 2>&1";
  run("openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=cascade-test-ca -keyout " + d +
      "/ca.key -out " + ca_cert + q);
  {
    std::ofstream ext(d + "/ext.cnf");
    ext << "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
           "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\n"
           "extendedKeyUsage=serverAuth\n";
  }
  run("openssl req -newkey rsa:2048 -nodes -subj /CN=localhost -keyout " + server_key + " -out " +
      d + "/server.csr" + q);
  run("openssl x509 -req -in " + d + "/server.csr -CA " + ca_cert + " -CAkey " + d +
      "/ca.key -CAcreateserial -days 2 -extfile " + d + "/ext.cnf -out " + server_cert + q);
}

SmtpServer::SmtpServer(SmtpServerOptions o) {
  out_path_ = dir_.path() + "/events.jsonl";
  std::vector<std::string> argv = {
      "/usr/bin/python3", std::string(CASCADE_SOURCE_DIR) + "/tests/support/smtp_server.py",
      "--out", out_path_, "--port"};
  for (int attempt = 0;; ++attempt) {
    port_ = o.port ? o.port : free_port();
    auto args = argv;
    args.push_back(std::to_string(port_));
    if (!o.cert.empty()) {
      args.push_back("--cert");
      args.push_back(o.cert);
      args.push_back("--key");
      args.push_back(o.key);
    }
    if (o.implicit_tls) args.push_back("--implicit-tls");
    if (o.require_starttls) args.push_back("--require-starttls");
    if (!o.auth.empty()) {
      args.push_back("--auth");
      args.push_back(o.auth);
    }
    if (!o.auth_only.empty()) {
      args.push_back("--auth-only");
      args.push_back(o.auth_only);
    }
    process_ =
        std::make_unique<Process>(args, std::vector<std::string>{}, dir_.path() + "/stderr.log");
    if (process_->wait_for_line("ready", std::chrono::seconds(15))) return;
    process_.reset();
    if (attempt == 2) {
      std::ifstream err(dir_.path() + "/stderr.log");
      std::stringstream ss;
      ss << err.rdbuf();
      throw std::runtime_error("smtp_server.py did not start: " + ss.str());
    }
  }
}

SmtpServer::~SmtpServer() {
  if (process_) {
    process_->signal(SIGTERM);
    if (!process_->wait(std::chrono::seconds(5))) process_->signal(SIGKILL);
  }
}

std::vector<SmtpEvent> SmtpServer::events() const {
  std::vector<SmtpEvent> out;
  std::ifstream in(out_path_);
  std::string line;
  simdjson::dom::parser parser;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    simdjson::dom::element e;
    if (parser.parse(line).get(e)) continue;  // a line being written
    SmtpEvent ev;
    ev.event = str(e, "event");
    ev.peer = str(e, "peer");
    bool b = false;
    if (!e["tls"].get(b)) ev.tls = b;
    if (!e["ok"].get(b)) ev.ok = b;
    ev.auth = str(e, "auth");
    ev.mechanism = str(e, "mechanism");
    ev.mail_from = str(e, "mail_from");
    simdjson::dom::array rcpts;
    if (!e["rcpt_tos"].get(rcpts))
      for (auto r : rcpts)
        ev.rcpt_tos.emplace_back(std::string_view(r));
    ev.raw = str(e, "raw");
    ev.subject = str(e, "subject");
    ev.text = str(e, "text");
    ev.html = str(e, "html");
    ev.message_id = str(e, "message_id");
    ev.date = str(e, "date");
    ev.from = str(e, "from");
    ev.to = str(e, "to");
    ev.content_type = str(e, "content_type");
    out.push_back(std::move(ev));
  }
  return out;
}

std::vector<SmtpEvent> SmtpServer::events(const std::string& kind) const {
  std::vector<SmtpEvent> out;
  for (auto& e : events())
    if (e.event == kind) out.push_back(std::move(e));
  return out;
}

std::vector<SmtpEvent> SmtpServer::wait_for(const std::string& kind, std::size_t n,
                                            std::chrono::milliseconds timeout) {
  auto end = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    auto got = events(kind);
    if (got.size() >= n || std::chrono::steady_clock::now() >= end) return got;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

}  // namespace cascade::test
