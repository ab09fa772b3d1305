#include "gonfalon/rules/json_fields.h"

#include "gonfalon/rules/field_error.h"
#include "gonfalon/rules/status_macros.h"
#include "gonfalon/rules/str_cat.h"

namespace gonfalon::rules {

std::string FieldPath(std::string_view path, std::string_view name) {
  return path.empty() ? std::string(name) : StrCat(path, ".", name);
}

absl::Status WrongType(std::string_view path, std::string_view want, const Value& got) {
  return InvalidField(path, StrCat("expected ", want, ", got ", TypeName(got.type())));
}

const Value* Member(const Value& obj, std::string_view name) {
  const Value* v = obj.Find(name);
  return (v == nullptr || v->is_null()) ? nullptr : v;
}

absl::Status GetString(const Value& obj, std::string_view name, std::string_view path,
                       std::string& out) {
  const Value* v = Member(obj, name);
  if (v == nullptr) return absl::OkStatus();
  if (!v->is_string()) return WrongType(FieldPath(path, name), "a string", *v);
  out = v->as_string();
  return absl::OkStatus();
}

absl::Status GetOptString(const Value& obj, std::string_view name, std::string_view path,
                          std::optional<std::string>& out) {
  const Value* v = Member(obj, name);
  if (v == nullptr) return absl::OkStatus();
  if (!v->is_string()) return WrongType(FieldPath(path, name), "a string", *v);
  out = v->as_string();
  return absl::OkStatus();
}

absl::Status GetBool(const Value& obj, std::string_view name, std::string_view path, bool& out) {
  const Value* v = Member(obj, name);
  if (v == nullptr) return absl::OkStatus();
  if (!v->is_bool()) return WrongType(FieldPath(path, name), "a boolean", *v);
  out = v->as_bool();
  return absl::OkStatus();
}

absl::Status ToInt64(const Value& v, std::string_view path, int64_t& out) {
  if (!v.is_number()) return WrongType(path, "an integer", v);
  std::optional<int64_t> n = IntegerIn(v, -kMaxJsonInteger, kMaxJsonInteger);
  if (!n.has_value()) return InvalidField(path, StrCat("expected an integer, got ", ToJson(v)));
  out = *n;
  return absl::OkStatus();
}

absl::Status GetInt64(const Value& obj, std::string_view name, std::string_view path,
                      int64_t& out) {
  const Value* v = Member(obj, name);
  if (v == nullptr) return absl::OkStatus();
  return ToInt64(*v, FieldPath(path, name), out);
}

absl::Status GetOptInt64(const Value& obj, std::string_view name, std::string_view path,
                         std::optional<int64_t>& out) {
  const Value* v = Member(obj, name);
  if (v == nullptr) return absl::OkStatus();
  int64_t n = 0;
  RETURN_IF_ERROR(ToInt64(*v, FieldPath(path, name), n));
  out = n;
  return absl::OkStatus();
}

absl::Status GetOptInt(const Value& obj, std::string_view name, std::string_view path,
                       std::optional<int>& out) {
  std::optional<int64_t> n;
  RETURN_IF_ERROR(GetOptInt64(obj, name, path, n));
  if (n.has_value()) {
    if (*n < INT32_MIN || *n > INT32_MAX) return InvalidField(FieldPath(path, name), "integer out of range");
    out = static_cast<int>(*n);
  }
  return absl::OkStatus();
}

absl::Status GetInt(const Value& obj, std::string_view name, std::string_view path, int& out) {
  std::optional<int> n;
  RETURN_IF_ERROR(GetOptInt(obj, name, path, n));
  if (n.has_value()) out = *n;
  return absl::OkStatus();
}

absl::Status RequireObject(const Value& v, std::string_view path) {
  if (!v.is_object()) return WrongType(path, "an object", v);
  return absl::OkStatus();
}

// An array member, or nullptr when absent.
absl::StatusOr<const Array*> GetArray(const Value& obj, std::string_view name,
                                      std::string_view path) {
  const Value* v = Member(obj, name);
  if (v == nullptr) return static_cast<const Array*>(nullptr);
  if (!v->is_array()) return WrongType(FieldPath(path, name), "an array", *v);
  return &v->as_array();
}

absl::Status GetStrings(const Value& obj, std::string_view name, std::string_view path,
                        std::vector<std::string>& out) {
  ASSIGN_OR_RETURN(const Array* arr, GetArray(obj, name, path));
  if (arr == nullptr) return absl::OkStatus();
  std::string p = FieldPath(path, name);
  out.reserve(arr->size());
  for (size_t i = 0; i < arr->size(); ++i) {
    if (!(*arr)[i].is_string()) return WrongType(StrCat(p, "[", i, "]"), "a string", (*arr)[i]);
    out.push_back((*arr)[i].as_string());
  }
  return absl::OkStatus();
}

absl::Status GetMember(const Value& obj, std::string_view name, std::string_view path, Value::Type type,
                       const Value*& out) {
  out = nullptr;
  const Value* v = Member(obj, name);
  if (v == nullptr) return absl::OkStatus();
  if (v->type() != type) return WrongType(FieldPath(path, name), TypeName(type), *v);
  out = v;
  return absl::OkStatus();
}

}  // namespace gonfalon::rules
