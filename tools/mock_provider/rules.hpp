#pragma once
// Fault-injection rules: parsed from the control API's JSON, matched against provider
// requests in insertion order. Pure logic, no I/O.
#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "tools/mock_provider/provider.hpp"

namespace cascade::mock {

enum class Action {
  respond,      // answer (after delay_ms): the rule's status/body, or the normal answer
  drop_before,  // close without answering, before the request is processed (no message sent)
  drop_after,   // close without answering, after the request was processed (message "sent")
};
std::string_view action_name(Action a);

struct Rule {
  int id = 0;
  std::optional<Provider> provider;  // nullopt: "*" (every provider)
  std::string recipient;             // as given; empty: every recipient
  int status = 0;                    // 0: derived from error_code, or no fault
  std::optional<std::string> body;   // raw reply body; absent: the provider's own error body
  std::optional<std::int64_t> error_code;
  std::string description;
  int delay_ms = 0;
  int retry_after = 0;
  Action action = Action::respond;
  std::optional<std::int64_t> times;  // matches left; nullopt: unlimited
  std::int64_t matched = 0;

  // The rule's recipient in each provider's canonical form (normalize_recipient), so that
  // matching does not allocate. Filled by parse_rule / RuleSet::add.
  std::array<std::string, kProviderCount> normalized;

  bool matches(Provider p, std::string_view normalized_recipient) const;
  // True when the rule changes the answer (status, error code or body).
  bool has_fault() const { return status != 0 || error_code.has_value() || body.has_value(); }
  Fault fault() const { return Fault{status, error_code, description, retry_after}; }
};

struct RuleParse {
  std::optional<Rule> rule;
  std::string error;  // set when rule is nullopt
};

// Parses a rule from the control API's JSON (see the mock's --help for the fields).
// Unknown fields and out-of-range values are errors, so that typos are loud.
RuleParse parse_rule(std::string_view json, JsonScratch& scratch);

// The rule as JSON, with its id, matches so far and matches left.
std::string rule_json(const Rule& rule);

class RuleSet {
 public:
  // Adds a rule at the end; returns its id (ids start at 1 and are never reused).
  int add(Rule rule);
  // Removes every rule; returns how many there were.
  std::size_t clear();
  bool remove(int id);
  // The first rule in insertion order that matches. The match is counted, and a rule
  // whose `times` are used up is removed. Returns a copy: the rule may be gone.
  std::optional<Rule> match(Provider p, std::string_view normalized_recipient);
  const std::vector<Rule>& rules() const { return rules_; }

 private:
  std::vector<Rule> rules_;
  int next_id_ = 1;
};

}  // namespace cascade::mock
