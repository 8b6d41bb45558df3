#include "channels/http_adapter.hpp"

#include <charconv>

namespace cascade {

std::string_view setting(const ChannelSettings* settings, std::string_view name) {
  if (!settings) return {};
  auto it = settings->find(name);
  return it == settings->end() ? std::string_view{} : std::string_view(it->second);
}

std::optional<Url> choose_api_base(const ChannelSettings* settings, std::string_view override_base,
                                   std::string_view default_base, std::string_view channel,
                                   Outcome& error) {
  std::string_view text = setting(settings, "api_base");
  if (text.empty()) text = override_base;
  if (text.empty()) text = default_base;
  if (text.empty()) {
    error = Outcome::permanent(std::string(channel) + ": api_base not set", Outcome::Cause::config);
    return std::nullopt;
  }
  std::string why;
  auto url = parse_url(text, &why);
  if (!url) {
    // The reason only: the URL itself may carry credentials.
    error = Outcome::permanent(std::string(channel) + ": bad api_base (" + why + ")",
                               Outcome::Cause::config);
    return std::nullopt;
  }
  if (!url->tls() && !url->loopback() && setting(settings, "allow_insecure_http") != "1") {
    error = Outcome::permanent("insecure http base refused", Outcome::Cause::config);
    return std::nullopt;
  }
  return url;
}

bool safe_path_token(std::string_view s) {
  if (s.empty()) return false;
  for (char c : s) {
    auto u = static_cast<unsigned char>(c);
    if (u <= 0x20 || u >= 0x7F) return false;
    if (c == '/' || c == '?' || c == '#' || c == '%' || c == '"' || c == '\\') return false;
  }
  return true;
}

std::optional<std::string> phone_digits(std::string_view phone) {
  std::string digits;
  for (char c : phone) {
    if (c >= '0' && c <= '9')
      digits.push_back(c);
    else if (c != '+' && c != ' ' && c != '-' && c != '.' && c != '(' && c != ')')
      return std::nullopt;
  }
  if (digits.size() < 7 || digits.size() > 15) return std::nullopt;
  return digits;
}

HttpRequest json_post(const Url& base, std::string_view path, std::string body,
                      std::chrono::steady_clock::time_point deadline) {
  HttpRequest r;
  r.method = "POST";
  r.url = base;
  r.target = base.path + std::string(path);
  r.body = std::move(body);
  r.content_type = "application/json";
  r.headers.emplace_back("Accept", "application/json");
  r.deadline = deadline;
  return r;
}

BuiltRequest with_connection_cap(BuiltRequest built, const SendRequest& request,
                                 std::string_view channel) {
  auto text = setting(request.settings, "max_connections");
  if (!built.request || text.empty()) return built;
  std::size_t cap = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), cap);
  if (ec != std::errc() || end != text.data() + text.size())
    return BuiltRequest::fail(std::string(channel) + ": malformed max_connections",
                              Outcome::Cause::config);
  if (cap > 0 && !request.channel_key_id.empty()) {
    built.request->cap_key = request.channel_key_id;
    built.request->max_in_flight = cap;
  }
  return built;
}

std::string override_for(const ChannelContext& context, std::string_view type) {
  auto it = context.api_base_overrides.find(type);
  return it == context.api_base_overrides.end() ? std::string{} : it->second;
}

boost::asio::awaitable<Outcome> send_and_classify(HttpClient* http, HttpRequest request,
                                                  Classifier classify, Secrets secrets,
                                                  HttpResponse* raw) {
  if (!http) co_return Outcome::permanent("no HTTP client configured", Outcome::Cause::config);
  HttpResponse response = co_await http->send(std::move(request));
  Outcome outcome =
      response.error != HttpResponse::Error::none
          ? classify_transport(response)
          : classify(response.status, response.body, response.header("retry-after"), secrets);
  if (raw) *raw = std::move(response);
  co_return outcome;
}

}  // namespace cascade
