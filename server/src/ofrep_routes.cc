// OFREP routes: single and bulk evaluation, the refetch stream, configuration.

#include "gonfalon/rules/codec.h"
#include "gonfalon/rules/str_cat.h"
#include "ofrep.h"
#include "responses.h"
#include "routes.h"

namespace gonfalon::server {

using rules::Array;
using rules::Object;
using rules::Value;

namespace {

// The scheme and authority clients reach this server at, for URLs handed to them:
// the configured public base URL; else, when trusted, the proxy's X-Forwarded-* headers; else
// http:// and the Host header.
std::string PublicBaseUrl(const Request& req, const ApiOptions& options) {
  if (!options.public_base_url.empty()) return options.public_base_url;
  std::string scheme = "http";
  const std::string* host = req.Header("host");
  if (options.trust_forwarded_headers) {
    if (const std::string* p = req.Header("x-forwarded-proto"); p != nullptr && (*p == "https" || *p == "http")) scheme = *p;
    if (const std::string* h = req.Header("x-forwarded-host"); h != nullptr && !h->empty()) host = h;
  }
  return StrCat(scheme, "://", host != nullptr ? std::string_view(*host) : std::string_view("localhost"));
}

Response OfrepError(int status, std::string_view code, std::string_view details, const std::string* key) {
  Value err(Object{{"errorCode", Value(code)}, {"errorDetails", Value(details)}});
  if (key != nullptr) err.Set("key", Value(*key));
  return Json(status, err);
}

// The request's context, or the OFREP error response.
std::variant<rules::Context, Response> RequestContext(const Request& req, const std::string* key) {
  Value body(Object{});
  if (!req.body.empty()) {
    absl::StatusOr<Value> parsed = rules::ParseJson(req.body);
    if (!parsed.ok() || !parsed->is_object()) {
      return OfrepError(400, "PARSE_ERROR", parsed.ok() ? "the body must be a JSON object" : std::string(parsed.status().message()), key);
    }
    body = std::move(*parsed);
  }
  std::string error_code;
  rules::Context ctx = OfrepContext(body.Find("context"), error_code);
  if (!error_code.empty()) return OfrepError(400, error_code, ctx.error(), key);
  return ctx;
}

bool VisibleTo(const storage::ApiKey& key, const rules::internal::CompiledFlag& flag) {
  return key.kind != storage::KeyKind::kClient || rules::FlagModel(flag).client_side_availability.using_environment_id;
}

}  // namespace

void AddOfrepRoutes(Router& router, Services& s) {
  router.Add("GET", "/ofrep/v1/configuration", Access::kOfrep, [](const Call&) {
    static const Value capabilities = *rules::ParseJson(
        R"({"cacheInvalidation":{"polling":{"enabled":true,"minPollingIntervalMs":1000},)"
        R"("sse":{"enabled":true}},)"
        R"("flagEvaluation":{"supportedTypes":["int","float","string","boolean","object"]}})");
    return Json(200, Value(Object{{"name", Value("gonfalon")}, {"capabilities", capabilities}}));
  });

  router.Add("GET", "/ofrep/v1/stream", Access::kOfrepStream, [&s](const Call& c) {
    TRY(s.hubs.Get(c.key->project, c.key->environment).status());
    Response r;
    StreamRequest stream{StreamRequest::Kind::kOfrep, c.key->project, c.key->environment, std::nullopt};
    stream.key_id = c.key->id;
    stream.client_side = c.key->kind == storage::KeyKind::kClient;
    r.stream = std::move(stream);
    return r;
  });

  router.Add("POST", "/ofrep/v1/evaluate/flags/{key...}", Access::kOfrep, [&s](const Call& c) {
    const std::string& key = c.Param("key");
    TRY_ASSIGN(std::shared_ptr<EnvironmentHub> hub, s.hubs.Get(c.key->project, c.key->environment));
    auto ctx = RequestContext(c.req, &key);
    if (auto* refused = std::get_if<Response>(&ctx)) return std::move(*refused);
    const rules::Snapshot* snap = CurrentSnapshot(*hub);
    const auto* cf = snap->FindFlag(key);
    rules::Detail d;
    if (cf == nullptr || !VisibleTo(*c.key, *cf)) {
      d.reason.kind = rules::ReasonKind::kError;
      d.reason.error_kind = rules::ErrorKind::kFlagNotFound;
    } else {
      d = rules::Evaluate(*snap, *cf, std::get<rules::Context>(ctx));
      s.exposures.Record(c.key->project, c.key->environment, key, d, std::get<rules::Context>(ctx));
    }
    ++s.metrics.evaluations;
    OfrepResult r = OfrepEvaluation(key, d);
    if (r.status == 404) r.body.Set("errorDetails", Value(StrCat("flag \"", key, "\" not found")));
    return Json(r.status, r.body);
  });

  router.Add("POST", "/ofrep/v1/evaluate/flags", Access::kOfrep, [&s](const Call& c) {
    TRY_ASSIGN(std::shared_ptr<EnvironmentHub> hub, s.hubs.Get(c.key->project, c.key->environment));
    auto ctx_or = RequestContext(c.req, nullptr);
    if (auto* refused = std::get_if<Response>(&ctx_or)) return std::move(*refused);
    const rules::Context& ctx = std::get<rules::Context>(ctx_or);
    const rules::Snapshot* snap = CurrentSnapshot(*hub);
    bool client_side = c.key->kind == storage::KeyKind::kClient;
    // The ETag names what the body depends on: the data's sequence, which flags the key may
    // see (server and client keys get different sets), and the context.
    std::string etag = StrCat("\"", snap->sequence(), client_side ? "-c-" : "-s-", ContextHash(ctx), "\"");
    if (auto not_modified = NotModified(c.req, etag)) return std::move(*not_modified);
    Array flags;
    rules::EvaluateAll(*snap, ctx, [&](std::string_view key, const rules::Detail& d) {
      flags.push_back(OfrepEvaluation(key, d).body);
      // A provider fetches every flag at once and evaluates from that: the bulk evaluation is
      // the exposure.
      s.exposures.Record(c.key->project, c.key->environment, key, d, ctx);
    }, client_side);
    s.metrics.evaluations += flags.size();
    // The refetch stream, under both names OFREP has used for it.
    Value streams(Array{Value(Object{{"type", Value("sse")},
                                     {"url", Value(StrCat(PublicBaseUrl(c.req, s.options), "/ofrep/v1/stream?token=",
                                                          s.store.StreamToken(c.key->id)))},
                                     {"inactivityDelaySec", Value(120)}})});
    Value out(Object{{"flags", Value(std::move(flags))}, {"eventStreams", streams}, {"refreshConnections", streams},
                     {"metadata", Value(Object{{"sequence", Value(snap->sequence())}})}});
    Response r = Json(200, out);
    r.headers.emplace_back("ETag", etag);
    return r;
  });
}

}  // namespace gonfalon::server
