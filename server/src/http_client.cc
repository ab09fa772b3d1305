#include "http_client.h"

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <cctype>

#include "gonfalon/rules/str_cat.h"

namespace gonfalon::server {

namespace beast = boost::beast;
namespace http = beast::http;
namespace net = boost::asio;
using tcp = net::ip::tcp;

bool SplitHttpUrl(const std::string& url, std::string& host, std::string& port, std::string& target) {
  constexpr std::string_view kScheme = "http://";
  if (url.rfind(kScheme, 0) != 0) return false;
  std::string_view rest = std::string_view(url).substr(kScheme.size());
  size_t slash = rest.find_first_of("/?");
  std::string_view authority = rest.substr(0, slash);
  target = slash == std::string_view::npos ? "/" : std::string(rest.substr(slash));
  if (!target.empty() && target[0] == '?') target.insert(0, "/");
  size_t colon = authority.rfind(':');
  host = std::string(authority.substr(0, colon));
  port = colon == std::string_view::npos ? "80" : std::string(authority.substr(colon + 1));
  return !host.empty() && !port.empty();
}

std::string UrlEncode(std::string_view s) {
  static const char* kHex = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out.push_back(static_cast<char>(c));
    } else {
      out.push_back('%');
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 15]);
    }
  }
  return out;
}

HttpAnswer HttpCall(const HttpRequest& request) {
  HttpAnswer answer;
  std::string host, port, target;
  if (!SplitHttpUrl(request.url, host, port, target)) {
    answer.error = "not an http:// URL";
    return answer;
  }
  net::io_context ioc;
  beast::tcp_stream stream(ioc);
  http::request<http::string_body> req(http::string_to_verb(request.method), target, 11);
  req.set(http::field::host, host);
  req.set(http::field::user_agent, "gonfalon");
  for (const auto& [name, value] : request.headers) req.set(name, value);
  req.body() = request.body;
  req.prepare_payload();
  beast::flat_buffer buffer;
  http::response_parser<http::string_body> parser;
  parser.body_limit(request.body_limit);
  std::string& error = answer.error;
  tcp::resolver resolver(ioc);
  stream.expires_after(request.timeout);
  resolver.async_resolve(host, port, [&](beast::error_code ec, tcp::resolver::results_type results) {
    if (ec) {
      error = StrCat("resolving ", host, ": ", ec.message());
      return;
    }
    stream.async_connect(results, [&](beast::error_code ec, const tcp::endpoint&) {
      if (ec) {
        error = StrCat("connecting: ", ec.message());
        return;
      }
      http::async_write(stream, req, [&](beast::error_code ec, std::size_t) {
        if (ec) {
          error = StrCat("sending: ", ec.message());
          return;
        }
        http::async_read(stream, buffer, parser, [&](beast::error_code ec, std::size_t) {
          if (ec) error = StrCat("reading the answer: ", ec.message());
        });
      });
    });
  });
  ioc.run();
  if (!error.empty()) return answer;
  answer.status = static_cast<int>(parser.get().result_int());
  answer.body = std::move(parser.get().body());
  return answer;
}

}  // namespace gonfalon::server
