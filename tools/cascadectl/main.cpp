// cascadectl: the operator CLI (SPEC §6). Talks to Redis only.
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <iterator>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "auth/secrets.hpp"
#include "auth/store.hpp"
#include "engine/keyspace.hpp"
#include "engine/pacer.hpp"
#include "engine/config.hpp"
#include "engine/result.hpp"
#include "redis/connection.hpp"
#include "redis/sync.hpp"
#include "util/json.hpp"
#include "util/time.hpp"
#include "util/rate.hpp"
#include "util/url.hpp"

namespace asio = boost::asio;
using namespace cascade;

namespace {

constexpr const char* kUsage = R"(usage: cascadectl [--redis URL] [--prefix P] [--json] COMMAND

Secrets never need to be on the command line (where ps and shell history see them):
every secret option (--bot-token, --access-token, --gateway-key, --server-token,
--smtp-pass, --token, --x-api-key) takes @FILE (the file's content, one trailing newline
stripped) or - (read from stdin); a literal value works too but is visible to others.

  account create --name NAME                      -> account id
  account pause|resume ACCOUNT_ID
  apikey create --account ID --name NAME [--scopes send,read,manage,events|admin]
                [--channels CK_ID,...] [--expires-in 30d] [--rate 100/s[:burst]|N/m]
                                                  -> key id and the key, shown once
  apikey list --account ID                        -> keys with usage (never the secret)
  apikey revoke KEY_ID                            -> every secret of the key stops,
                                                     rotated ones still in their grace too
  apikey rotate KEY_ID [--grace 24h]              -> new key, shown once; the old ones
                                                     work until the grace ends (default 0)
  channel create --account ID --type whatsapp|waba|telegram|email --name NAME
                 [--api-base URL] [--rate N/s[:burst]] [--on-unknown retry|fail]
                 [--max-connections N] [provider options]
                                                  -> channel key id and the key, shown once;
                                                     credentials are sealed with the master key
      telegram: --bot-token @FILE|-
      waba:     --phone-number-id ID --access-token @FILE|- [--api-version v23.0]
      whatsapp: --api-base GATEWAY_URL [--session NAME] [--gateway-key @FILE|-]
      email:    --from ADDR and either --provider postmark --server-token @FILE|-
                or --provider smtp --smtp-host H --smtp-port P
                   [--smtp-user U --smtp-pass @FILE|-] [--smtp-tls none|starttls|tls]
  channel list --account ID
  channel pause|resume|delete CK_ID
  channel rekey --all|CK_ID                       re-seal credentials under the current
                                                  master key (after adding a new key first
                                                  in the file, or for plaintext ones)
  send [--token @FILE|- | --x-api-key @FILE|-] [--idempotency-key K] [--wait 10s] BODY_FILE|-
                                                  -> job id; with --wait, the result
                                                  (CASCADE_API_KEY serves as --token)
  job show JOB_ID
  dlq list [--count 20] [--before ENTRY]          dead letters, newest first, with the reason
                                                  (credentials masked); --before pages on
  dlq retry JOB_ID|--all                          back onto the stream under the original id
  dlq purge                                       delete every dead letter
  stats [--group cascade] [--window 1s]           queue depth, in flight, retries, dead, results,
                                                  and jobs submitted/finished per second

global options:
  --redis URL    redis://[[user]:password@]host[:port][/db] (CASCADE_REDIS_URL,
                 default redis://127.0.0.1:6379/0); put a password in the environment
                 variable or in --redis-password-file, not in --redis
  --redis-password-file FILE
                 the Redis password (one trailing newline stripped)
  --master-key-file FILE
                 master key sealing the provider credentials (CASCADE_MASTER_KEY_FILE);
                 needed by channel create with a credential and by channel rekey. Make one:
                   openssl rand -hex 32 > master.key && chmod 600 master.key
  --prefix P     key prefix (CASCADE_PREFIX, default cascade)
  --json         print exactly one JSON object on stdout

Exit status: 0 success; 1 the command failed (unknown id, a job that did not deliver
with --wait, ...); 2 bad usage; 3 --wait timed out; 4 Redis unreachable.
)";

struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};
struct Failure : std::runtime_error {
  using std::runtime_error::runtime_error;
};

std::string strip_newline(std::string s) {
  if (s.ends_with('\n')) s.pop_back();
  if (s.ends_with('\r')) s.pop_back();
  return s;
}

std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw Failure("cannot read " + path);
  return std::string(std::istreambuf_iterator<char>(f), {});
}

bool stdin_taken = false;  // one option (or the body) at most reads stdin

std::string read_stdin(const std::string& what) {
  if (stdin_taken) throw UsageError(what + ": stdin is already read by another option");
  stdin_taken = true;
  return std::string(std::istreambuf_iterator<char>(std::cin), {});
}

