#include "tools/mock_provider/rules.hpp"

#include <algorithm>

#include "tools/mock_provider/json_read.hpp"
#include "tools/mock_provider/text.hpp"
#include "util/json.hpp"

namespace cascade::mock {
namespace {

constexpr std::int64_t kMaxDelayMs = 10 * 60 * 1000;
constexpr std::int64_t kMaxRetryAfter = 24 * 60 * 60;

std::optional<Action> parse_action(std::string_view name) {
  if (name == "respond") return Action::respond;
  if (name == "drop_before") return Action::drop_before;
  if (name == "drop_after") return Action::drop_after;
  return std::nullopt;
}

void normalize(Rule& rule) {
  for (auto p : kAllProviders)
    rule.normalized[static_cast<std::size_t>(p)] = normalize_recipient(p, rule.recipient);
}

}  // namespace

std::string_view action_name(Action a) {
  switch (a) {
    case Action::respond:
      return "respond";
    case Action::drop_before:
      return "drop_before";
    case Action::drop_after:
      return "drop_after";
  }
  return "respond";
}

bool Rule::matches(Provider p, std::string_view normalized_recipient) const {
  if (provider && *provider != p) return false;
  if (recipient.empty()) return true;
  return normalized[static_cast<std::size_t>(p)] == normalized_recipient;
}

RuleParse parse_rule(std::string_view text, JsonScratch& scratch) {
  Rule rule;
  std::string error;
  bool have_provider = false;
  auto fail = [&](std::string message) {
    if (error.empty()) error = std::move(message);
    return false;
  };
  // An integer field within [lo, hi].
  auto integer = [&](std::string_view key, simdjson::ondemand::value& v, std::int64_t lo,
                     std::int64_t hi) -> std::optional<std::int64_t> {
    auto n = detail::integer(v);
    if (!n || *n < lo || *n > hi) {
      fail(cat("\"", key, "\" must be an integer from ", std::to_string(lo), " to ",
               std::to_string(hi)));
      return std::nullopt;
    }
    return n;
  };
  auto string = [&](std::string_view key, simdjson::ondemand::value& v, std::string& out) -> bool {
    auto kind = detail::scalar_text(v, out);
    if (kind != detail::Kind::string) return fail(cat("\"", key, "\" must be a string"));
    return true;
  };
  bool parsed = detail::for_each_member(
      scratch, text, [&](std::string_view key, simdjson::ondemand::value& v) -> bool {
        if (key == "provider") {
          std::string name;
          if (!string(key, v, name)) return false;
          have_provider = true;
          if (name == "*") return true;
          rule.provider = parse_provider(name);
          if (!rule.provider)
            return fail(cat("unknown provider \"", name,
                            "\" (expected telegram, whatsapp, waba, postmark or *)"));
          return true;
        }
        if (key == "recipient") {
          // A telegram chat id may be given as a number.
          auto kind = detail::scalar_text(v, rule.recipient);
          if (kind != detail::Kind::string && kind != detail::Kind::number)
            return fail("\"recipient\" must be a string");
          return true;
        }
        if (key == "status") {
          auto n = integer(key, v, 100, 599);
          if (n) rule.status = static_cast<int>(*n);
          return n.has_value();
        }
        if (key == "body") {
          std::string body;
          if (!string(key, v, body)) return false;
          rule.body = std::move(body);
          return true;
        }
        if (key == "error_code") {
          auto n = integer(key, v, 0, std::int64_t{1} << 40);
          if (n) rule.error_code = *n;
          return n.has_value();
        }
        if (key == "description") return string(key, v, rule.description);
        if (key == "delay_ms") {
          auto n = integer(key, v, 0, kMaxDelayMs);
          if (n) rule.delay_ms = static_cast<int>(*n);
          return n.has_value();
        }
        if (key == "retry_after") {
          auto n = integer(key, v, 0, kMaxRetryAfter);
          if (n) rule.retry_after = static_cast<int>(*n);
          return n.has_value();
        }
        if (key == "action") {
          std::string name;
          if (!string(key, v, name)) return false;
          auto action = parse_action(name);
          if (!action)
            return fail(
                cat("unknown action \"", name, "\" (expected respond, drop_before or drop_after)"));
          rule.action = *action;
          return true;
        }
        if (key == "times") {
          auto n = integer(key, v, 1, std::int64_t{1} << 53);
          if (n) rule.times = *n;
          return n.has_value();
        }
        return fail(cat("unknown field \"", key, "\""));
      });
  if (!parsed) return {std::nullopt, error.empty() ? "the rule must be a JSON object" : error};
  if (!have_provider)
    return {std::nullopt, "\"provider\" is required (telegram, whatsapp, waba, postmark or *)"};
  if (rule.action != Action::respond && (rule.status || rule.body || rule.error_code))
    return {std::nullopt, "a drop action sends no answer: it takes no status, body or error_code"};
  if (rule.status && rule.status < 400 && !rule.body)
    return {std::nullopt,
            "a status below 400 needs a \"body\" (the mock only builds error bodies)"};
  normalize(rule);
  return {std::move(rule), {}};
}

std::string rule_json(const Rule& rule) {
  std::string out;
  json::ObjectWriter w(out);
  w.field("id", rule.id);
  w.field("provider", rule.provider ? provider_name(*rule.provider) : std::string_view("*"));
  if (!rule.recipient.empty()) w.field("recipient", rule.recipient);
  if (rule.status) w.field("status", rule.status);
  if (rule.body) w.field("body", *rule.body);
  if (rule.error_code) w.field("error_code", *rule.error_code);
  if (!rule.description.empty()) w.field("description", rule.description);
  if (rule.delay_ms) w.field("delay_ms", rule.delay_ms);
  if (rule.retry_after) w.field("retry_after", rule.retry_after);
  w.field("action", action_name(rule.action));
  if (rule.times) w.field("times_left", *rule.times);
  w.field("matched", rule.matched);
  w.close();
  return out;
}

int RuleSet::add(Rule rule) {
  rule.id = next_id_++;
  normalize(rule);
  rules_.push_back(std::move(rule));
  return rules_.back().id;
}

std::size_t RuleSet::clear() {
  auto n = rules_.size();
  rules_.clear();
  return n;
}

bool RuleSet::remove(int id) {
  auto it = std::find_if(rules_.begin(), rules_.end(), [&](const Rule& r) { return r.id == id; });
  if (it == rules_.end()) return false;
  rules_.erase(it);
  return true;
}

std::optional<Rule> RuleSet::match(Provider p, std::string_view normalized_recipient) {
  for (auto it = rules_.begin(); it != rules_.end(); ++it) {
    if (!it->matches(p, normalized_recipient)) continue;
    ++it->matched;
    if (it->times) --*it->times;
    Rule copy = *it;
    if (it->times && *it->times <= 0) rules_.erase(it);
    return copy;
  }
  return std::nullopt;
}

}  // namespace cascade::mock
