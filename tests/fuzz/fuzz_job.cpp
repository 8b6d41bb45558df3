// libFuzzer target: the job body parser must never crash, hang or accept a body that
// breaks the invariants the cascade relies on.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "engine/job.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view body(reinterpret_cast<const char*>(data), size);
  auto parsed = cascade::parse_job(body);
  if (auto* job = std::get_if<cascade::Job>(&parsed)) {
    if (job->channels.empty() || job->message.text.empty()) std::abort();
    for (const auto& use : job->channels) {
      if (use.token.empty()) std::abort();
      if (use.tier() < 0 || use.tier() > 100) std::abort();
      if (job->recipient_for(use.channel).empty()) std::abort();
    }
    if (job->metadata_json.size() > 4096) std::abort();
  } else {
    const auto& err = std::get<cascade::JobError>(parsed);
    if (err.reason.empty()) std::abort();
  }
  return 0;
}