// A secret option's value: "@FILE" reads the file, "-" reads stdin (one trailing newline
// stripped either way); anything else is the secret itself, which ps and shell history
// also see.
std::string secret_value(const std::string& name, const std::string& v) {
  std::string out = v;
  if (v == "-")
    out = strip_newline(read_stdin(name));
  else if (v.starts_with('@'))
    out = strip_newline(read_file(v.substr(1)));
  if (out.empty()) throw UsageError(name + " is empty");
  return out;
}

// Parsed command line: positional words and --name value options.
struct Args {
  std::vector<std::string> words;
  std::map<std::string, std::string> opts;
  std::vector<std::string> used;

  std::optional<std::string> get(const std::string& name) {
    used.push_back(name);
    auto it = opts.find(name);
    if (it == opts.end()) return std::nullopt;
    return it->second;
  }
  std::string need(const std::string& name) {
    auto v = get(name);
    if (!v || v->empty()) throw UsageError(name + " is required");
    return *v;
  }
  std::optional<std::string> secret(const std::string& name) {
    auto v = get(name);
    if (!v) return v;
    return secret_value(name, *v);
  }
  std::string need_secret(const std::string& name) { return secret_value(name, need(name)); }
  // Rejects options this command does not take, so typos are loud.
  void finish() {
    for (const auto& [k, v] : opts)
      if (std::find(used.begin(), used.end(), k) == used.end())
        throw UsageError("unknown option " + k + " for this command");
  }
};

const std::vector<std::string> kFlags = {"--json", "--all"};  // options without a value

Args parse_args(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    std::string s = argv[i];
    if (s == "-" || !s.starts_with("--")) {
      a.words.push_back(s);
      continue;
    }
    if (s == "--help") throw UsageError("");
    if (auto eq = s.find('='); eq != std::string::npos) {
      a.opts[s.substr(0, eq)] = s.substr(eq + 1);
    } else if (std::find(kFlags.begin(), kFlags.end(), s) != kFlags.end()) {
      a.opts[s] = "1";
    } else {
      if (i + 1 >= argc) throw UsageError(s + " needs a value");
      a.opts[s] = argv[++i];
    }
  }
  return a;
}

template <class T>
T run(asio::io_context& io, asio::awaitable<T> aw) {
  return redis::run_sync(io, std::move(aw));
}

std::vector<std::string> split_list(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  std::string part;
  while (std::getline(ss, part, ','))
    if (!part.empty()) out.push_back(part);
  return out;
}

std::string join(const std::vector<std::string>& v, const char* sep = ",") {
  std::string out;
  for (const auto& s : v) {
    if (!out.empty()) out += sep;
    out += s;
  }
  return out;
}

std::string json_array(const std::vector<std::string>& v) {
  std::string out = "[";
  for (std::size_t i = 0; i < v.size(); ++i) {
    if (i) out += ',';
    json::append_string(out, v[i]);
  }
  return out + "]";
}

std::string time_or(std::int64_t ms, const char* none) {
  return ms == 0
             ? none
             : iso8601_utc(std::chrono::system_clock::time_point(std::chrono::milliseconds(ms)));
}

struct Ctl {
  asio::io_context io{1};
  redis::Connection redis;
  auth::Store store;
  std::string prefix;
  keyspace::Keys keys;
  bool json_out = false;
  std::string key_id;  // of the current master key, for messages

  Ctl(redis::Config cfg, std::string p, std::shared_ptr<const auth::KeyRing> ring)
      : redis(io.get_executor(), cfg),
        store(redis, p, std::move(ring)),
        prefix(p),
        keys(std::move(p)) {}

  redis::Reply exec(redis::Command c) { return run(io, redis.exec(std::move(c))); }

  void print_created(const std::string& what, const std::string& id, const std::string& key) {
    if (json_out) {
      std::string out;
      json::ObjectWriter(out).field("id", id).field("key", key).close();
      std::cout << out << "\n";
    } else {
      std::cout << what << " " << id << "\nkey: " << key
                << "\n(the key is shown only now: store it safely)\n";
    }
  }

  void print_ok(const std::string& text, const std::string& id, const std::string& state) {
    if (json_out) {
      std::string out;
      json::ObjectWriter(out).field("id", id).field("status", state).close();
      std::cout << out << "\n";
    } else {
      std::cout << text << "\n";
    }
  }

  int account(Args& a) {
    if (a.words.size() < 2) throw UsageError("account needs create, pause or resume");
    const auto& verb = a.words[1];
    if (verb == "create") {
      auto name = a.need("--name");
      a.finish();
      auto acc = run(io, store.create_account(name));
      if (json_out) {
        std::string out;
        json::ObjectWriter(out).field("id", acc.id).field("name", acc.name).close();
        std::cout << out << "\n";
      } else {
        std::cout << acc.id << "\n";
      }
      return 0;
    }
    if (verb == "pause" || verb == "resume") {
      if (a.words.size() != 3) throw UsageError("account " + verb + " needs ACCOUNT_ID");
      a.finish();
      auto status = verb == "pause" ? "paused" : "active";
      run(io, store.set_account_status(a.words[2], status));
      print_ok("account " + a.words[2] + " " + status, a.words[2], status);
      return 0;
    }
    throw UsageError("unknown account command '" + verb + "'");
  }

