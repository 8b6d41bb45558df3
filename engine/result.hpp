#pragma once
// The result record of SPEC §4 and its JSON form. Pure.
#include <optional>
#include <string>
#include <vector>

#include "channels/outcome.hpp"

namespace cascade {

// One channel's part in a job: all its tries inside its tier.
struct Attempt {
  std::string channel;
  int tier = 0;
  bool ok = false;
  std::string provider_id;
  std::string error;
  bool retryable = false;
  bool unknown = false;  // last try's outcome unknown (request written, no reply)
  int tries = 0;
  double ms = 0;
  int job_attempt = 0;  // which job attempt made it; set (and shown) once a job is retried
};

struct Result {
  std::string id;
  int status = 0;     // 200 delivered, 502 failed, 4xx rejected, 409 duplicate
  std::string state;  // delivered | failed | rejected | duplicate | retrying
  std::string account;
  std::vector<std::string> delivered_via;
  std::vector<Attempt> attempts;
  int job_attempt = 1;
  std::string error;
  std::string field;
  int retry_after = 0;
  std::string metadata_json;
  std::string duplicate_of;     // state duplicate: the job that claimed the idempotency key
  std::string next_attempt_at;  // state retrying: ISO 8601 UTC of the next job attempt
  // Attempts of earlier job attempts, as JSON objects joined by ',': shown before `attempts`.
  std::string prior_attempts_json;
  std::string finished_at;  // ISO 8601 UTC

  static Result rejected(std::string id, int status, std::string error, std::string field = {});
  std::string to_json() const;
  // Every attempt (prior ones first) as JSON objects joined by ',', without brackets.
  std::string attempts_json() const;
};

// The `state` of a result record read as JSON (never by substring: a metadata value may
// hold any text). nullopt when `json` is not a JSON object with a string `state`.
std::optional<std::string> result_state(std::string_view json);
// Any top-level string field of a result record ("account", "state", ...), read as JSON.
std::optional<std::string> result_string(std::string_view json, std::string_view field);

}  // namespace cascade
