#include "engine/result.hpp"

#include <simdjson.h>

#include "util/json.hpp"

namespace cascade {

Result Result::rejected(std::string id, int status, std::string error, std::string field) {
  Result r;
  r.id = std::move(id);
  r.status = status;
  r.state = "rejected";
  r.error = std::move(error);
  r.field = std::move(field);
  return r;
}

std::string Result::attempts_json() const {
  std::string arr = prior_attempts_json;
  for (std::size_t i = 0; i < attempts.size(); ++i) {
    const auto& a = attempts[i];
    if (!arr.empty()) arr += ',';
    json::ObjectWriter aw(arr);
    if (a.job_attempt > 0) aw.field("job_attempt", a.job_attempt);
    aw.field("channel", a.channel).field("tier", a.tier).field("ok", a.ok);
    if (a.ok) {
      if (!a.provider_id.empty()) aw.field("provider_id", a.provider_id);
    } else {
      aw.field("error", a.error).field("retryable", a.retryable);
      if (a.unknown) aw.field("outcome_unknown", true);
    }
    aw.field("tries", a.tries);
    std::string ms;
    json::append_ms(ms, a.ms);
    aw.raw("ms", ms);
    aw.close();
  }
  return arr;
}

std::string Result::to_json() const {
  std::string out;
  out.reserve(256 + attempts.size() * 128 + metadata_json.size());
  json::ObjectWriter w(out);
  w.field("id", id).field("status", status).field("state", state);
  if (!account.empty()) w.field("account", account);
  if (!error.empty()) w.field("error", error);
  if (!field.empty()) w.field("field", field);
  if (status == 429) w.field("retryAfter", retry_after);
  if (!duplicate_of.empty()) w.field("duplicate_of", duplicate_of);
  if (state == "delivered" || state == "failed" || !attempts.empty() ||
      !prior_attempts_json.empty()) {
    std::string via = "[";
    for (std::size_t i = 0; i < delivered_via.size(); ++i) {
      if (i) via += ',';
      json::append_string(via, delivered_via[i]);
    }
    via += ']';
    w.raw("delivered_via", via);
    std::string attempts_array = "[";
    attempts_array.append(attempts_json()).append("]");
    w.raw("attempts", attempts_array);
  }
  w.field("job_attempt", job_attempt);
  if (!next_attempt_at.empty()) w.field("next_attempt_at", next_attempt_at);
  if (!metadata_json.empty()) w.raw("metadata", metadata_json);
  w.field("finished_at", finished_at);
  w.close();
  return out;
}

std::optional<std::string> result_state(std::string_view json) {
  return result_string(json, "state");
}

std::optional<std::string> result_string(std::string_view json, std::string_view field) {
  simdjson::ondemand::parser parser;
  simdjson::padded_string padded(json);
  simdjson::ondemand::document doc;
  if (parser.iterate(padded).get(doc)) return std::nullopt;
  simdjson::ondemand::object obj;
  if (doc.get_object().get(obj)) return std::nullopt;
  std::string_view value;
  if (obj[field].get_string().get(value)) return std::nullopt;
  return std::string(value);
}

}  // namespace cascade