  int apikey(Args& a) {
    if (a.words.size() < 2) throw UsageError("apikey needs create, list or revoke");
    const auto& verb = a.words[1];
    if (verb == "create") {
      auth::ApiKey rec;
      rec.account = a.need("--account");
      rec.name = a.need("--name");
      rec.scopes = split_list(a.get("--scopes").value_or("send"));
      for (const auto& s : rec.scopes)
        if (s != "send" && s != "read" && s != "manage" && s != "events" && s != "admin")
          throw UsageError("unknown scope '" + s + "' (send, read, manage, events, admin)");
      if (rec.scopes.empty()) throw UsageError("--scopes must name at least one scope");
      if (auto ch = a.get("--channels")) rec.channels = split_list(*ch);
      if (auto exp = a.get("--expires-in")) {
        auto d = parse_duration(*exp);
        if (!d || d->count() <= 0)
          throw UsageError("--expires-in must be a duration like 30d, 12h");
        rec.expires_ms = now_unix_ms() + d->count();
      }
      if (auto rate = a.get("--rate")) {
        std::string why;
        if (!parse_rate(*rate, &why)) throw UsageError("--rate: " + why);
        rec.rate = *rate;
      }
      a.finish();
      auto created = run(io, store.create_api_key(rec));
      print_created("API key", created.record.id, created.key);
      return 0;
    }
    if (verb == "list") {
      auto account = a.need("--account");
      a.finish();
      if (!run(io, store.find_account(account))) throw Failure("no account " + account);
      auto keys = run(io, store.list_api_keys(account));
      std::vector<std::map<std::string, std::int64_t>> usage;
      for (const auto& k : keys)
        usage.push_back(run(io, store.usage(k.id)));
      auto count = [&](std::size_t i, const char* name) {
        auto it = usage[i].find(name);
        return it == usage[i].end() ? std::int64_t{0} : it->second;
      };
      if (json_out) {
        std::string arr = "[";
        for (std::size_t i = 0; i < keys.size(); ++i) {
          const auto& k = keys[i];
          if (i) arr += ',';
          json::ObjectWriter w(arr);
          w.field("id", k.id).field("name", k.name).raw("scopes", json_array(k.scopes));
          w.raw("channels", json_array(k.channels)).field("status", k.status);
          w.field("created", time_or(k.created_ms, ""));
          w.field("expires", time_or(k.expires_ms, ""));
          w.field("rate", k.rate).field("last_used", time_or(count(i, "last_used"), ""));
          std::string u;
          json::ObjectWriter(u)
              .field("accepted", count(i, "accepted"))
              .field("delivered", count(i, "delivered"))
              .field("failed", count(i, "failed"))
              .field("rejected", count(i, "rejected"))
              .close();
          w.raw("usage", u);
          w.close();
        }
        arr += "]";
        std::string out;
        json::ObjectWriter(out).field("account", account).raw("keys", arr).close();
        std::cout << out << "\n";
      } else {
        for (std::size_t i = 0; i < keys.size(); ++i) {
          const auto& k = keys[i];
          std::cout << k.id << "  " << k.name << "  scopes=" << join(k.scopes)
                    << "  channels=" << (k.channels.empty() ? "any" : join(k.channels))
                    << "  rate=" << (k.rate.empty() ? "none" : k.rate) << "  status=" << k.status
                    << "  created=" << time_or(k.created_ms, "-")
                    << "  expires=" << time_or(k.expires_ms, "never")
                    << "  last_used=" << time_or(count(i, "last_used"), "never")
                    << "  accepted=" << count(i, "accepted")
                    << " delivered=" << count(i, "delivered") << " failed=" << count(i, "failed")
                    << " rejected=" << count(i, "rejected") << "\n";
        }
      }
      return 0;
    }
    if (verb == "rotate") {
      if (a.words.size() != 3) throw UsageError("apikey rotate needs KEY_ID");
      auto grace = std::chrono::milliseconds(0);
      auto grace_text = a.get("--grace");
      if (grace_text) {
        auto d = parse_duration(*grace_text);
        if (!d) throw UsageError("--grace must be a duration like 24h, 30m, 0s");
        grace = *d;
      }
      a.finish();
      auto rotated = run(io, store.rotate_api_key(a.words[2], grace));
      print_created("API key", rotated.record.id, rotated.key);
      if (!json_out)
        std::cout << (grace.count() > 0 ? "the old key keeps working for " + *grace_text
                                        : std::string("the old key stopped working"))
                  << "\n";
      return 0;
    }
    if (verb == "revoke") {
      if (a.words.size() != 3) throw UsageError("apikey revoke needs KEY_ID");
      a.finish();
      run(io, store.revoke_api_key(a.words[2]));
      print_ok("API key " + a.words[2] + " revoked", a.words[2], "revoked");
      return 0;
    }
    throw UsageError("unknown apikey command '" + verb + "'");
  }

