#pragma once
// Router: (method, path pattern) -> handler, for the whole HTTP API.
//
// A pattern is a path of literal segments and `{name}` parameters, each matching one
// non-empty segment (percent-decoded after matching, so a `%2F` inside a key never splits
// it); a final `{name...}` matches the rest of the path, slashes included (OFREP flag keys).
// The router answers 404 (no pattern matches) and 405 with `Allow` (a pattern matches, the
// method does not) in one place, and every answer it gives or a handler gives carries the
// pattern as its metrics route label. HEAD is served by the GET handler (the front end drops
// the body).
//
// Thread safety: Add() while building, before the first Dispatch(); Dispatch() from any
// number of threads.
//
//   Router r;
//   r.Add("GET", "/api/v1/projects/{p}", Access::kAdmin, [](const Call& c) { ... c.Param("p") ... });
//   Response resp = r.Dispatch(req, authorize);

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "http_types.h"

namespace gonfalon::storage {
struct ApiKey;
}

namespace gonfalon::server {

// Who may call a route; checked before its handler runs (Api::Authorize).
enum class Access : uint8_t {
  kPublic,       // operations: /healthz, /readyz, /metrics
  kAdmin,        // an admin key (writes need a read-write key; a project-limited key its project)
  kAdminGlobal,  // an admin key not limited to a project (API keys)
  kServerSdk,    // a server-side SDK key (/sdk/v1/*)
  kOfrep,        // a server-side or client-side SDK key (OFREP)
  kOfrepStream,  // as kOfrep, or a derived stream token in `?token=`
};

// One request as a handler sees it: the request, the path parameters and the caller.
struct Call {
  const Request& req;
  std::vector<std::pair<std::string_view, std::string>> params;  // name -> decoded value
  std::shared_ptr<const storage::ApiKey> key;                     // null for kPublic

  // The named parameter's decoded value ("" if the pattern has no such parameter).
  const std::string& Param(std::string_view name) const;
};

using Handler = std::function<Response(const Call&)>;

class Router {
 public:
  // Authorizes a call for a route's access level: an error response, or nullopt to proceed
  // (having set call.key).
  using Authorizer = std::function<std::optional<Response>(Access, Call&)>;

  void Add(std::string_view method, std::string_view pattern, Access access, Handler handler);

  // Routes the request: 404, 405, the authorizer's refusal, or the handler's response, each
  // labelled with the matched pattern ("unmatched" only when no pattern matched at all).
  Response Dispatch(const Request& req, const Authorizer& authorize) const;

  // The methods registered for a pattern, as an Allow header value ("GET, HEAD, POST").
  std::string AllowedMethods(std::string_view pattern) const;

 private:
  struct Segment {
    std::string literal;  // empty: a parameter
    std::string param;    // the parameter's name
    bool rest = false;    // `{name...}`
  };
  struct Route {
    std::string method;
    std::string pattern;
    std::string label;  // the metrics route label: the pattern without "..."
    std::vector<Segment> segments;
    Access access = Access::kPublic;
    Handler handler;
  };
  // Whether `path` (split raw segments) matches; fills params when it does.
  static bool Match(const Route& route, const std::vector<std::string_view>& path, std::string_view raw_path,
                    std::vector<std::pair<std::string_view, std::string>>* params, bool* bad_escape);

  std::vector<Route> routes_;
};

}  // namespace gonfalon::server
