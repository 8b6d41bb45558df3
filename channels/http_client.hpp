#pragma once
// An HTTP/1.1 client with keep-alive connection pools per (scheme, host, port).
// Beast lives in http_client.cpp only: this header stays light.
//
// Threading: single-threaded. One HttpClient belongs to one io_context that is run by one
// thread (or to one strand); send() and every other member must be called from it. There
// are no locks inside.
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>

#include <chrono>
#include <cstddef>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "util/url.hpp"

namespace cascade {

struct HttpRequest {
  std::string method = "POST";
  Url url;             // scheme/host/port; url.path is ignored
  std::string target;  // path and query to send, e.g. "/bot123:abc/sendMessage" (secret!)
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  std::string content_type = "application/json";
  std::chrono::steady_clock::time_point deadline;
  // Caps the requests in flight (waiting for a connection or using one) that carry the
  // same non-empty cap_key at max_in_flight; further ones wait in FIFO order before they
  // join the origin's queue, so that one key (the adapters use the channel key id) cannot
  // hold the whole pool. max_in_flight 0: no cap.
  std::string cap_key;
  std::size_t max_in_flight = 0;
};

struct HttpResponse {
  enum class Error {
    none,
    connect,    // could not connect (refused, unreachable, TLS handshake)
    timeout,    // deadline passed
    io,         // connection broke
    too_large,  // response over the size limit
    cancelled,  // the caller cancelled the operation (per-operation cancellation)
  };
  Error error = Error::none;
  // When error != none: whether the whole request had been written before it failed
  // (then the server may have acted on it).
  bool request_written = false;
  int status = 0;
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;  // lower-case names
  std::string error_text;  // describes the error; never includes the target

  // Value of the first header with that name (case-insensitive), "" when absent.
  std::string header(std::string_view name) const;
};

struct HttpClientConfig {
  // Open connections (in use, being opened, idle) per origin; further requests wait in
  // FIFO order. HTTP/1.1 carries one request at a time per connection, so an origin's
  // throughput is at most this many requests per round trip: 4096 at 1 s is 4096/s. The
  // engine sets it to its concurrency (EngineConfig::http_max_per_host) so that the pool
  // never binds before the engine's own limit; lower it for a provider that objects.
  std::size_t max_connections_per_host = 4096;
  // Idle connections kept per origin (beyond it the least recently used is closed). As
  // many as may be open: under steady load each connection comes back between two
  // requests, and closing it would only mean opening (and handshaking) another.
  std::size_t max_idle_per_host = 4096;
  // New connections per second per origin: a token bucket `connect_burst` deep. A request
  // that needs a new connection beyond it waits in the origin's FIFO and takes whichever
  // comes first, a token or a connection freed by another request. Bounds the SYN (and
  // TLS handshake) storm a provider sees when thousands of requests start at once: 10,000
  // at 2000/s open over 5 s while the first connections already carry requests. 0: no bound.
  double connect_rate = 2000;
  std::size_t connect_burst = 200;
  // Response header + body limit; a bigger response fails with Error::too_large.
  std::size_t max_response_bytes = 1 << 20;
  // Idle pooled connections are closed after this long.
  std::chrono::milliseconds idle_timeout{30'000};
  // Used when a request has no deadline (HttpRequest::deadline left default).
  std::chrono::milliseconds default_timeout{30'000};
  // Extra trust anchors (PEM file) besides the system CA store; for private CAs and tests.
  // The constructor throws std::invalid_argument when it cannot be loaded.
  std::string ca_file;
};

class HttpClient {
 public:
  HttpClient(boost::asio::any_io_executor ex, HttpClientConfig config = {});
  ~HttpClient();
  HttpClient(const HttpClient&) = delete;
  HttpClient& operator=(const HttpClient&) = delete;

  // Never throws for network errors: they come back in HttpResponse::error. Cancellation
  // (terminal) is supported at every step and comes back as Error::cancelled; the
  // connection in use is then closed, never pooled. A pooled connection the server had
  // closed (error on write, or EOF/reset before any response byte) is replaced by a fresh
  // one and the request sent again, once.
  boost::asio::awaitable<HttpResponse> send(HttpRequest request);

  // Idle connections currently pooled (for tests that check reuse and leaks).
  std::size_t idle_connections() const;
  // Connections opened since construction (for tests that check keep-alive reuse).
  std::size_t connections_opened() const;
  // Open connections (in use, being opened, idle) to all origins.
  std::size_t open_connections() const;
  void close_all();

 private:
  struct Impl;
  std::shared_ptr<Impl> impl_;
};

}  // namespace cascade
