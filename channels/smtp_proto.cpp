#include "channels/smtp_proto.hpp"

#include <algorithm>
#include <cctype>

namespace cascade::smtp {
namespace {

bool ascii_digit(char c) {
  return c >= '0' && c <= '9';
}

std::string upper(std::string_view s) {
  std::string out(s);
  for (auto& c : out)
    c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return out;
}

}  // namespace

std::string Reply::text() const {
  std::string out = std::to_string(code);
  for (std::size_t i = 0; i < lines.size(); ++i) {
    out += i == 0 ? " " : "; ";
    out += lines[i];
  }
  if (out.size() > 200) out.resize(200);
  // Keep error texts printable.
  for (auto& c : out)
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) c = ' ';
  return out;
}

std::optional<Reply> ReplyParser::next() {
  while (!failed_) {
    auto eol = buffer_.find('\n');
    if (eol == std::string::npos) {
      // A line longer than any sane reply: refuse rather than buffer forever.
      if (buffer_.size() > 64 * 1024) failed_ = true;
      return std::nullopt;
    }
    std::string line = buffer_.substr(0, eol);
    buffer_.erase(0, eol + 1);
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.size() < 3 || !ascii_digit(line[0]) || !ascii_digit(line[1]) ||
        !ascii_digit(line[2]) || (line.size() > 3 && line[3] != ' ' && line[3] != '-')) {
      failed_ = true;
      return std::nullopt;
    }
    int code = (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
    if (code < 200) {
      // 1yz (and 0yz) are not SMTP replies: a protocol error.
      failed_ = true;
      return std::nullopt;
    }
    if (!partial_.lines.empty() && partial_.code != code) {
      failed_ = true;
      return std::nullopt;
    }
    partial_.code = code;
    partial_.lines.push_back(line.size() > 4 ? line.substr(4) : std::string());
    bool more = line.size() > 3 && line[3] == '-';
    if (!more) {
      Reply done = std::move(partial_);
      partial_ = {};
      return done;
    }
    if (partial_.lines.size() > 1000) failed_ = true;
  }
  return std::nullopt;
}

Capabilities parse_ehlo(const Reply& reply) {
  Capabilities caps;
  for (std::size_t i = 1; i < reply.lines.size(); ++i) {  // line 0 is the greeting
    auto l = upper(reply.lines[i]);
    if (l == "STARTTLS") caps.starttls = true;
    if (l == "8BITMIME") caps.eightbitmime = true;
    if (l == "SMTPUTF8") caps.smtputf8 = true;
    if (l.rfind("SIZE", 0) == 0 && l.size() > 5) {
      std::uint64_t n = 0;
      for (char c : std::string_view(l).substr(5)) {
        if (!ascii_digit(c)) break;
        n = n * 10 + static_cast<std::uint64_t>(c - '0');
      }
      caps.size = n;
    }
    if (l.rfind("AUTH", 0) == 0 && l.size() > 4 && (l[4] == ' ' || l[4] == '=')) {
      std::string_view rest = std::string_view(l).substr(5);
      std::size_t pos = 0;
      while (pos < rest.size()) {
        auto end = rest.find(' ', pos);
        if (end == std::string_view::npos) end = rest.size();
        auto mech = rest.substr(pos, end - pos);
        if (mech == "PLAIN") caps.auth_plain = true;
        if (mech == "LOGIN") caps.auth_login = true;
        pos = end + 1;
      }
    }
  }
  return caps;
}

std::string_view stage_name(Stage stage) {
  switch (stage) {
    case Stage::greeting:
      return "greeting";
    case Stage::ehlo:
      return "EHLO";
    case Stage::starttls:
      return "STARTTLS";
    case Stage::auth:
      return "AUTH";
    case Stage::mail:
      return "MAIL FROM";
    case Stage::rcpt:
      return "RCPT";
    case Stage::data:
      return "DATA";
    case Stage::body:
      return "message";
    case Stage::rset:
      return "RSET";
  }
  return "?";
}

bool is_success(Stage stage, const Reply& reply) {
  switch (stage) {
    case Stage::data:
      return reply.code == 354;
    case Stage::auth:
      return reply.code == 235 || reply.code == 334;
    case Stage::greeting:
      return reply.code == 220;
    case Stage::starttls:
      return reply.code == 220;
    default:
      return reply.klass() == 2;
  }
}

