// One stream entry from pick-up to its written end: claim a resume (only with the token
// the engine wrote), recover what an earlier run left, admit, run the cascade, and hand
// the end to the writer. Usage and stats are counted once, from the returned value.
#include <spdlog/spdlog.h>

#include <algorithm>
#include <charconv>

#include "auth/key.hpp"
#include "engine/admission.hpp"
#include "engine/cascade.hpp"
#include "engine/result.hpp"
#include "engine/shard.hpp"
#include "redis/script.hpp"
#include "util/time.hpp"

namespace asio = boost::asio;

namespace cascade {
namespace {

// What the engine knows about one run of one job beyond its entry's producer fields.
struct JobRun {
  std::string entry;       // stream entry id (acked and deleted when done)
  std::string id;          // job id: the original entry id, across retries
  int attempt = 1;         // job_attempt
  bool recovered = false;  // reclaimed or own pending: may have run before
  bool resumed = false;    // put back by the retry mover or `dlq retry`, token verified
  bool claim_checked = false;
  bool gone = false;         // pending, but deleted from the stream: nothing to run
  std::string named_job;     // cascade-job-id of the entry (trusted only with its token)
  std::string resume_token;  // cascade-resume of the entry
  std::string resume_account;
  std::string prior_attempts;  // earlier job attempts' attempts, from P:resume:<id>
  std::map<std::string, std::string, std::less<>> progress;  // delivered: channel -> provider id
  bool progress_written = false;
};

// How a run ended, for the writer and for the counts.
struct Disposition {
  enum class Kind { delivered, failed, rejected, duplicate, retrying, acked };
  Kind kind = Kind::acked;
  JobEnd end;
  std::string key_id;  // the API key, when identified (usage)
};

int to_attempt(std::string_view s) {
  int n = 1;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), n);
  return ec == std::errc() && n >= 1 ? n : 1;
}

// The entry names another job: it is that job only when the token matches the one stored
// beside the job and no other entry has claimed it (one-shot per stream entry).
asio::awaitable<void> claim_resume(Shard& s, JobRun& run) {
  run.claim_checked = true;
  if (run.named_job.empty()) co_return;
  if (!run.resume_token.empty()) {
    static const redis::Script claim(keyspace::claim_resume_script);
    std::vector<std::string> keys{s.keys.resume(run.named_job)};
    std::vector<std::string> args{run.resume_token, run.entry};
    auto r = co_await claim.run(s.commands, std::move(keys), std::move(args));
    if (r.is_error()) throw redis::Error("resume claim failed: " + r.str);
    if (r.is_array() && r.elements.size() == 3) {
      run.id = run.named_job;
      run.resumed = true;
      run.attempt = to_attempt(r.elements[0].str);
      run.resume_account = r.elements[1].str;
      run.prior_attempts = r.elements[2].str;
      co_return;
    }
  }
  spdlog::warn("entry {} names job {} without a valid resume token: run as job {}", run.entry,
               run.named_job, run.entry);
}

// A job that may have run before: true when it already has its final result (then it is
// only acknowledged); otherwise loads its delivery progress into `run`.
asio::awaitable<bool> recover(Shard& s, JobRun& run) {
  auto replies = co_await s.commands.exec_batch(redis::batch(
      redis::cmd("GET", s.keys.result(run.id)), redis::cmd("HGETALL", s.keys.progress(run.id))));
  const auto& prev = replies.at(0);
  if (!prev.is_nil() && !prev.is_error()) {
    auto state = result_state(prev.str);
    if (state && *state != "retrying") {
      spdlog::info("job {} already has its result: acked", run.id);
      co_return true;
    }
  }
  const auto& p = replies.at(1);
  for (std::size_t i = 0; i + 1 < p.elements.size(); i += 2)
    run.progress[p.elements[i].str] = p.elements[i + 1].str;
  co_return false;
}

// Per-job delivery progress, written when a channel delivers while its tier still has
// work: a re-run after a crash does not send that channel again.
asio::awaitable<void> record_delivery(Shard& s, JobRun& run, const Attempt& a) {
  // If Redis is down the delivery goes unrecorded (logged): the job's result, written
  // until Redis takes it, still ends the job; only a crash before that would re-send.
  auto key = s.keys.progress(run.id);
  run.progress_written = true;
  try {
    co_await s.commands.exec_batch(
        redis::batch(redis::cmd("HSET", key, a.channel, a.provider_id),
                     redis::cmd("EXPIRE", key, std::to_string(s.config.progress_ttl.count()))));
  } catch (const redis::Error& e) {
    spdlog::warn("job {}: delivery on {} not recorded ({})", run.id, a.channel, e.what());
  }
}