  int channel(Args& a) {
    if (a.words.size() < 2)
      throw UsageError("channel needs create, list, pause, resume, delete or rekey");
    const auto& verb = a.words[1];
    if (verb == "create") {
      auth::ChannelKey rec;
      rec.account = a.need("--account");
      rec.type = a.need("--type");
      rec.name = a.need("--name");
      auto& s = rec.settings;
      auto base = a.get("--api-base");
      if (base) {
        std::string why;
        if (!parse_url(*base, &why)) throw UsageError("--api-base: " + why);
        s["api_base"] = *base;
      }
      // Throughput limit of this key (SPEC §3): sends wait for their slot.
      if (auto rate = a.get("--rate")) {
        if (!parse_rate(*rate)) throw UsageError("--rate must look like 30/s, 600/m or 30/s:10");
        s["rate"] = *rate;
      }
      // A send whose reply was lost may have been delivered: send again (duplicates
      // possible) or fail the channel.
      // HTTP channels: at most N of this key's requests hold (or wait for) a provider
      // connection at once, so one busy key cannot take the whole pool. 0: no cap.
      if (auto n = a.get("--max-connections")) {
        std::size_t v = 0;
        auto [end, ec] = std::from_chars(n->data(), n->data() + n->size(), v);
        if (ec != std::errc() || end != n->data() + n->size())
          throw UsageError("--max-connections must be a whole number");
        s["max_connections"] = *n;
      }
      if (auto policy = a.get("--on-unknown")) {
        if (*policy != "retry" && *policy != "fail")
          throw UsageError("--on-unknown must be retry or fail");
        s["on_unknown"] = *policy;
      }
      if (rec.type == "telegram") {
        s["bot_token"] = a.need_secret("--bot-token");
      } else if (rec.type == "waba") {
        s["phone_number_id"] = a.need("--phone-number-id");
        s["access_token"] = a.need_secret("--access-token");
        if (auto v = a.get("--api-version")) s["version"] = *v;
      } else if (rec.type == "whatsapp") {
        if (!base) throw UsageError("--api-base GATEWAY_URL is required for whatsapp");
        s["session"] = a.get("--session").value_or("default");
        if (auto k = a.secret("--gateway-key")) s["gateway_key"] = *k;
      } else if (rec.type == "email") {
        s["from"] = a.need("--from");
        auto provider = a.need("--provider");
        s["provider"] = provider;
        if (provider == "postmark") {
          s["server_token"] = a.need_secret("--server-token");
        } else if (provider == "smtp") {
          s["smtp_host"] = a.need("--smtp-host");
          s["smtp_port"] = a.need("--smtp-port");
          if (auto u = a.get("--smtp-user")) s["smtp_user"] = *u;
          if (auto p = a.secret("--smtp-pass")) s["smtp_pass"] = *p;
          auto tls = a.get("--smtp-tls").value_or("starttls");
          if (tls != "none" && tls != "starttls" && tls != "tls")
            throw UsageError("--smtp-tls must be none, starttls or tls");
          s["smtp_tls"] = tls;
        } else {
          throw UsageError("--provider must be postmark or smtp");
        }
      } else {
        throw UsageError("--type must be whatsapp, waba, telegram or email");
      }
      a.finish();
      auto created = run(io, store.create_channel_key(rec));
      print_created("channel key", created.record.id, created.key);
      return 0;
    }
    if (verb == "list") {
      auto account = a.need("--account");
      a.finish();
      if (!run(io, store.find_account(account))) throw Failure("no account " + account);
      auto keys = run(io, store.list_channel_keys(account));
      if (json_out) {
        std::string arr = "[";
        for (std::size_t i = 0; i < keys.size(); ++i) {
          const auto& k = keys[i];
          if (i) arr += ',';
          json::ObjectWriter(arr)
              .field("id", k.id)
              .field("type", k.type)
              .field("name", k.name)
              .field("status", k.status)
              .field("created", time_or(k.created_ms, ""))
              .close();
        }
        arr += "]";
        std::string out;
        json::ObjectWriter(out).field("account", account).raw("channels", arr).close();
        std::cout << out << "\n";
      } else {
        // Provider settings hold credentials: never listed.
        for (const auto& k : keys)
          std::cout << k.id << "  " << k.type << "  " << k.name << "  status=" << k.status
                    << "  created=" << time_or(k.created_ms, "-") << "\n";
      }
      return 0;
    }
    if (verb == "pause" || verb == "resume" || verb == "delete") {
      if (a.words.size() != 3) throw UsageError("channel " + verb + " needs CK_ID");
      a.finish();
      if (verb == "delete") {
        run(io, store.delete_channel_key(a.words[2]));
        print_ok("channel key " + a.words[2] + " deleted", a.words[2], "deleted");
      } else {
        auto status = verb == "pause" ? "paused" : "active";
        run(io, store.set_channel_status(a.words[2], status));
        print_ok("channel key " + a.words[2] + " " + status, a.words[2], status);
      }
      return 0;
    }
    if (verb == "rekey") {
      bool all = a.get("--all").has_value();
      a.finish();
      if (all == (a.words.size() == 3)) throw UsageError("channel rekey needs CK_ID or --all (not both)");
      auto n = run(io, store.rekey_channel_keys(all ? std::string() : a.words[2]));
      if (json_out) {
        std::string out;
        json::ObjectWriter(out)
            .field("resealed", static_cast<std::int64_t>(n))
            .field("master_key", key_id)
            .close();
        std::cout << out << "\n";
      } else {
        std::cout << "re-sealed " << n << " credential" << (n == 1 ? "" : "s")
                  << " under master key " << key_id << "\n";
      }
      return 0;
    }
    throw UsageError("unknown channel command '" + verb + "'");
  }

