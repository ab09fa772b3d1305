// The web console (docs/console.md), served from the files embedded at build time:
//   GET /ui/ (or /ui)   the console's page
//   GET /ui/{file...}
// Strict Content-Security-Policy (only this origin's script, style and API), gzip when the
// client takes it, content-hashed files cached for a year, the page itself revalidated.
// Public: the files hold no data; the console signs in to the API with an admin token.

#include <string>

#include "gonfalon/rules/str_cat.h"
#include "responses.h"
#include "routes.h"
#include "ui_assets.h"

namespace gonfalon::server {

namespace {

constexpr char kPolicy[] =
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

const UiAsset* Find(std::string_view path) {
  for (size_t i = 0; i < kUiAssetCount; ++i) {
    if (path == kUiAssets[i].path) return &kUiAssets[i];
  }
  return nullptr;
}

bool TakesGzip(const Request& req) {
  const std::string* ae = req.Header("accept-encoding");
  return ae != nullptr && ae->find("gzip") != std::string::npos;
}

Response Serve(const Request& req, const UiAsset& a) {
  Response r;
  r.content_type = a.content_type;
  r.headers.emplace_back("Content-Security-Policy", kPolicy);
  r.headers.emplace_back("X-Content-Type-Options", "nosniff");
  r.headers.emplace_back("Referrer-Policy", "no-referrer");
  r.headers.emplace_back("Cache-Control", a.immutable ? "public, max-age=31536000, immutable" : "no-cache");
  r.headers.emplace_back("ETag", a.etag);
  r.headers.emplace_back("Vary", "Accept-Encoding");
  if (const std::string* inm = req.Header("if-none-match"); inm != nullptr && *inm == a.etag) {
    r.status = 304;
    return r;
  }
  if (TakesGzip(req)) {
    r.headers.emplace_back("Content-Encoding", "gzip");
    r.body.assign(reinterpret_cast<const char*>(a.gzip), a.gzip_size);
  } else {
    r.body.assign(reinterpret_cast<const char*>(a.data), a.size);
  }
  return r;
}

}  // namespace

void AddConsoleRoutes(Router& router, Services&) {
  // The router matches "/ui/" as "/ui". The page's own links are absolute (/ui/app.….js).
  router.Add("GET", "/ui", Access::kPublic, [](const Call& c) {
    const UiAsset* index = Find("/ui/index.html");
    if (index == nullptr) return ErrorResponse(404, "not_found", "this server has no console");
    return Serve(c.req, *index);
  });
  router.Add("GET", "/ui/{file...}", Access::kPublic, [](const Call& c) {
    const UiAsset* a = Find(StrCat("/ui/", c.Param("file")));
    if (a == nullptr) return ErrorResponse(404, "not_found", StrCat("no console file \"", c.Param("file"), "\""));
    return Serve(c.req, *a);
  });
}

}  // namespace gonfalon::server