// The result's closing fields: which job attempt ended it, and when.
std::string sealed(Result r, int attempt) {
  r.job_attempt = attempt;
  r.finished_at = iso8601_utc(std::chrono::system_clock::now());
  return r.to_json();
}

// A refusal ends the job at once (the entry's fields go to the dead letters when it could
// not be read at all).
void refuse(Disposition& d, const JobRun& run, const EntryFields& fields, Refused r) {
  d.kind = r.duplicate ? Disposition::Kind::duplicate : Disposition::Kind::rejected;
  d.key_id = std::move(r.key_id);
  d.end.kind = JobEnd::Kind::final;
  d.end.status = r.result.status;
  if (r.dead) {
    d.end.dead_reason = "unreadable entry";
    // An entry without a body has nothing worth keeping: its other fields (credentials,
    // anything a producer sent) are not copied.
    if (std::any_of(fields.begin(), fields.end(), [](const auto& f) { return f.first == "body"; }))
      d.end.fields = fields;
  }
  r.result.id = run.id;
  r.result.prior_attempts_json = run.prior_attempts;
  d.end.json = sealed(std::move(r.result), run.attempt);
}

asio::awaitable<Disposition> run_once(Shard& s, JobRun& run, const EntryFields& fields) {
  Disposition d;
  d.end.entry = run.entry;
  if (run.gone) {  // the entry is gone from the stream: only acknowledge it
    d.end.kind = JobEnd::Kind::ack_only;
    co_return d;
  }
  if (!run.claim_checked) co_await claim_resume(s, run);
  d.end.id = run.id;
  if ((run.recovered || run.resumed) && co_await recover(s, run)) {
    d.end.kind = JobEnd::Kind::ack_only;
    co_return d;
  }
  d.end.delete_resume = run.resumed;
  d.end.delete_progress = !run.progress.empty();
  auto admission = co_await admit(AdmissionContext{s.verifier, s.commands, s.keys, s.config},
                                  run.id, fields, run.resume_account);
  if (auto* r = std::get_if<Refused>(&admission)) {
    refuse(d, run, fields, std::move(*r));
    co_return d;
  }
  auto& admitted = std::get<Admitted>(admission);
  const auto& job = admitted.job;
  d.key_id = admitted.principal.key.id;
  std::vector<ChannelPlan> plan(job.channels.size());
  for (std::size_t i = 0; i < job.channels.size(); ++i) {
    const auto& key = admitted.keys[i];
    auto it = s.channels.find(key.type);
    plan[i].channel = it == s.channels.end() ? nullptr : it->second.get();
    plan[i].settings = &key.settings;
    plan[i].paused = key.status != "active";
    plan[i].channel_key_id = key.id;
    plan[i].pacer = &s.pacer;
    if (auto p = run.progress.find(job.channels[i].channel); p != run.progress.end()) {
      plan[i].already_delivered = true;
      plan[i].delivered_id = p->second;
    }
    plan[i].on_delivered = [&s, &run](const Attempt& a) { return record_delivery(s, run, a); };
  }
  auto report = co_await run_cascade(run.id, job, plan, s.config, s.rng);
  Result r;
  r.id = run.id;
  r.account = admitted.principal.account.id;
  r.metadata_json = job.metadata_json;
  r.attempts = std::move(report.attempts);
  r.delivered_via = std::move(report.delivered_via);
  d.end.kind = JobEnd::Kind::final;
  if (report.delivered) {
    d.kind = Disposition::Kind::delivered;
    r.status = 200;
    r.state = "delivered";
  } else if (report.any_retryable &&
             static_cast<std::size_t>(run.attempt) <= s.config.job_retry_delays.size()) {
    // SPEC §3: a transient failure everywhere: the whole job is tried again later.
    auto delay = s.config.job_retry_delays[static_cast<std::size_t>(run.attempt) - 1];
    d.kind = Disposition::Kind::retrying;
    r.status = 202;
    r.state = "retrying";
    r.next_attempt_at = iso8601_utc(std::chrono::system_clock::now() + delay);
    d.end.kind = JobEnd::Kind::retry;
    d.end.next_due_ms = now_unix_ms() + delay.count();
    d.end.fields = fields;
    d.end.resume.token = keyspace::new_resume_token();
    d.end.resume.attempt = run.attempt + 1;
    d.end.resume.account = r.account;
  } else {
    d.kind = Disposition::Kind::failed;
    r.status = 502;
    r.state = "failed";
    if (report.any_retryable) {
      d.end.dead_reason = "retries exhausted after " + std::to_string(run.attempt) + " attempts";
      d.end.fields = fields;
    }
  }
  d.end.status = r.status;
  d.end.delete_progress = d.end.delete_progress || run.progress_written;
  if (run.attempt > 1 || d.kind == Disposition::Kind::retrying)
    for (auto& a : r.attempts)
      a.job_attempt = run.attempt;
  r.prior_attempts_json = run.prior_attempts;
  if (d.kind == Disposition::Kind::retrying) d.end.resume.prior_attempts = r.attempts_json();
  d.end.json = sealed(std::move(r), run.attempt);
  co_return d;
}

