#include "tools/mock_provider/mock_core.hpp"

#include <charconv>

#include "util/json.hpp"

namespace cascade::mock {
namespace {

constexpr std::string_view kControlPrefix = "/__mock/";

Reply json_reply(int status, std::string body) {
  Reply reply;
  reply.status = status;
  reply.body = std::move(body);
  return reply;
}

Reply control_error(int status, std::string_view message) {
  Reply reply;
  reply.status = status;
  json::ObjectWriter(reply.body).field("error", message).close();
  return reply;
}

Reply ok_reply(std::optional<std::int64_t> cleared = std::nullopt) {
  Reply reply;
  json::ObjectWriter w(reply.body);
  w.field("ok", true);
  if (cleared) w.field("cleared", *cleared);
  w.close();
  return reply;
}

int success_status(Provider p) {
  return p == Provider::whatsapp ? 201 : 200;
}

// The value of `name` in a query string (no percent-decoding: control parameters are
// plain words); nullopt when absent.
std::optional<std::string_view> query_param(std::string_view query, std::string_view name) {
  while (!query.empty()) {
    auto amp = query.find('&');
    auto pair = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view{} : query.substr(amp + 1);
    auto eq = pair.find('=');
    if (pair.substr(0, eq) == name)
      return eq == std::string_view::npos ? std::string_view{} : pair.substr(eq + 1);
  }
  return std::nullopt;
}

}  // namespace

std::string_view sniff_content_type(std::string_view body) {
  auto first = body.find_first_not_of(" \t\r\n");
  if (first == std::string_view::npos) return "text/plain";
  return body[first] == '{' || body[first] == '[' ? "application/json" : "text/html";
}

MockCore::MockCore(std::size_t record_limit) : recorder_(record_limit) {}

MockCore::~MockCore() = default;

Decision MockCore::handle(const HttpRequest& request, std::int64_t now_us) {
  Decision decision;
  auto q = request.target.find('?');
  auto path = request.target.substr(0, q);
  auto query = q == std::string_view::npos ? std::string_view{} : request.target.substr(q + 1);
  if (path.substr(0, kControlPrefix.size()) == kControlPrefix || path == "/__mock") {
    decision.reply = control(request, path, query);
    return decision;
  }

  auto provider = route(request.method, request.target);
  if (!provider) {
    // Telegram's answer to a path that is not /bot...: the only provider that has one.
    decision.reply.status = 404;
    decision.reply.body = R"({"ok":false,"error_code":404,"description":"Not Found"})";
    return decision;
  }
  decision.provider = provider;
  ProviderRequest pr = parse_request(*provider, request, responder_, scratch_);

  auto natural = [&] { return pr.rejection ? *pr.rejection : responder_.success(pr, now_us); };
  if (auto rule = rules_.match(*provider, pr.recipient)) {
    decision.action = rule->action;
    decision.delay = std::chrono::milliseconds(rule->delay_ms);
    switch (rule->action) {
      case Action::respond:
        if (rule->body) {
          decision.reply.status = rule->status ? rule->status : success_status(*provider);
          decision.reply.body = *rule->body;
          decision.reply.content_type = sniff_content_type(decision.reply.body);
          decision.reply.retry_after = rule->retry_after;
        } else if (rule->has_fault()) {
          decision.reply = responder_.error(pr, rule->fault(), request.body, now_us);
        } else {
          decision.reply = natural();
        }
        break;
      case Action::drop_after:
        // The provider did its work (the message counts as sent); only the answer is lost.
        if (!pr.rejection) responder_.success(pr, now_us);
        break;
      case Action::drop_before:
        break;
    }
  } else {
    decision.reply = natural();
  }

  Record record;
  record.provider = *provider;
  record.action = decision.action;
  record.path.assign(request.target);
  record.token = std::move(pr.token);
  record.recipient = std::move(pr.recipient);
  record.text = std::move(pr.text);
  record.subject = std::move(pr.subject);
  record.body.assign(request.body);
  record.received_us = now_us;
  decision.record = recorder_.add(std::move(record));
  return decision;
}

void MockCore::finished(std::uint64_t seq, int status, std::int64_t responded_us) {
  if (auto* record = recorder_.find(seq)) {
    record->status = status;
    record->responded_us = status ? responded_us : 0;
  }
}

Reply MockCore::control(const HttpRequest& request, std::string_view path, std::string_view query) {
  auto method = request.method;
  auto not_allowed = [] { return control_error(405, "method not allowed"); };

  if (path == "/__mock/health") {
    if (method != "GET") return not_allowed();
    return json_reply(200, R"({"ok":true})");
  }
  if (path == "/__mock/rules") {
    if (method == "POST") {
      auto parsed = parse_rule(request.body, scratch_);
      if (!parsed.rule) return control_error(400, parsed.error);
      int id = rules_.add(std::move(*parsed.rule));
      std::string body;
      json::ObjectWriter(body).field("id", id).close();
      return json_reply(200, std::move(body));
    }
    if (method == "GET") {
      std::string body = "[";
      for (const auto& rule : rules_.rules()) {
        if (body.size() > 1) body.push_back(',');
        body += rule_json(rule);
      }
      body.push_back(']');
      return json_reply(200, std::move(body));
    }
    if (method == "DELETE") return ok_reply(static_cast<std::int64_t>(rules_.clear()));
    return not_allowed();
  }
  constexpr std::string_view kRulePrefix = "/__mock/rules/";
  if (path.substr(0, kRulePrefix.size()) == kRulePrefix) {
    if (method != "DELETE") return not_allowed();
    auto text = path.substr(kRulePrefix.size());
    int id = 0;
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), id);
    if (ec != std::errc{} || end != text.data() + text.size() || !rules_.remove(id))
      return control_error(404, "no such rule");
    return ok_reply();
  }
  if (path == "/__mock/requests") {
    if (method == "GET") {
      std::optional<Provider> only;
      if (auto name = query_param(query, "provider"); name && !name->empty()) {
        only = parse_provider(*name);
        if (!only)
          return control_error(400, "unknown provider (telegram, whatsapp, waba, postmark)");
      }
      Reply reply;
      recorder_.append_json(reply.body, only);
      return reply;
    }
    if (method == "DELETE") return ok_reply(static_cast<std::int64_t>(recorder_.clear()));
    return not_allowed();
  }
  if (path == "/__mock/stats") {
    if (method != "GET") return not_allowed();
    Reply reply;
    recorder_.append_stats(reply.body);
    return reply;
  }
  return control_error(404, "unknown control endpoint");
}

}  // namespace cascade::mock
