#pragma once
// cascade-mock-provider for tests: starts the binary on a free loopback port and talks to
// its control API with blocking calls. Plain POSIX sockets: no Beast in tests' headers.
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "support/process.hpp"

namespace cascade::test {

using Headers = std::vector<std::pair<std::string, std::string>>;

// One HTTP response as read from the wire.
struct HttpResponse {
  int status = 0;
  Headers headers;
  std::string body;
  // The first header with this name (case-insensitive), nullopt when absent.
  std::optional<std::string> header(std::string_view name) const;
};

// A blocking HTTP/1.1 client connection to 127.0.0.1:port. Requests carry a Content-Length
// body; responses are read by Content-Length (or to EOF when the server closes).
class HttpConnection {
 public:
  explicit HttpConnection(std::uint16_t port,
                          std::chrono::milliseconds timeout = std::chrono::seconds(10));
  ~HttpConnection();
  HttpConnection(const HttpConnection&) = delete;
  HttpConnection& operator=(const HttpConnection&) = delete;

  // Writes one request. The connection is kept alive unless `headers` says otherwise.
  void send(std::string_view method, std::string_view target, std::string_view body = {},
            const Headers& headers = {});
  // Reads one response. nullopt when the server closed the connection (FIN or reset)
  // before a complete response; throws std::runtime_error on timeout.
  std::optional<HttpResponse> receive();
  // send + receive; throws when the connection is closed without a response.
  HttpResponse request(std::string_view method, std::string_view target, std::string_view body = {},
                       const Headers& headers = {});

 private:
  int fd_ = -1;
  std::chrono::milliseconds timeout_;
  std::string buffer_;
};

// One recorded provider request (GET /__mock/requests).
struct MockRequest {
  std::int64_t seq = 0;
  std::string provider;
  std::string path;       // target as received
  std::string token;      // credential as received
  std::string recipient;  // normalized recipient
  std::string text;
  std::string subject;  // postmark only
  int status = 0;       // 0 when dropped
  std::string action;   // respond | drop_before | drop_after
  std::int64_t received_us = 0;
  std::int64_t responded_us = 0;  // 0 when dropped
  std::string body;               // raw request body
};

class MockProvider {
 public:
  // Starts tool_path("cascade-mock-provider") --listen 127.0.0.1:0 --exit-with-parent plus
  // `extra_args`, and waits for its "listening on" line. Throws when it does not start.
  // With --tls-cert/--tls-key in extra_args it serves HTTPS, and the fixture adds
  // --control-listen 127.0.0.1:0 (unless given) so that the control helpers below keep
  // using plain HTTP on that second port.
  explicit MockProvider(std::vector<std::string> extra_args = {});
  // Stops the process (SIGTERM, then waits; SIGKILL if it hangs).
  ~MockProvider();
  MockProvider(const MockProvider&) = delete;
  MockProvider& operator=(const MockProvider&) = delete;

  std::uint16_t port() const { return port_; }  // the provider (main) port
  bool tls() const { return tls_; }
  // The port the control helpers use: the --control-listen port, else port().
  std::uint16_t control_port() const { return control_port_ ? control_port_ : port_; }
  std::string base_url() const;  // "http://127.0.0.1:PORT", "https://..." with TLS

  // POST /__mock/rules; returns the rule id. Throws with the mock's message when refused.
  int add_rule(const std::string& json);
  void clear_rules();                                      // DELETE /__mock/rules
  std::string requests(const std::string& provider = "");  // GET /__mock/requests, raw
  std::vector<MockRequest> request_list(const std::string& provider = "");  // parsed
  void clear_requests();  // DELETE /__mock/requests
  std::string stats();    // GET /__mock/stats, raw

  // One request on a fresh connection to control_port() (throws if the connection closes
  // without answer). With TLS this reaches only /__mock/*: provider paths get 404.
  HttpResponse http(std::string_view method, std::string_view target, std::string_view body = {},
                    const Headers& headers = {});

  // SIGTERM and wait; the exit status, nullopt on timeout.
  std::optional<int> stop(std::chrono::milliseconds timeout = std::chrono::seconds(10));
  Process& process() { return process_; }

 private:
  Process process_;
  std::uint16_t port_ = 0;
  std::uint16_t control_port_ = 0;  // 0: no control listener
  bool tls_ = false;
};

// Parses a GET /__mock/requests array (throws std::runtime_error on malformed JSON).
std::vector<MockRequest> parse_mock_requests(const std::string& json);

}  // namespace cascade::test