void count(Shard& s, const Disposition& d, bool resumed) {
  using K = UsageCounters::Kind;
  // Usage counts jobs, not job attempts: accepted once, delivered/failed when it ends.
  bool first_attempt = !resumed;
  switch (d.kind) {
    case Disposition::Kind::delivered:
      if (first_attempt) s.usage.add(d.key_id, K::accepted);
      s.usage.add(d.key_id, K::delivered);
      ++s.counters.delivered;
      break;
    case Disposition::Kind::failed:
      if (first_attempt) s.usage.add(d.key_id, K::accepted);
      s.usage.add(d.key_id, K::failed);
      ++s.counters.failed;
      break;
    case Disposition::Kind::retrying:
      if (first_attempt) s.usage.add(d.key_id, K::accepted);
      ++s.counters.retried;
      return;
    case Disposition::Kind::rejected:
      s.usage.add(d.key_id, K::rejected);
      ++s.counters.rejected;
      break;
    case Disposition::Kind::duplicate:
      ++s.counters.duplicates;
      break;
    case Disposition::Kind::acked:
      return;
  }
  ++s.counters.jobs;
}

}  // namespace

asio::awaitable<void> Shard::run_job(std::shared_ptr<Shard> self, std::string entry,
                                     EntryFields raw, bool recovered) {
  auto& s = *self;
  JobRun run;
  run.entry = entry;
  run.id = entry;
  run.recovered = recovered;
  run.gone = raw.empty();
  // Internal fields are the engine's: only the resume pair is looked at (and trusted only
  // with its token); every other `cascade-*` field a producer sends is dropped.
  EntryFields fields;
  fields.reserve(raw.size());
  for (auto& [k, v] : raw) {
    if (k.starts_with(keyspace::internal_prefix)) {
      if (k == keyspace::job_id_field)
        run.named_job = std::move(v);
      else if (k == keyspace::resume_field)
        run.resume_token = std::move(v);
      continue;
    }
    fields.emplace_back(std::move(k), std::move(v));
  }
  EntryFields().swap(raw);  // its moved-from strings would stay for the whole job
  Disposition d;
  auto backoff = std::chrono::milliseconds(100);
  for (;;) {
    bool failed = false;
    try {
      d = co_await run_once(s, run, fields);
    } catch (const redis::Error& e) {
      // Only before anything was sent (deliveries are recorded without throwing): safe to
      // run again once Redis is back.
      spdlog::warn("job {}: redis unavailable before sending ({})", run.id, e.what());
      failed = true;
    }
    if (!failed) break;
    if (s.stopping) {
      spdlog::warn("job {} left pending for reclaim", run.id);
      co_return;
    }
    co_await pause(s.io, s.jittered(backoff));
    backoff = std::min(backoff * 2, std::chrono::milliseconds(5000));
  }
  // Counted before the write, so that whoever sees the result also sees it counted (the
  // write is retried until Redis takes it).
  count(s, d, run.resumed);
  // Written until Redis takes it (or the drain timeout ends the process): the cascade is
  // never run again for it and the result is not lost.
  co_await s.writer.write(std::move(d.end));
  if (d.kind == Disposition::Kind::retrying)
    spdlog::debug("job {} attempt {} failed transiently", run.id, run.attempt);
}

}  // namespace cascade
