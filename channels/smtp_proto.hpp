#pragma once
// The sans-IO half of the SMTP provider (RFC 5321, 3207, 4954, 2045-2047): reply parsing,
// EHLO capabilities, reply -> Outcome classification, dot-stuffing, the MIME message.
// Pure: no sockets, no clocks (the Date is passed in), so every part is unit tested.
#include <cstdint>
#include <ctime>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "channels/outcome.hpp"

namespace cascade::smtp {

// One (possibly multi-line) server reply: "250-a\r\n250 b\r\n" -> {250, {"a", "b"}}.
struct Reply {
  int code = 0;
  std::vector<std::string> lines;  // text after "NNN-" / "NNN " on each line
  // Lines joined with "; ", for error texts (trimmed to a sane length).
  std::string text() const;
  int klass() const { return code / 100; }
};

// Incremental reply parser: feed() what the socket gave, then take replies with next().
class ReplyParser {
 public:
  void feed(std::string_view bytes) { buffer_.append(bytes); }
  // A complete reply, or nullopt when more bytes are needed (or on a protocol error:
  // then failed() is true and the connection must be dropped).
  std::optional<Reply> next();
  bool failed() const { return failed_; }
  // Bytes received but not yet consumed (must be empty before a TLS upgrade).
  bool has_pending() const { return !buffer_.empty(); }
  void clear() {
    buffer_.clear();
    partial_ = {};
    failed_ = false;
  }

 private:
  std::string buffer_;
  Reply partial_;
  bool failed_ = false;
};

// What EHLO said the server supports.
struct Capabilities {
  bool starttls = false;
  bool auth_plain = false;
  bool auth_login = false;
  bool eightbitmime = false;
  bool smtputf8 = false;
  std::uint64_t size = 0;  // 0: not announced
};
Capabilities parse_ehlo(const Reply& reply);

// The step of the dialogue a reply answers; classification depends on it (552 on RCPT).
enum class Stage { greeting, ehlo, starttls, auth, mail, rcpt, data, body, rset };
std::string_view stage_name(Stage stage);

// The reply code each stage expects for success (2yz, or 3yz for DATA / AUTH steps).
bool is_success(Stage stage, const Reply& reply);

// A non-success reply as an Outcome, per the reference table: 4yz transient (552 on RCPT
// too), 535/530/534/538 and 500-504/555 permanent config, 550/551/553/521/556 permanent
// recipient, 552 (after DATA)/554 permanent content. The error text names the stage and
// code, e.g. "smtp RCPT rejected: 550 5.1.1 User unknown".
Outcome classify(Stage stage, const Reply& reply);

// The final dot-stuffed DATA payload: line endings normalised to CRLF, a '.' starting a
// line doubled, and the terminating "\r\n.\r\n" appended.
std::string dot_stuff(std::string_view message);

std::string base64(std::string_view bytes);
// "\0user\0pass" in base64 (AUTH PLAIN, RFC 4616).
std::string auth_plain(std::string_view user, std::string_view pass);

// An RFC 2047 encoded header value: ASCII printable text stays as it is; anything else
// becomes "=?UTF-8?B?...?=" words (never splitting a UTF-8 character), folded with
// "\r\n " between words.
std::string encode_header(std::string_view value);

// Quoted-printable body (RFC 2045 §6.7) with CRLF line breaks; '.' stays literal.
std::string quoted_printable(std::string_view text);

// True for a plain address usable in MAIL FROM / RCPT TO and headers: one '@', no
// spaces, angle brackets, quotes, commas, semicolons or control characters.
bool valid_address(std::string_view address);

// True when every byte is 7-bit ASCII.
bool is_ascii(std::string_view s);

// The domain of an address ("a@b.example" -> "b.example"), "localhost" when none.
std::string_view address_domain(std::string_view address);

// "<job.key@domain>": stable for one job and channel key, so a re-send of the same job
// has the same Message-ID (receivers can de-duplicate). Unsafe characters become '_'.
std::string message_id(std::string_view job_id, std::string_view channel_key,
                       std::string_view domain);

// "Tue, 25 Nov 2026 12:00:00 +0000"
std::string rfc5322_date(std::time_t t);

struct MimeMessage {
  std::string from;
  std::string to;
  std::string subject;  // raw UTF-8
  std::string text;
  std::string html;  // empty: text/plain only, else multipart/alternative
  std::string message_id;
  std::time_t date = 0;
  std::string boundary;  // multipart boundary (callers pass something unique)
};
// The message (headers + body) with CRLF line endings, not yet dot-stuffed.
std::string build_mime(const MimeMessage& m);

}  // namespace cascade::smtp
