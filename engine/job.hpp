#pragma once
// The send request of SPEC §1, parsed and validated. Pure: no I/O.
#include <cstddef>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "channels/channel.hpp"

namespace cascade {

// One entry of "keys": a channel used by the job.
struct ChannelUse {
  std::string channel;  // "whatsapp" | "waba" | "telegram" | "email"
  std::string token;    // the channel key (ck_...) — a secret
  bool fallback = false;
  int fallback_sequence = 0;  // 0 when fallback is false, else 1..100
  // Tier of SPEC §3: 0 for primaries, fallback_sequence for fallbacks.
  int tier() const { return fallback ? fallback_sequence : 0; }
};

struct Recipients {
  std::string phone;     // E.164, "+33612345678"
  std::string telegram;  // chat id or @username
  std::string email;
};

struct Job {
  std::vector<ChannelUse> channels;  // in body order
  Recipients to;
  Message message;            // subject defaulted from text when absent
  std::string metadata_json;  // raw JSON object text, empty when absent

  // The recipient this channel sends to.
  const std::string& recipient_for(std::string_view channel) const;
};

// A body violation: becomes a 400 "Invalid request: <reason>" with "field": <field>.
// `reason` is a self-contained sentence that starts with the offending JSON path (or "body"),
// e.g. "keys.telegram.fallback_sequence must be an integer from 1 to 100".
struct JobError {
  std::string field;   // JSON path, e.g. "keys.telegram.fallback_sequence"; "" for the whole body
  std::string reason;  // e.g. "keys.telegram.fallback_sequence must be an integer from 1 to 100"
  // True when the body is not a JSON object at all (empty, not UTF-8, not JSON, a JSON
  // array/scalar): SPEC §4 "cannot be read at all", also copied to <prefix>:dead. False for
  // every other violation, including an oversized body (never parsed).
  bool unreadable = false;

  // The result's `error` text: "Invalid request: <reason>".
  std::string message() const { return "Invalid request: " + reason; }
};

struct JobLimits {
  std::size_t max_body_bytes = 64 * 1024;
  std::size_t max_metadata_bytes = 4 * 1024;
  std::size_t max_text_chars = 4096;
};

// Validates every rule of SPEC §1.1 and returns the Job or the first violation.
// Strict: unknown fields (at any level except inside `metadata`), duplicate keys, `null` in
// place of a value and wrong JSON types are all violations. A syntax error anywhere in the
// body (within 256 levels of nesting) wins over a rule violation found before it. An empty
// `message.subject` counts as absent (defaulted from the text). Thread-safe (one simdjson
// parser per thread).
std::variant<Job, JobError> parse_job(std::string_view body, const JobLimits& limits = {});

}  // namespace cascade
