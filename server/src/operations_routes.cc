// /healthz, /readyz, /metrics.

#include "responses.h"
#include "routes.h"

namespace gonfalon::server {

using rules::Object;
using rules::Value;

void AddOperationsRoutes(Router& router, Services& s) {
  router.Add("GET", "/healthz", Access::kPublic, [](const Call&) {
    return Json(200, Value(Object{{"status", Value("ok")}}));
  });
  // Ready once the environments are loaded, not while starting or draining (SIGTERM).
  router.Add("GET", "/readyz", Access::kPublic, [&s](const Call&) {
    return s.ready.load() ? Json(200, Value(Object{{"status", Value("ready")}}))
                          : ErrorResponse(503, "not_ready", "starting or shutting down");
  });
  router.Add("GET", "/metrics", Access::kPublic, [&s](const Call&) {
    Response r;
    r.body = s.metrics.Render();
    r.content_type = "text/plain; version=0.0.4";
    return r;
  });
}

}  // namespace gonfalon::server
