#pragma once
// Building blocks of the API's handlers: JSON responses, the error body, ETags and
// preconditions, request bodies and their fields.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "gonfalon/rules/status_macros.h"
#include "gonfalon/rules/value.h"
#include "http_types.h"

namespace gonfalon::server {

Response Json(int status, const rules::Value& v);
// A body that is JSON already (kept item JSON assembled into a list).
Response JsonText(int status, std::string body);
Response NoContent();
// {"items":[...]}
rules::Value Items(rules::Array a);

// {"error":{"code","message","field"}} from a Status (the one mapping of Status codes to HTTP
// statuses); `if_match` turns a version conflict into 412 instead of 409.
Response ErrorResponse(const absl::Status& status, bool if_match = false);
Response ErrorResponse(int http_status, std::string_view code, std::string_view message,
                       std::string_view field = {});

std::string ETag(int64_t version);
Response WithETag(Response r, int64_t version);
// 304 when the request's If-None-Match is `etag`.
std::optional<Response> NotModified(const Request& req, const std::string& etag);
// If-Match: "n" (or n, W/"n", or *). nullopt when absent or "*"; an error for anything else.
absl::StatusOr<std::optional<int64_t>> IfMatch(const Request& req);

// The body as JSON (required), and as a JSON object.
absl::StatusOr<rules::Value> Body(const Request& req);
absl::StatusOr<rules::Value> ObjectBody(const Request& req);
// Reads an optional member of `obj` of the given type into *out (null when absent or JSON
// null); a member of another type is an InvalidArgument naming `prefix` + name.
absl::Status Want(const rules::Value& obj, std::string_view name, rules::Value::Type type,
                  const rules::Value** out, std::string_view prefix = {});
// An integer query parameter in [min, max]; `fallback` when absent.
absl::StatusOr<int64_t> QueryInt(const Request& req, std::string_view name, int64_t min, int64_t max,
                                 int64_t fallback);

// The `comment` query parameter of a write, or "".
std::string Comment(const Request& req);

// RFC 7386 JSON merge patch.
rules::Value MergePatch(const rules::Value& target, const rules::Value& patch);

}  // namespace gonfalon::server

// In handlers: return the error response of a failed Status / StatusOr.
#define TRY(expr)                                               \
  do {                                                          \
    absl::Status try_status_ = (expr);                          \
    if (!try_status_.ok()) return ErrorResponse(try_status_);   \
  } while (0)

#define TRY_ASSIGN_IMPL(tmp, lhs, expr)                \
  auto tmp = (expr);                                   \
  if (!tmp.ok()) return ErrorResponse(tmp.status());   \
  lhs = std::move(*tmp)
#define TRY_ASSIGN(lhs, expr) TRY_ASSIGN_IMPL(GONFALON_STATUS_CONCAT(try_, __LINE__), lhs, expr)