Outcome classify(Stage stage, const Reply& reply) {
  using Cause = Outcome::Cause;
  std::string why = "smtp " + std::string(stage_name(stage)) + " rejected: " + reply.text();
  if (reply.klass() == 2 || reply.klass() == 3) {
    // A success code where another was expected: the dialogue is out of step.
    return Outcome::transient(
        "smtp " + std::string(stage_name(stage)) + " unexpected reply: " + reply.text(),
        Cause::provider);
  }
  // 421 closing, 450/451/452 busy, greylisted, local error, 454 TLS or auth unavailable
  // (or throttling), 455: all worth another try.
  if (reply.klass() == 4) return Outcome::transient(std::move(why), Cause::provider);
  if (reply.klass() != 5) return Outcome::transient(std::move(why), Cause::provider);
  switch (reply.code) {
    case 550:
    case 551:
    case 553:
    case 521:
    case 556:
      return Outcome::permanent(std::move(why), Cause::recipient);
    case 552:
      // "Too many recipients" on RCPT is a 452 in disguise (RFC 5321 §4.5.3.1.10).
      if (stage == Stage::rcpt) return Outcome::transient(std::move(why), Cause::provider);
      return Outcome::permanent(std::move(why), Cause::content);
    case 554:
      if (stage == Stage::body || stage == Stage::data)
        return Outcome::permanent(std::move(why), Cause::content);
      return Outcome::permanent(std::move(why),
                                stage == Stage::rcpt ? Cause::recipient : Cause::config);
    default:
      return Outcome::permanent(std::move(why), Cause::config);
  }
}

std::string dot_stuff(std::string_view message) {
  std::string out;
  out.reserve(message.size() + message.size() / 40 + 8);
  bool line_start = true;
  for (std::size_t i = 0; i < message.size(); ++i) {
    char c = message[i];
    if (c == '\r') {
      // CR alone or CRLF: one CRLF.
      if (i + 1 < message.size() && message[i + 1] == '\n') ++i;
      out += "\r\n";
      line_start = true;
      continue;
    }
    if (c == '\n') {
      out += "\r\n";
      line_start = true;
      continue;
    }
    if (line_start && c == '.') out.push_back('.');
    out.push_back(c);
    line_start = false;
  }
  if (!line_start) out += "\r\n";
  out += ".\r\n";
  return out;
}

std::string base64(std::string_view bytes) {
  static constexpr char table[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  std::size_t i = 0;
  for (; i + 2 < bytes.size(); i += 3) {
    std::uint32_t v = (static_cast<unsigned char>(bytes[i]) << 16) |
                      (static_cast<unsigned char>(bytes[i + 1]) << 8) |
                      static_cast<unsigned char>(bytes[i + 2]);
    out.push_back(table[(v >> 18) & 63]);
    out.push_back(table[(v >> 12) & 63]);
    out.push_back(table[(v >> 6) & 63]);
    out.push_back(table[v & 63]);
  }
  if (i < bytes.size()) {
    std::uint32_t v = static_cast<unsigned char>(bytes[i]) << 16;
    if (i + 1 < bytes.size()) v |= static_cast<unsigned char>(bytes[i + 1]) << 8;
    out.push_back(table[(v >> 18) & 63]);
    out.push_back(table[(v >> 12) & 63]);
    out.push_back(i + 1 < bytes.size() ? table[(v >> 6) & 63] : '=');
    out.push_back('=');
  }
  return out;
}

std::string auth_plain(std::string_view user, std::string_view pass) {
  std::string raw;
  raw.push_back('\0');
  raw.append(user);
  raw.push_back('\0');
  raw.append(pass);
  return base64(raw);
}

std::string encode_header(std::string_view value) {
  bool plain = value.size() <= 900;
  for (char c : value) {
    auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u >= 0x7f) plain = false;
  }
  if (plain) return std::string(value);
  // Encoded words of at most 45 input bytes (60 base64 chars; a word stays under 75),
  // cut only at UTF-8 character starts.
  std::string out;
  std::size_t pos = 0;
  while (pos < value.size()) {
    std::size_t end = std::min(value.size(), pos + 45);
    while (end < value.size() && end > pos + 1 &&
           (static_cast<unsigned char>(value[end]) & 0xC0) == 0x80)
      --end;
    std::string chunk(value.substr(pos, end - pos));
    // Control characters (line breaks) never belong in a header.
    for (auto& c : chunk)
      if (c == '\r' || c == '\n' || c == '\t') c = ' ';
    if (!out.empty()) out += "\r\n ";
    out += "=?UTF-8?B?" + base64(chunk) + "?=";
    pos = end;
  }
  return out;
}

