#pragma once
// The record of provider requests the mock received, for tests to inspect: a bounded
// log (oldest dropped first) plus counters that survive the bound and clears.
#include <array>
#include <cstdint>
#include <deque>
#include <optional>
#include <string>

#include "tools/mock_provider/provider.hpp"
#include "tools/mock_provider/rules.hpp"

namespace cascade::mock {

struct Record {
  std::uint64_t seq = 0;  // 1, 2, ... in arrival order, never reused
  Provider provider = Provider::telegram;
  Action action = Action::respond;
  std::string path;       // full target as received
  std::string token;      // credential as received
  std::string recipient;  // normalized (normalize_recipient)
  std::string text;
  std::string subject;            // postmark only
  std::string body;               // raw request body
  int status = 0;                 // status answered; 0 while pending or when dropped
  std::int64_t received_us = 0;   // unix µs when the request was fully read
  std::int64_t responded_us = 0;  // unix µs when the answer was written; 0 if none
};

class Recorder {
 public:
  explicit Recorder(std::size_t limit) : limit_(limit) {}

  // Counts the request and keeps it (dropping the oldest beyond the limit). Returns its seq.
  std::uint64_t add(Record record);
  // The kept record with this seq, or nullptr (never kept, dropped or cleared).
  Record* find(std::uint64_t seq);
  // Forgets the kept records (the counters stay). Returns how many were kept.
  std::size_t clear();

  // A JSON array of the kept records in arrival order, optionally of one provider.
  void append_json(std::string& out, std::optional<Provider> only = std::nullopt) const;
  // {"requests":N,"by_provider":{"telegram":N,...},"recorded":N,"record_limit":N}
  void append_stats(std::string& out) const;

  std::size_t size() const { return records_.size(); }
  std::uint64_t total() const { return total_; }

 private:
  std::size_t limit_;
  std::deque<Record> records_;
  std::uint64_t next_seq_ = 1;
  std::uint64_t total_ = 0;
  std::array<std::uint64_t, kProviderCount> by_provider_{};
};

}  // namespace cascade::mock
