#include "tools/mock_provider/options.hpp"

#include <arpa/inet.h>

#include <charconv>

#include "tools/mock_provider/text.hpp"

namespace cascade::mock {
namespace {

template <class T>
std::optional<T> parse_number(std::string_view text) {
  T value{};
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc{} || end != text.data() + text.size()) return std::nullopt;
  return value;
}

// Splits "host:port" / "[v6]:port" (the value of `flag`) and checks that host is a
// loopback address.
std::optional<std::string> parse_listen(std::string_view flag, std::string_view text,
                                        std::string& out_host, std::uint16_t& out_port) {
  std::string_view host, port;
  if (!text.empty() && text.front() == '[') {
    auto close = text.find(']');
    if (close == std::string_view::npos || close + 1 >= text.size() || text[close + 1] != ':')
      return cat(flag, " expects HOST:PORT, e.g. 127.0.0.1:0 or [::1]:8080");
    host = text.substr(1, close - 1);
    port = text.substr(close + 2);
  } else {
    auto colon = text.rfind(':');
    if (colon == std::string_view::npos) return cat(flag, " expects HOST:PORT, e.g. 127.0.0.1:0");
    host = text.substr(0, colon);
    port = text.substr(colon + 1);
  }
  auto number = parse_number<std::uint16_t>(port);
  if (!number) return cat(flag, ": invalid port '", port, "' (0-65535)");
  if (host == "localhost") host = "127.0.0.1";
  std::string h(host);
  in_addr v4{};
  in6_addr v6{};
  bool loopback = false;
  if (inet_pton(AF_INET, h.c_str(), &v4) == 1) {
    loopback = (ntohl(v4.s_addr) >> 24) == 127;
  } else if (inet_pton(AF_INET6, h.c_str(), &v6) == 1) {
    loopback = IN6_IS_ADDR_LOOPBACK(&v6);
  } else {
    return cat(flag, ": '", h, "' is not an IP address (use 127.0.0.1 or ::1)");
  }
  if (!loopback)
    return cat(flag, ": refusing non-loopback address ", h,
               ": the mock provider accepts any credential and is for local tests only "
               "(use 127.0.0.1 or ::1)");
  out_host = std::move(h);
  out_port = *number;
  return std::nullopt;
}

}  // namespace

OptionsParse parse_options(const std::vector<std::string_view>& args) {
  Options options;
  for (std::size_t i = 0; i < args.size(); ++i) {
    std::string_view arg = args[i];
    std::string_view value;
    bool inline_value = false;
    if (auto eq = arg.find('='); arg.substr(0, 2) == "--" && eq != std::string_view::npos) {
      value = arg.substr(eq + 1);
      arg = arg.substr(0, eq);
      inline_value = true;
    }
    auto take_value = [&]() -> std::optional<std::string_view> {
      if (inline_value) return value;
      if (i + 1 >= args.size()) return std::nullopt;
      return args[++i];
    };
    if (arg == "--help" || arg == "-h") {
      options.help = true;
    } else if (arg == "--verbose" || arg == "-v") {
      options.verbose = true;
    } else if (arg == "--exit-with-parent") {
      options.exit_with_parent = true;
    } else if (arg == "--listen") {
      auto v = take_value();
      if (!v) return {std::nullopt, "--listen needs HOST:PORT"};
      if (auto error = parse_listen("--listen", *v, options.host, options.port))
        return {std::nullopt, *error};
    } else if (arg == "--control-listen") {
      auto v = take_value();
      if (!v) return {std::nullopt, "--control-listen needs HOST:PORT"};
      std::string host;
      if (auto error = parse_listen("--control-listen", *v, host, options.control_port))
        return {std::nullopt, *error};
      options.control_host = std::move(host);
    } else if (arg == "--tls-cert" || arg == "--tls-key") {
      auto v = take_value();
      if (!v || v->empty()) return {std::nullopt, cat(arg, " needs a PEM file")};
      (arg == "--tls-cert" ? options.tls_cert : options.tls_key) = std::string(*v);
    } else if (arg == "--record-limit") {
      auto v = take_value();
      auto n = v ? parse_number<std::size_t>(*v) : std::nullopt;
      if (!n) return {std::nullopt, "--record-limit needs a non-negative integer"};
      options.record_limit = *n;
    } else {
      return {std::nullopt, cat("unknown argument '", args[i], "' (see --help)")};
    }
  }
  if (options.tls_cert.empty() != options.tls_key.empty())
    return {std::nullopt, "--tls-cert and --tls-key go together"};
  return {options, {}};
}

std::string format_address(std::string_view host, std::uint16_t port) {
  auto p = std::to_string(port);
  if (host.find(':') != std::string_view::npos) return cat("[", host, "]:", p);
  return cat(host, ":", p);
}

