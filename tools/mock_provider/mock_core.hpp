#pragma once
// The mock provider without I/O: given a request that was read, decide what to do with
// it (answer what, after how long, or drop the connection), and keep the request record
// and the fault-injection rules. The Beast server (mock_server.cpp) only moves bytes,
// waits and calls back `finished`.
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "tools/mock_provider/provider.hpp"
#include "tools/mock_provider/recorder.hpp"
#include "tools/mock_provider/rules.hpp"

namespace cascade::mock {

struct Decision {
  Action action = Action::respond;
  std::chrono::milliseconds delay{0};  // wait this long before answering or dropping
  Reply reply;                         // meaningful for Action::respond
  std::uint64_t record = 0;            // seq of the recorded request; 0: not a provider request
  std::optional<Provider> provider;    // the provider endpoint hit, if any
};

class MockCore {
 public:
  explicit MockCore(std::size_t record_limit = 1'000'000);
  ~MockCore();
  MockCore(const MockCore&) = delete;
  MockCore& operator=(const MockCore&) = delete;

  // Handles one request read at `now_us` (unix µs): a control request (/__mock/...) is
  // answered at once; a provider request is recorded, matched against the rules and
  // answered as the rule or the provider says.
  Decision handle(const HttpRequest& request, std::int64_t now_us);
  // Completes the record of a provider request: the status written at `responded_us`,
  // or status 0 / responded_us 0 when the connection was dropped or the write failed.
  void finished(std::uint64_t record, int status, std::int64_t responded_us);

  RuleSet& rules() { return rules_; }
  Recorder& recorder() { return recorder_; }

 private:
  Reply control(const HttpRequest& request, std::string_view path, std::string_view query);

  JsonScratch scratch_;
  Responder responder_;
  RuleSet rules_;
  Recorder recorder_;
};

// Content type for a raw body given in a rule: JSON when it starts with '{' or '[',
// text/html otherwise (proxies' error pages), text/plain when empty.
std::string_view sniff_content_type(std::string_view body);

}  // namespace cascade::mock
