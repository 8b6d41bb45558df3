#include "support/mock_provider.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <simdjson.h>
#include <algorithm>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <stdexcept>

namespace cascade::test {
namespace {

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) ==
                  std::tolower(static_cast<unsigned char>(y));
         });
}

bool has_flag(const std::vector<std::string>& args, std::string_view flag) {
  return std::any_of(args.begin(), args.end(), [&](const std::string& a) {
    return a == flag || (a.size() > flag.size() && a.compare(0, flag.size(), flag) == 0 &&
                         a[flag.size()] == '=');
  });
}

std::vector<std::string> mock_argv(std::vector<std::string> extra) {
  // --exit-with-parent: a test that crashes (no destructors) leaves no mock behind.
  std::vector<std::string> argv{tool_path("cascade-mock-provider"), "--listen", "127.0.0.1:0",
                                "--exit-with-parent"};
  // HTTPS: the control helpers speak plain HTTP, on a control listener.
  if (has_flag(extra, "--tls-cert") && !has_flag(extra, "--control-listen")) {
    argv.emplace_back("--control-listen");
    argv.emplace_back("127.0.0.1:0");
  }
  for (auto& a : extra)
    argv.push_back(std::move(a));
  return argv;
}

// "<prefix>PORT<suffix>" -> PORT; throws with the line otherwise.
std::uint16_t port_from_line(const std::optional<std::string>& line, std::string_view prefix,
                             std::string_view suffix) {
  if (!line || line->rfind(prefix, 0) != 0 || line->size() < prefix.size() + suffix.size() ||
      line->compare(line->size() - suffix.size(), suffix.size(), suffix) != 0)
    throw std::runtime_error("cascade-mock-provider did not start (expected \"" +
                             std::string(prefix) + "PORT" + std::string(suffix) +
                             "\", got: " + line.value_or("<none>") + ")");
  auto port = std::string_view(*line).substr(prefix.size());
  port.remove_suffix(suffix.size());
  std::uint16_t value = 0;
  auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), value);
  if (ec != std::errc{} || end != port.data() + port.size() || value == 0)
    throw std::runtime_error("cascade-mock-provider printed a bad port: " + *line);
  return value;
}

}  // namespace

std::optional<std::string> HttpResponse::header(std::string_view name) const {
  for (const auto& [k, v] : headers)
    if (iequals(k, name)) return v;
  return std::nullopt;
}

// ---- HttpConnection -------------------------------------------------------------------

HttpConnection::HttpConnection(std::uint16_t port, std::chrono::milliseconds timeout)
    : timeout_(timeout) {
  fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd_ < 0) throw std::runtime_error("socket failed");
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(port);
  if (::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    std::string error = std::strerror(errno);
    ::close(fd_);
    fd_ = -1;
    std::string message = "connect to 127.0.0.1:";
    message.append(std::to_string(port)).append(" failed: ").append(error);
    throw std::runtime_error(message);
  }
  int one = 1;
  ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

HttpConnection::~HttpConnection() {
  if (fd_ >= 0) ::close(fd_);
}

void HttpConnection::send(std::string_view method, std::string_view target, std::string_view body,
                          const Headers& headers) {
  std::string out;
  out.append(method).append(" ").append(target).append(" HTTP/1.1\r\nHost: 127.0.0.1\r\n");
  bool has_type = false;
  for (const auto& [k, v] : headers) {
    has_type = has_type || iequals(k, "Content-Type");
    out.append(k).append(": ").append(v).append("\r\n");
  }
  if (!body.empty() && !has_type) out.append("Content-Type: application/json\r\n");
  out.append("Content-Length: ").append(std::to_string(body.size())).append("\r\n\r\n");
  out.append(body);
  std::size_t sent = 0;
  while (sent < out.size()) {
    auto n = ::send(fd_, out.data() + sent, out.size() - sent, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) throw std::runtime_error(std::string("send failed: ") + std::strerror(errno));
    sent += static_cast<std::size_t>(n);
  }
}

std::optional<HttpResponse> HttpConnection::receive() {
  auto deadline = std::chrono::steady_clock::now() + timeout_;
  // Reads more bytes into buffer_; false at EOF or reset.
  auto fill = [&]() -> bool {
    for (;;) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) throw std::runtime_error("timed out waiting for an HTTP response");
      pollfd p{fd_, POLLIN, 0};
      int r = ::poll(&p, 1, static_cast<int>(left.count()));
      if (r < 0 && errno == EINTR) continue;
      if (r < 0) throw std::runtime_error("poll failed");
      if (r == 0) continue;
      char chunk[16384];
      auto n = ::recv(fd_, chunk, sizeof chunk, 0);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return false;  // 0: orderly close; <0: typically ECONNRESET
      buffer_.append(chunk, static_cast<std::size_t>(n));
      return true;
    }
  };
  std::size_t header_end;
  while ((header_end = buffer_.find("\r\n\r\n")) == std::string::npos)
    if (!fill()) return std::nullopt;

  HttpResponse response;
  std::string_view head(buffer_.data(), header_end);
  auto line_end = head.find("\r\n");
  std::string_view status_line = head.substr(0, line_end);
  // "HTTP/1.1 200 OK"
  auto sp = status_line.find(' ');
  if (sp == std::string_view::npos) throw std::runtime_error("malformed status line");
  auto code = status_line.substr(sp + 1, 3);
  std::from_chars(code.data(), code.data() + code.size(), response.status);
  std::optional<std::size_t> length;
  std::string_view rest =
      line_end == std::string_view::npos ? std::string_view{} : head.substr(line_end + 2);
  while (!rest.empty()) {
    auto eol = rest.find("\r\n");
    auto line = rest.substr(0, eol);
    rest = eol == std::string_view::npos ? std::string_view{} : rest.substr(eol + 2);
    auto colon = line.find(':');
    if (colon == std::string_view::npos) continue;
    std::string name(line.substr(0, colon));
    auto value = line.substr(colon + 1);
    while (!value.empty() && value.front() == ' ')
      value.remove_prefix(1);
    if (iequals(name, "Transfer-Encoding"))
      throw std::runtime_error("chunked responses are not supported by this test client");
    if (iequals(name, "Content-Length")) {
      std::size_t n = 0;
      std::from_chars(value.data(), value.data() + value.size(), n);
      length = n;
    }
    response.headers.emplace_back(std::move(name), std::string(value));
  }
  std::size_t body_start = header_end + 4;
  if (length) {
    while (buffer_.size() < body_start + *length)
      if (!fill()) return std::nullopt;
    response.body = buffer_.substr(body_start, *length);
    buffer_.erase(0, body_start + *length);
  } else {
    while (fill()) {
    }
    response.body = buffer_.substr(body_start);
    buffer_.clear();
  }
  return response;
}