std::string usage() {
  return R"(Usage: cascade-mock-provider [--listen HOST:PORT] [--record-limit N] [--verbose]
                             [--tls-cert FILE --tls-key FILE] [--control-listen HOST:PORT]
                             [--exit-with-parent] [--help]

A loopback HTTP/1.1 server imitating the providers Cascade sends through (Telegram Bot API,
WAHA WhatsApp gateway, WhatsApp Cloud API, Postmark), with fault injection and a record of
every provider request, for integration tests, demos and load benchmarks.

Options:
  --listen HOST:PORT   address to listen on (default 127.0.0.1:0). HOST must be a loopback
                       address (127.x.y.z, ::1 as [::1], or localhost); anything else is
                       refused with exit status 2. PORT 0 lets the OS pick a free port.
  --record-limit N     keep at most N request records, dropping the oldest (default
                       1000000; 0 keeps none). Counters in /__mock/stats count every request.
  --verbose, -v        log one line per provider request to stderr (default: silent).
  --tls-cert FILE      serve HTTPS instead of HTTP on --listen, with this PEM certificate
  --tls-key FILE       (chain: leaf first) and PEM private key; both or neither. Clients
                       must trust the certificate's CA (cascaded --ca-file). An unreadable
                       file or a key that does not match exits with status 2.
  --control-listen HOST:PORT
                       also serve the control API (/__mock/*) over plain HTTP on a second
                       loopback address (other paths get 404 there); for test tools that
                       drive an HTTPS mock without a TLS client. The main listener keeps
                       serving /__mock/* too.
  --exit-with-parent   stop, as on SIGTERM, when the process that started this one dies
                       (Linux parent-death signal; the test fixture uses it so that a
                       crashed test leaves no server behind).
  --help, -h           print this help and exit.

Once listening it prints exactly one line to stdout, "listening on HOST:PORT", and flushes.
With TLS that line reads: listening on HOST:PORT (https)
With --control-listen a second line follows: control on HOST:PORT
SIGTERM or SIGINT stops it with exit status 0. Bad arguments exit with status 2.
One thread serves every connection; delays are timers, so they never hold up others.
Keep-alive connections idle for 120 s are closed; request bodies over 16 MiB get 413.

Provider endpoints (HTTP/1.1, keep-alive; any non-empty credential is accepted):
  POST|GET /bot<token>/sendMessage  Telegram: {chat_id, text} as JSON, form or query.
                                    200 {"ok":true,"result":{"message_id":N,...}}
  POST /api/sendText                WAHA: X-Api-Key, {session, chatId, text}.
                                    201 {"id":"true_<chatId>_<n>",...}
  POST /<version>/<id>/messages     WhatsApp Cloud API: Authorization: Bearer <token>,
                                    {"messaging_product":"whatsapp","to",...,"text":{"body"}}.
                                    200 {"messaging_product":"whatsapp","contacts":[...],
                                    "messages":[{"id":"wamid.<n>"}]}
  POST /email                       Postmark: X-Postmark-Server-Token, {From, To, Subject,
                                    TextBody, HtmlBody, MessageStream}.
                                    200 {"To",...,"MessageID","ErrorCode":0,"Message":"OK"}
  Missing credentials and invalid bodies get each provider's own error (401, 400, 422...).
  Any other path: 404 {"ok":false,"error_code":404,"description":"Not Found"}.

Control API (JSON):
  POST   /__mock/rules         add a rule, answers {"id":N}; 400 {"error":...} if invalid
  GET    /__mock/rules         the rules, with "matched" and "times_left"
  DELETE /__mock/rules         remove every rule
  DELETE /__mock/rules/<id>    remove one rule
  GET    /__mock/requests      recorded provider requests in arrival order;
                               ?provider=telegram|whatsapp|waba|postmark filters
  DELETE /__mock/requests      forget the records (the /__mock/stats counters stay)
  GET    /__mock/stats         {"requests":N,"by_provider":{...},"recorded":N,"record_limit":N}
  GET    /__mock/health        {"ok":true}

Rule fields (unknown fields are rejected):
  provider     required: telegram | whatsapp | waba | postmark | *
  recipient    optional; compared after normalizing both sides: telegram chat_id as text;
               whatsapp chatId without "@c.us" (and without '+'); waba "to" without '+';
               postmark To address, case-insensitive
  status       HTTP status (400-599; below 400 only together with body)
  body         raw answer body; Content-Type is application/json when it starts with '{'
               or '[', else text/html. Without body the provider's own error body is built
               from status / error_code / description (telegram 429 gets "Too Many
               Requests: retry after S", parameters.retry_after and Retry-After; waba the
               Graph error object; postmark ErrorCode/Message; whatsapp WAHA's bodies).
  error_code   telegram error_code, waba error.code, postmark ErrorCode; without status
               the HTTP status follows from the code
  description  error text (telegram adds the "Bad Request: "-style prefix when missing)
  delay_ms     wait before answering or dropping (0-600000; other connections go on);
               a rule with only delay_ms delays the normal answer
  retry_after  seconds, sent as Retry-After (and in telegram's parameters)
  action       respond (default) | drop_before (close without answering; the message is
               not processed) | drop_after (close without answering after the message was
               processed). Both read the whole request first (matching needs its body).
  times        the rule is removed after N matches (default: unlimited)
  The first matching rule in insertion order wins.

Request records: {"seq","provider","path","token","recipient","text","subject" (postmark),
  "status" (0 when dropped),"action","received_us","responded_us" (0 when dropped),"body"};
  times are unix microseconds.
)";
}

}  // namespace cascade::mock