std::string quoted_printable(std::string_view text) {
  static constexpr char hex[] = "0123456789ABCDEF";
  std::string out;
  std::size_t col = 0;
  auto put = [&](std::string_view piece) {
    if (col + piece.size() > 75) {
      out += "=\r\n";
      col = 0;
    }
    out.append(piece);
    col += piece.size();
  };
  for (std::size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (c == '\r' || c == '\n') {
      if (c == '\r' && i + 1 < text.size() && text[i + 1] == '\n') ++i;
      // Trailing white space before a line break must be encoded.
      if (!out.empty() && (out.back() == ' ' || out.back() == '\t')) {
        char last = out.back();
        out.pop_back();
        --col;
        char enc[3] = {'=', hex[(static_cast<unsigned char>(last) >> 4) & 15],
                       hex[static_cast<unsigned char>(last) & 15]};
        put(std::string_view(enc, 3));
      }
      out += "\r\n";
      col = 0;
      continue;
    }
    auto u = static_cast<unsigned char>(c);
    if ((u >= 33 && u <= 126 && c != '=') || c == ' ' || c == '\t') {
      put(std::string_view(&c, 1));
    } else {
      char enc[3] = {'=', hex[u >> 4], hex[u & 15]};
      put(std::string_view(enc, 3));
    }
  }
  if (!out.empty() && (out.back() == ' ' || out.back() == '\t')) out += "=\r\n";
  return out;
}

bool valid_address(std::string_view a) {
  auto at = a.find('@');
  if (at == std::string_view::npos || at == 0 || at + 1 >= a.size()) return false;
  if (a.find('@', at + 1) != std::string_view::npos) return false;
  if (a.size() > 320) return false;
  for (char c : a) {
    auto u = static_cast<unsigned char>(c);
    if (u <= 0x20 || u == 0x7f || c == '<' || c == '>' || c == '"' || c == ',' || c == ';' ||
        c == '(' || c == ')' || c == '\\')
      return false;
  }
  return true;
}

bool is_ascii(std::string_view s) {
  for (char c : s)
    if (static_cast<unsigned char>(c) >= 0x80) return false;
  return true;
}

std::string_view address_domain(std::string_view address) {
  auto at = address.rfind('@');
  if (at == std::string_view::npos || at + 1 >= address.size()) return "localhost";
  return address.substr(at + 1);
}

std::string message_id(std::string_view job_id, std::string_view channel_key,
                       std::string_view domain) {
  // Built by appending into one string: g++ 12 at -O2/-O3 reports `"<" + std::string&&`
  // (an insert at position 0) as an overlapping memcpy (-Wrestrict), a false positive.
  std::string id;
  id.reserve(job_id.size() + channel_key.size() + domain.size() + 4);
  auto append_safe = [&id](std::string_view s) {
    for (char c : s)
      id += (std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.') ? c : '_';
  };
  id += '<';
  append_safe(job_id);
  if (!channel_key.empty()) {
    id += '.';
    append_safe(channel_key);
  }
  id += '@';
  append_safe(domain);
  id += '>';
  return id;
}

std::string rfc5322_date(std::time_t t) {
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[64];
  auto n = std::strftime(buf, sizeof buf, "%a, %d %b %Y %H:%M:%S +0000", &tm);
  return std::string(buf, n);
}

std::string build_mime(const MimeMessage& m) {
  std::string out;
  out.reserve(512 + m.text.size() * 2 + m.html.size() * 2);
  out += "From: " + m.from + "\r\n";
  out += "To: " + m.to + "\r\n";
  out += "Subject: " + encode_header(m.subject) + "\r\n";
  out += "Date: " + rfc5322_date(m.date) + "\r\n";
  out += "Message-ID: " + m.message_id + "\r\n";
  out += "MIME-Version: 1.0\r\n";
  auto part = [](std::string_view type, std::string_view body) {
    std::string p = "Content-Type: " + std::string(type) + "; charset=UTF-8\r\n";
    p += "Content-Transfer-Encoding: quoted-printable\r\n\r\n";
    p += quoted_printable(body);
    if (p.size() < 2 || p.compare(p.size() - 2, 2, "\r\n") != 0) p += "\r\n";
    return p;
  };
  if (m.html.empty()) {
    out += part("text/plain", m.text);
    return out;
  }
  out += "Content-Type: multipart/alternative; boundary=\"" + m.boundary + "\"\r\n\r\n";
  out += "--" + m.boundary + "\r\n";
  out += part("text/plain", m.text);
  out += "--" + m.boundary + "\r\n";
  out += part("text/html", m.html);
  out += "--" + m.boundary + "--\r\n";
  return out;
}

}  // namespace cascade::smtp
