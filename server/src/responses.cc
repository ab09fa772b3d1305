#include "responses.h"

#include <charconv>

#include "gonfalon/rules/field_error.h"
#include "gonfalon/rules/json_fields.h"
#include "gonfalon/rules/str_cat.h"

namespace gonfalon::server {

using rules::Object;
using rules::Value;

Response Json(int status, const Value& v) {
  Response r;
  r.status = status;
  r.body = rules::ToJson(v);
  return r;
}

Response JsonText(int status, std::string body) {
  Response r;
  r.status = status;
  r.body = std::move(body);
  return r;
}

Response NoContent() {
  Response r;
  r.status = 204;
  r.content_type.clear();
  return r;
}

Value Items(rules::Array a) { return Value(Object{{"items", Value(std::move(a))}}); }

Response ErrorResponse(int http_status, std::string_view code, std::string_view message, std::string_view field) {
  Value err;
  err.Set("code", Value(code));
  err.Set("message", Value(message));
  if (!field.empty()) err.Set("field", Value(field));
  return Json(http_status, Value(Object{{"error", std::move(err)}}));
}

Response ErrorResponse(const absl::Status& s, bool if_match) {
  std::string message(s.message());
  std::string field = rules::ErrorField(s);  // carried by the status (rules/field_error.h)
  switch (s.code()) {
    case absl::StatusCode::kInvalidArgument:
      return ErrorResponse(400, "invalid_argument", message, field);
    case absl::StatusCode::kNotFound:
      return ErrorResponse(404, "not_found", message, field);
    case absl::StatusCode::kAlreadyExists:
      return ErrorResponse(409, "already_exists", message, field);
    case absl::StatusCode::kAborted:
      return if_match ? ErrorResponse(412, "precondition_failed", message, field)
                      : ErrorResponse(409, "conflict", message, field);
    case absl::StatusCode::kOutOfRange:
      return ErrorResponse(400, "out_of_range", message, field);
    case absl::StatusCode::kFailedPrecondition:
      return ErrorResponse(409, "failed_precondition", message, field);
    case absl::StatusCode::kUnauthenticated:
      return ErrorResponse(401, "unauthorized", message);
    case absl::StatusCode::kPermissionDenied:
      return ErrorResponse(403, "forbidden", message);
    case absl::StatusCode::kResourceExhausted:
      // The disk is full (or a quota): nothing was written, and writes resume with space.
      return ErrorResponse(507, "insufficient_storage", message);
    case absl::StatusCode::kUnavailable:
      return ErrorResponse(503, "unavailable", message);
    default:
      return ErrorResponse(500, "internal", message);
  }
}

std::string ETag(int64_t version) { return StrCat("\"", version, "\""); }

Response WithETag(Response r, int64_t version) {
  r.headers.emplace_back("ETag", ETag(version));
  return r;
}

std::optional<Response> NotModified(const Request& req, const std::string& etag) {
  const std::string* inm = req.Header("if-none-match");
  if (inm == nullptr || *inm != etag) return std::nullopt;
  Response r;
  r.status = 304;
  r.content_type.clear();
  r.headers.emplace_back("ETag", etag);
  return r;
}

absl::StatusOr<std::optional<int64_t>> IfMatch(const Request& req) {
  const std::string* h = req.Header("if-match");
  if (h == nullptr || *h == "*") return std::optional<int64_t>();
  std::string_view v = *h;
  if (v.substr(0, 2) == "W/") v.remove_prefix(2);
  if (v.size() >= 2 && v.front() == '"' && v.back() == '"') v = v.substr(1, v.size() - 2);
  int64_t n = -1;
  auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
  if (v.empty() || ec != std::errc() || end != v.data() + v.size() || n < 0) {
    return rules::InvalidField("If-Match", StrCat("expected an ETag such as \"3\", got ", *h));
  }
  return std::optional<int64_t>(n);
}

absl::StatusOr<Value> Body(const Request& req) {
  if (req.body.empty()) return absl::InvalidArgumentError("a JSON body is required");
  absl::StatusOr<Value> v = rules::ParseJson(req.body);
  if (!v.ok()) return absl::InvalidArgumentError(v.status().message());
  return v;
}

absl::StatusOr<Value> ObjectBody(const Request& req) {
  absl::StatusOr<Value> v = Body(req);
  if (v.ok() && !v->is_object()) {
    return absl::InvalidArgumentError(StrCat("expected a JSON object, got ", rules::TypeName(v->type())));
  }
  return v;
}

absl::Status Want(const Value& obj, std::string_view name, Value::Type type, const Value** out,
                  std::string_view prefix) {
  if (!prefix.empty() && prefix.back() == '.') prefix.remove_suffix(1);
  return rules::GetMember(obj, name, prefix, type, *out);
}

absl::StatusOr<int64_t> QueryInt(const Request& req, std::string_view name, int64_t min, int64_t max,
                                 int64_t fallback) {
  const std::string* text = req.Query(name);
  if (text == nullptr) return fallback;
  int64_t n = 0;
  auto [end, ec] = std::from_chars(text->data(), text->data() + text->size(), n);
  if (text->empty() || ec != std::errc() || end != text->data() + text->size() || n < min || n > max) {
    return rules::InvalidField(name, StrCat("expected an integer in ", min, "..", max));
  }
  return n;
}

std::string Comment(const Request& req) {
  const std::string* c = req.Query("comment");
  return c == nullptr ? std::string() : *c;
}

Value MergePatch(const Value& target, const Value& patch) {
  if (!patch.is_object()) return patch;
  Value result = target.is_object() ? target : Value(Object{});
  for (const auto& [k, v] : patch.as_object()) {
    if (v.is_null()) {
      result.Erase(k);
    } else {
      const Value* existing = result.Find(k);
      result.Set(k, MergePatch(existing ? *existing : Value(), v));
    }
  }
  return result;
}

}  // namespace gonfalon::server