  static std::string read_body(const std::string& path) {
    return path == "-" ? read_stdin("BODY_FILE -") : read_file(path);
  }

  int send(Args& a) {
    auto token = a.secret("--token");
    auto xkey = a.secret("--x-api-key");
    auto idem = a.get("--idempotency-key");
    auto wait = a.get("--wait");
    a.finish();
    if (!token && !xkey) {
      if (const char* e = std::getenv("CASCADE_API_KEY"); e && *e) token = e;
    }
    if (!token && !xkey)
      throw UsageError("send needs --token @FILE|-, --x-api-key @FILE|- or CASCADE_API_KEY");
    if (a.words.size() != 2) throw UsageError("send needs BODY_FILE (or - for stdin)");
    std::optional<std::chrono::milliseconds> wait_for;
    if (wait) {
      wait_for = parse_duration(*wait);
      if (!wait_for) throw UsageError("--wait must be a duration like 10s");
    }
    auto body = read_body(a.words[1]);
    std::string last_result = "0-0";
    if (wait_for) {
      auto last = exec(redis::cmd("XREVRANGE", keys.results(), "+", "-", "COUNT", "1"));
      if (last.is_array() && !last.elements.empty()) last_result = last.elements[0].elements[0].str;
    }
    auto c = redis::cmd("XADD", keys.jobs(), "*");
    if (token) {
      c.push_back("authorization");
      c.push_back("Bearer " + *token);
    }
    if (xkey) {
      c.push_back("x-api-key");
      c.push_back(*xkey);
    }
    if (idem) {
      c.push_back("idempotency-key");
      c.push_back(*idem);
    }
    c.push_back("body");
    c.push_back(body);
    auto id = exec(std::move(c));
    if (id.is_error()) throw Failure("XADD failed: " + id.str);
    if (!wait_for) {
      if (json_out) {
        std::string out;
        json::ObjectWriter(out).field("id", id.str).close();
        std::cout << out << "\n";
      } else {
        std::cout << id.str << "\n";
      }
      return 0;
    }
    auto deadline = std::chrono::steady_clock::now() + *wait_for;
    for (;;) {
      auto r = exec(redis::cmd("GET", keys.result(id.str)));
      // Read as JSON: a metadata value may hold any text.
      auto state = r.is_nil() || r.is_error() ? std::nullopt : result_state(r.str);
      if (state && *state != "retrying") {
        std::cout << r.str << "\n";
        return *state == "delivered" ? 0 : 1;
      }
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) {
        std::cerr << "cascadectl: no result for job " << id.str << " within " << *wait
                  << " (it is still queued or running; see `cascadectl job show " << id.str
                  << "`)\n";
        return 3;
      }
      // Block on the results stream from where we last looked: no polling interval.
      auto block = std::min<std::int64_t>(left.count(), 1000);
      auto entries =
          run(io, redis.exec(redis::cmd("XREAD", "COUNT", "1000", "BLOCK", std::to_string(block),
                                        "STREAMS", keys.results(), last_result),
                             std::chrono::milliseconds(block + 5000)));
      if (entries.is_array() && !entries.elements.empty()) {
        const auto& list = entries.elements[0].elements[1].elements;
        if (!list.empty()) last_result = list.back().elements[0].str;
      }
    }
  }

  int job(Args& a) {
    if (a.words.size() != 3 || a.words[1] != "show") throw UsageError("usage: job show JOB_ID");
    a.finish();
    const auto& id = a.words[2];
    auto r = exec(redis::cmd("GET", keys.result(id)));
    if (!r.is_nil() && !r.is_error()) {
      std::cout << r.str << "\n";
      return 0;
    }
    auto queued = exec(redis::cmd("XRANGE", keys.jobs(), id, id));
    if (queued.is_error()) throw Failure("bad job id '" + id + "'");
    if (queued.is_array() && !queued.elements.empty()) {
      if (json_out) {
        std::string out;
        json::ObjectWriter(out).field("id", id).field("state", "queued").close();
        std::cout << out << "\n";
      } else {
        std::cout << "job " << id << " is queued or running (no result yet)\n";
      }
      return 0;
    }
    throw Failure("no job " + id + " (unknown, or its result expired)");
  }
  // ---- dead letters and queue stats ------------------------------------------------

  using EntryFields = std::vector<std::pair<std::string, std::string>>;

  static EntryFields entry_fields(const redis::Reply& entry) {
    EntryFields f;
    if (entry.elements.size() < 2) return f;
    const auto& kv = entry.elements[1].elements;
    for (std::size_t i = 0; i + 1 < kv.size(); i += 2)
      f.emplace_back(kv[i].str, kv[i + 1].str);
    return f;
  }

  static std::string field_of(const EntryFields& f, const std::string& name) {
    for (const auto& [k, v] : f)
      if (k == name) return v;
    return "";
  }

  // Credentials never leave Redis: the credential fields are masked, and API/channel keys
  // (ak_..., ck_...) anywhere in a value (the body's "keys") keep only their prefix.
  static std::string masked(const std::string& name, const std::string& value) {
    if (name == "authorization") return value.starts_with("Bearer ") ? "Bearer ***" : "***";
    if (name == "x-api-key") return "***";
    std::string out;
    out.reserve(value.size());
    for (std::size_t i = 0; i < value.size();) {
      bool key_start = (value.compare(i, 3, "ak_") == 0 || value.compare(i, 3, "ck_") == 0) &&
                       (i == 0 || !std::isalnum(static_cast<unsigned char>(value[i - 1])));
      if (!key_start) {
        out += value[i++];
        continue;
      }
      out.append(value, i, 3);
      out += "***";
      i += 3;
      while (i < value.size() && std::isalnum(static_cast<unsigned char>(value[i])))
        ++i;
    }
    return out;
  }

  static std::string provisional(const std::string& id) {
    std::string out;
    json::ObjectWriter(out)
        .field("id", id)
        .field("status", 202)
        .field("state", "retrying")
        .field("job_attempt", 1)
        .field("next_attempt_at", iso8601_utc(std::chrono::system_clock::now()))
        .close();
    return out;
  }

  static bool internal_dead_field(const std::string& k) {
    return k == "id" || k == "reason" || k == "result";
  }

  int dlq(Args& a) {
    if (a.words.size() < 2) throw UsageError("dlq needs list, retry or purge");
    const auto& verb = a.words[1];
    const auto dead_key = keys.dead();
    if (verb == "list") {
      auto count = a.get("--count").value_or("20");
      auto before = a.get("--before");
      a.finish();
      std::size_t n = 0;
      auto [p, ec] = std::from_chars(count.data(), count.data() + count.size(), n);
      if (ec != std::errc() || p != count.data() + count.size() || n == 0)
        throw UsageError("--count must be a whole number of at least 1");
      auto r = exec(redis::cmd("XREVRANGE", dead_key, before ? "(" + *before : std::string("+"),
                               "-", "COUNT", std::to_string(n)));
      if (r.is_error()) throw Failure("cannot read dead letters: " + r.str);
      std::string arr = "[";
      std::string last;
      for (std::size_t i = 0; i < r.elements.size(); ++i) {
        const auto& e = r.elements[i];
        auto f = entry_fields(e);
        last = e.elements[0].str;
        auto result = field_of(f, "result");
        if (json_out) {
          if (i) arr += ',';
          std::string fields;
          json::ObjectWriter fw(fields);
          for (const auto& [k, v] : f)
            if (!internal_dead_field(k)) fw.field(k, masked(k, v));
          fw.close();
          json::ObjectWriter w(arr);
          w.field("entry", last).field("id", field_of(f, "id"));
          w.field("reason", field_of(f, "reason")).raw("fields", fields);
          if (!result.empty() && result.front() == '{') w.raw("result", result);
          w.close();
        } else {
          auto ms = std::stoll(last.substr(0, last.find('-')));
          std::cout << field_of(f, "id") << "  dead at " << time_or(ms, "-")
                    << "  reason: " << field_of(f, "reason") << "\n";
          for (const auto& [k, v] : f)
            if (!internal_dead_field(k)) std::cout << "    " << k << ": " << masked(k, v) << "\n";
          if (!result.empty()) std::cout << "    result: " << result << "\n";
        }
      }
      arr += "]";
      bool more = r.elements.size() == n;
      if (json_out) {
        std::string out;
        json::ObjectWriter w(out);
        w.raw("entries", arr);
        if (more) w.field("next", last);
        w.close();
        std::cout << out << "\n";
      } else if (r.elements.empty()) {
        std::cout << "no dead letters\n";
      } else if (more) {
        std::cout << "(more: dlq list --before " << last << ")\n";
      }
      return 0;
    }
    if (verb == "retry") {
      bool all = a.get("--all").has_value();
      a.finish();
      if (all == (a.words.size() == 3))
        throw UsageError("dlq retry needs JOB_ID or --all (not both)");
      std::string only = all ? "" : a.words[2];
      std::vector<std::string> retried;
      std::string from = "-";
      for (;;) {
        auto r = exec(redis::cmd("XRANGE", dead_key, from, "+", "COUNT", "500"));
        if (r.is_error()) throw Failure("cannot read dead letters: " + r.str);
        if (r.elements.empty()) break;
        for (const auto& e : r.elements) {
          auto f = entry_fields(e);
          auto id = field_of(f, "id");
          if (id.empty() || (!all && id != only)) continue;
          // Back onto the stream under the job's original id (results stay keyed by it),
          // atomically, with a fresh resume token stored beside the job: the worker trusts
          // the entry's job id only with that token. Its result becomes a provisional
          // "retrying" one until the job runs.
          auto xadd = redis::cmd("XADD", keys.jobs(), "*");
          for (const auto& [k, v] : f) {
            if (internal_dead_field(k) || k.starts_with(keyspace::internal_prefix)) continue;
            xadd.push_back(k);
            xadd.push_back(v);
          }
          keyspace::ResumeRecord resume;
          resume.token = keyspace::new_resume_token();
          resume.account = result_string(field_of(f, "result"), "account").value_or("");
          keyspace::append_resume_fields(xadd, id, resume.token);
          auto ttl = std::to_string(cascade::EngineConfig{}.result_ttl.count());
          std::vector<redis::Command> tx;
          tx.push_back(redis::cmd("MULTI"));
          tx.push_back(std::move(xadd));
          for (auto& c : keyspace::write_resume(keys, id, resume,
                                                cascade::EngineConfig{}.progress_ttl.count()))
            tx.push_back(std::move(c));
          tx.push_back(redis::cmd("SET", keys.result(id), provisional(id), "EX", ttl));
          tx.push_back(redis::cmd("XDEL", dead_key, e.elements[0].str));
          tx.push_back(redis::cmd("EXEC"));
          auto replies = run(io, redis.exec_batch(std::move(tx)));
          if (replies.back().is_error() || replies.back().is_nil())
            throw Failure("retrying " + id + " failed: " + replies.back().str);
          retried.push_back(id);
        }
        from = "(" + r.elements.back().elements[0].str;
      }
      if (!all && retried.empty()) throw Failure("no dead letter for job " + only);
      if (json_out) {
        std::string out;
        json::ObjectWriter(out)
            .field("retried", static_cast<std::int64_t>(retried.size()))
            .raw("ids", json_array(retried))
            .close();
        std::cout << out << "\n";
      } else {
        std::cout << "retried " << retried.size() << " job" << (retried.size() == 1 ? "" : "s")
                  << "\n";
      }
      return 0;
    }
    if (verb == "purge") {
      a.finish();
      auto replies = run(io, redis.exec_batch(redis::batch(redis::cmd("XLEN", dead_key),
                                                           redis::cmd("DEL", dead_key))));
      auto n = replies.at(0).integer;
      if (json_out) {
        std::string out;
        json::ObjectWriter(out).field("purged", n).close();
        std::cout << out << "\n";
      } else {
        std::cout << "purged " << n << " dead letter" << (n == 1 ? "" : "s") << "\n";
      }
      return 0;
    }
    throw UsageError("unknown dlq command '" + verb + "'");
  }

  // XINFO STREAM's entries-added (every XADD ever, Redis 7): 0 when the stream is missing.
  std::int64_t entries_added(const std::string& stream) {
    auto r = exec(redis::cmd("XINFO", "STREAM", stream));
    if (!r.is_array()) return 0;
    for (std::size_t i = 0; i + 1 < r.elements.size(); i += 2)
      if (r.elements[i].str == "entries-added") return r.elements[i + 1].integer;
    return 0;
  }

  int stats(Args& a) {
    auto group = a.get("--group").value_or("cascade");
    auto window_text = a.get("--window").value_or("1s");
    a.finish();
    auto window = parse_duration(window_text);
    if (!window || window->count() < 0) throw UsageError("--window must be a duration like 1s");
    // Rates: jobs submitted and finished during `window` (0: not measured).
    double submitted = 0, finished = 0;
    if (window->count() > 0) {
      auto j0 = entries_added(keys.jobs());
      auto r0 = entries_added(keys.results());
      std::this_thread::sleep_for(*window);
      double secs = std::chrono::duration<double>(*window).count();
      submitted = static_cast<double>(entries_added(keys.jobs()) - j0) / secs;
      finished = static_cast<double>(entries_added(keys.results()) - r0) / secs;
    }
    auto replies = run(
        io,
        redis.exec_batch(redis::batch(
            redis::cmd("XLEN", keys.jobs()), redis::cmd("XPENDING", keys.jobs(), group),
            redis::cmd("ZCARD", keys.retry_due()),
            redis::cmd("ZCOUNT", keys.retry_due(), "-inf", std::to_string(now_unix_ms())),
            redis::cmd("XLEN", keys.dead()), redis::cmd("XLEN", keys.results()))));
    std::int64_t queue = replies[0].integer;
    std::int64_t in_flight = 0;  // read by a worker, not yet acked (NOGROUP: none)
    if (replies[1].is_array() && !replies[1].elements.empty())
      in_flight = replies[1].elements[0].integer;
    std::int64_t waiting = std::max<std::int64_t>(0, queue - in_flight);
    if (json_out) {
      std::string out;
      json::ObjectWriter(out)
          .field("queue", queue)
          .field("waiting", waiting)
          .field("in_flight", in_flight)
          .field("retrying", replies[2].integer)
          .field("retry_due", replies[3].integer)
          .field("dead", replies[4].integer)
          .field("results", replies[5].integer)
          .field("submitted_per_s", static_cast<std::int64_t>(submitted + 0.5))
          .field("finished_per_s", static_cast<std::int64_t>(finished + 0.5))
          .close();
      std::cout << out << "\n";
    } else {
      std::cout << "queue      " << queue << "  (waiting " << waiting << ", in flight " << in_flight
                << ")\n"
                << "retrying   " << replies[2].integer << "  (due now " << replies[3].integer
                << ")\n"
                << "dead       " << replies[4].integer << "\n"
                << "results    " << replies[5].integer << "\n";
      if (window->count() > 0)
        std::cout << "rates      " << static_cast<std::int64_t>(submitted + 0.5) << " submitted/s, "
                  << static_cast<std::int64_t>(finished + 0.5) << " finished/s (over "
                  << window_text << ")\n";
    }
    return 0;
  }
};

}  // namespace

