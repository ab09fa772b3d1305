#include "router.h"

#include <algorithm>

#include "gonfalon/rules/str_cat.h"
#include "responses.h"

namespace gonfalon::server {
namespace {

// "/a/b//c/" -> {"a", "b", "c"}: views into `path`.
std::vector<std::string_view> SplitSegments(std::string_view path) {
  std::vector<std::string_view> out;
  size_t i = 0;
  while (i < path.size()) {
    size_t j = path.find('/', i);
    if (j == std::string_view::npos) j = path.size();
    if (j > i) out.push_back(path.substr(i, j - i));
    i = j + 1;
  }
  return out;
}

}  // namespace

const std::string& Call::Param(std::string_view name) const {
  static const std::string kEmpty;
  for (const auto& [k, v] : params) {
    if (k == name) return v;
  }
  return kEmpty;
}

void Router::Add(std::string_view method, std::string_view pattern, Access access, Handler handler) {
  Route r;
  r.method = std::string(method);
  r.pattern = std::string(pattern);
  r.label = r.pattern;
  for (size_t at; (at = r.label.find("...}")) != std::string::npos;) r.label.erase(at, 3);
  r.access = access;
  r.handler = std::move(handler);
  for (std::string_view s : SplitSegments(pattern)) {
    Segment seg;
    if (s.size() >= 2 && s.front() == '{' && s.back() == '}') {
      std::string_view name = s.substr(1, s.size() - 2);
      if (name.size() > 3 && name.substr(name.size() - 3) == "...") {
        seg.rest = true;
        name.remove_suffix(3);
      }
      seg.param = std::string(name);
    } else {
      seg.literal = std::string(s);
    }
    r.segments.push_back(std::move(seg));
  }
  routes_.push_back(std::move(r));
}

bool Router::Match(const Route& route, const std::vector<std::string_view>& path, std::string_view raw_path,
                   std::vector<std::pair<std::string_view, std::string>>* params, bool* bad_escape) {
  const auto& segs = route.segments;
  bool has_rest = !segs.empty() && segs.back().rest;
  if (has_rest ? path.size() < segs.size() : path.size() != segs.size()) return false;
  for (size_t i = 0; i < segs.size(); ++i) {
    if (!segs[i].literal.empty() && segs[i].literal != path[i]) return false;
  }
  if (params == nullptr) return true;
  for (size_t i = 0; i < segs.size(); ++i) {
    if (!segs[i].literal.empty()) continue;
    std::string_view raw = path[i];
    if (segs[i].rest) raw = raw_path.substr(static_cast<size_t>(path[i].data() - raw_path.data()));
    std::string decoded;
    if (!PercentDecode(raw, decoded)) *bad_escape = true;
    params->emplace_back(segs[i].param, std::move(decoded));
  }
  return true;
}

Response Router::Dispatch(const Request& req, const Authorizer& authorize) const {
  std::vector<std::string_view> path = SplitSegments(req.raw_path);
  std::string_view method = req.method == "HEAD" ? std::string_view("GET") : std::string_view(req.method);
  const Route* pattern_match = nullptr;
  for (const Route& r : routes_) {
    if (!Match(r, path, req.raw_path, nullptr, nullptr)) continue;
    if (pattern_match == nullptr) pattern_match = &r;
    // Only routes of the first matching pattern compete: a literal route registered before
    // a parameter route of the same shape wins.
    if (r.pattern != pattern_match->pattern) continue;
    if (r.method != method) continue;
    Call call{req, {}, nullptr};
    bool bad_escape = false;
    Match(r, path, req.raw_path, &call.params, &bad_escape);
    Response resp;
    if (bad_escape) {
      resp = ErrorResponse(400, "invalid_argument", "path: malformed percent-encoding");
    } else if (std::optional<Response> refused = authorize(r.access, call)) {
      resp = std::move(*refused);
    } else {
      resp = r.handler(call);
    }
    resp.route = r.label;
    return resp;
  }
  if (pattern_match == nullptr) {
    Response resp = ErrorResponse(404, "not_found", StrCat("no route for ", req.path));
    resp.route = "unmatched";
    return resp;
  }
  std::string allow = AllowedMethods(pattern_match->pattern);
  Response resp = ErrorResponse(405, "method_not_allowed", StrCat(req.method, " is not allowed here; allowed: ", allow));
  resp.headers.emplace_back("Allow", allow);
  resp.route = pattern_match->label;
  return resp;
}

std::string Router::AllowedMethods(std::string_view pattern) const {
  std::vector<std::string> methods;
  for (const Route& r : routes_) {
    if (r.pattern != pattern) continue;
    methods.push_back(r.method);
    if (r.method == "GET") methods.emplace_back("HEAD");
  }
  std::sort(methods.begin(), methods.end());
  methods.erase(std::unique(methods.begin(), methods.end()), methods.end());
  std::string out;
  for (const auto& m : methods) {
    if (!out.empty()) out += ", ";
    out += m;
  }
  return out;
}

}  // namespace gonfalon::server
