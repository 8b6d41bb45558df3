#include "tools/mock_provider/recorder.hpp"

#include "util/json.hpp"

namespace cascade::mock {

std::uint64_t Recorder::add(Record record) {
  record.seq = next_seq_++;
  ++total_;
  ++by_provider_[static_cast<std::size_t>(record.provider)];
  if (limit_ == 0) return record.seq;
  if (records_.size() >= limit_) records_.pop_front();
  records_.push_back(std::move(record));
  return records_.back().seq;
}

Record* Recorder::find(std::uint64_t seq) {
  // Kept records have consecutive seqs, so the position is arithmetic.
  if (records_.empty() || seq < records_.front().seq) return nullptr;
  auto index = seq - records_.front().seq;
  if (index >= records_.size()) return nullptr;
  return &records_[index];
}

std::size_t Recorder::clear() {
  auto n = records_.size();
  records_.clear();
  return n;
}

void Recorder::append_json(std::string& out, std::optional<Provider> only) const {
  out.reserve(out.size() + records_.size() * 320);
  out.push_back('[');
  bool first = true;
  for (const auto& r : records_) {
    if (only && r.provider != *only) continue;
    if (!first) out.push_back(',');
    first = false;
    json::ObjectWriter w(out);
    w.field("seq", static_cast<std::int64_t>(r.seq))
        .field("provider", provider_name(r.provider))
        .field("path", r.path)
        .field("token", r.token)
        .field("recipient", r.recipient)
        .field("text", r.text);
    if (r.provider == Provider::postmark) w.field("subject", r.subject);
    w.field("status", r.status)
        .field("action", action_name(r.action))
        .field("received_us", r.received_us)
        .field("responded_us", r.responded_us)
        .field("body", r.body)
        .close();
  }
  out.push_back(']');
}

void Recorder::append_stats(std::string& out) const {
  std::string by;
  json::ObjectWriter p(by);
  for (auto provider : kAllProviders)
    p.field(provider_name(provider),
            static_cast<std::int64_t>(by_provider_[static_cast<std::size_t>(provider)]));
  p.close();
  json::ObjectWriter(out)
      .field("requests", static_cast<std::int64_t>(total_))
      .raw("by_provider", by)
      .field("recorded", static_cast<std::int64_t>(records_.size()))
      .field("record_limit", static_cast<std::int64_t>(limit_))
      .close();
}

}  // namespace cascade::mock