HttpResponse HttpConnection::request(std::string_view method, std::string_view target,
                                     std::string_view body, const Headers& headers) {
  send(method, target, body, headers);
  auto response = receive();
  if (!response) {
    std::string message = "connection closed without a response to ";
    message.append(method).append(" ").append(target);
    throw std::runtime_error(message);
  }
  return *response;
}

// ---- MockProvider ---------------------------------------------------------------------

MockProvider::MockProvider(std::vector<std::string> extra_args)
    : process_(mock_argv(extra_args)), tls_(has_flag(extra_args, "--tls-cert")) {
  port_ = port_from_line(process_.read_line(std::chrono::seconds(20)),
                         "listening on 127.0.0.1:", tls_ ? " (https)" : "");
  if (tls_ || has_flag(extra_args, "--control-listen"))
    control_port_ =
        port_from_line(process_.read_line(std::chrono::seconds(20)), "control on 127.0.0.1:", "");
}

MockProvider::~MockProvider() {
  stop();
}

std::string MockProvider::base_url() const {
  return (tls_ ? "https://127.0.0.1:" : "http://127.0.0.1:") + std::to_string(port_);
}

HttpResponse MockProvider::http(std::string_view method, std::string_view target,
                                std::string_view body, const Headers& headers) {
  HttpConnection connection(control_port());
  return connection.request(method, target, body, headers);
}

int MockProvider::add_rule(const std::string& json) {
  auto response = http("POST", "/__mock/rules", json);
  if (response.status != 200)
    throw std::runtime_error("mock refused rule " + json + ": " + response.body);
  simdjson::dom::parser parser;
  std::int64_t id = 0;
  if (parser.parse(response.body)["id"].get_int64().get(id) != simdjson::SUCCESS)
    throw std::runtime_error("unexpected answer to POST /__mock/rules: " + response.body);
  return static_cast<int>(id);
}

void MockProvider::clear_rules() {
  auto response = http("DELETE", "/__mock/rules");
  if (response.status != 200) throw std::runtime_error("DELETE /__mock/rules: " + response.body);
}

std::string MockProvider::requests(const std::string& provider) {
  std::string target = "/__mock/requests";
  if (!provider.empty()) target += "?provider=" + provider;
  auto response = http("GET", target);
  if (response.status != 200) throw std::runtime_error("GET " + target + ": " + response.body);
  return response.body;
}

std::vector<MockRequest> MockProvider::request_list(const std::string& provider) {
  return parse_mock_requests(requests(provider));
}

void MockProvider::clear_requests() {
  auto response = http("DELETE", "/__mock/requests");
  if (response.status != 200) throw std::runtime_error("DELETE /__mock/requests: " + response.body);
}

std::string MockProvider::stats() {
  auto response = http("GET", "/__mock/stats");
  if (response.status != 200) throw std::runtime_error("GET /__mock/stats: " + response.body);
  return response.body;
}

std::optional<int> MockProvider::stop(std::chrono::milliseconds timeout) {
  process_.signal(SIGTERM);
  return process_.wait(timeout);
}

std::vector<MockRequest> parse_mock_requests(const std::string& json) {
  simdjson::dom::parser parser;
  simdjson::dom::array array;
  if (parser.parse(json).get_array().get(array) != simdjson::SUCCESS)
    throw std::runtime_error("GET /__mock/requests is not a JSON array: " + json);
  std::vector<MockRequest> out;
  for (simdjson::dom::element e : array) {
    MockRequest r;
    auto text = [&](const char* key, std::string& field) {
      std::string_view v;
      if (e[key].get_string().get(v) == simdjson::SUCCESS) field.assign(v);
    };
    auto number = [&](const char* key, auto& field) {
      std::int64_t v = 0;
      if (e[key].get_int64().get(v) == simdjson::SUCCESS)
        field = static_cast<std::remove_reference_t<decltype(field)>>(v);
    };
    number("seq", r.seq);
    text("provider", r.provider);
    text("path", r.path);
    text("token", r.token);
    text("recipient", r.recipient);
    text("text", r.text);
    text("subject", r.subject);
    number("status", r.status);
    text("action", r.action);
    number("received_us", r.received_us);
    number("responded_us", r.responded_us);
    text("body", r.body);
    out.push_back(std::move(r));
  }
  return out;
}

}  // namespace cascade::test