int main(int argc, char** argv) {
  try {
    auto args = parse_args(argc, argv);
    std::string url = "redis://127.0.0.1:6379/0";
    if (const char* e = std::getenv("CASCADE_REDIS_URL")) url = e;
    if (auto v = args.get("--redis")) url = *v;
    std::string prefix = "cascade";
    if (const char* e = std::getenv("CASCADE_PREFIX")) prefix = e;
    if (auto v = args.get("--prefix")) prefix = *v;
    if (prefix.empty()) throw UsageError("--prefix must not be empty");
    std::string why;
    auto cfg = redis::parse_url(url, &why);
    if (!cfg) throw UsageError("--redis: " + why);
    if (auto v = args.get("--redis-password-file")) cfg->password = strip_newline(read_file(*v));
    std::string key_file;
    if (const char* e = std::getenv("CASCADE_MASTER_KEY_FILE")) key_file = e;
    if (auto v = args.get("--master-key-file")) key_file = *v;
    auto ring = auth::load_key_ring(key_file);
    Ctl ctl(*cfg, prefix, ring);
    if (ring) ctl.key_id = ring->current_id();
    ctl.json_out = args.get("--json").has_value();
    if (args.words.empty()) throw UsageError("");
    const auto& cmd = args.words[0];
    if (cmd == "account") return ctl.account(args);
    if (cmd == "apikey") return ctl.apikey(args);
    if (cmd == "channel") return ctl.channel(args);
    if (cmd == "send") return ctl.send(args);
    if (cmd == "job") return ctl.job(args);
    if (cmd == "dlq") return ctl.dlq(args);
    if (cmd == "stats") return ctl.stats(args);
    throw UsageError("unknown command '" + cmd + "'");
  } catch (const UsageError& e) {
    if (std::string(e.what()).empty()) {
      std::cout << kUsage;
      return argc > 1 ? 0 : 2;
    }
    std::cerr << "cascadectl: " << e.what() << " (see cascadectl --help)\n";
    return 2;
  } catch (const auth::StoreError& e) {
    std::cerr << "cascadectl: " << e.what() << "\n";
    return 1;
  } catch (const Failure& e) {
    std::cerr << "cascadectl: " << e.what() << "\n";
    return 1;
  } catch (const redis::Error& e) {
    std::cerr << "cascadectl: " << e.what() << "\n";
    return 4;
  } catch (const std::exception& e) {
    std::cerr << "cascadectl: " << e.what() << "\n";
    return 1;
  }
}
