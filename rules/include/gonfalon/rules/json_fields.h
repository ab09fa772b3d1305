#pragma once
// Strict readers of a JSON object's members: the one set the codec, the store's records and the
// admin API share. An absent or null member leaves `out` as it was; a member of another type is
// an InvalidArgument about its path (rules/field_error.h), e.g. field "rules[2].id" with the
// message "rules[2].id: expected a string, got number". Integers must be whole numbers within
// ±2^53 (kMaxJsonInteger); `int` ones within int32.
//
//   RETURN_IF_ERROR(GetString(json, "name", path, flag.name));
//   RETURN_IF_ERROR(GetOptInt64(json, "expectVersion", "items[0]", expect));

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "gonfalon/rules/value.h"

namespace gonfalon::rules {

// "<path>.<name>", or `name` at the top level (empty path).
std::string FieldPath(std::string_view path, std::string_view name);
// InvalidArgument about `path`: "expected <want>, got <the type of got>".
absl::Status WrongType(std::string_view path, std::string_view want, const Value& got);

// The member `name` of `obj`, or nullptr when it is absent or null.
const Value* Member(const Value& obj, std::string_view name);
// The member if it has `type` (nullptr when absent or null); another type is an error.
absl::Status GetMember(const Value& obj, std::string_view name, std::string_view path, Value::Type type,
                       const Value*& out);

absl::Status GetString(const Value& obj, std::string_view name, std::string_view path, std::string& out);
absl::Status GetOptString(const Value& obj, std::string_view name, std::string_view path,
                          std::optional<std::string>& out);
absl::Status GetBool(const Value& obj, std::string_view name, std::string_view path, bool& out);
absl::Status GetInt64(const Value& obj, std::string_view name, std::string_view path, int64_t& out);
absl::Status GetOptInt64(const Value& obj, std::string_view name, std::string_view path,
                         std::optional<int64_t>& out);
absl::Status GetInt(const Value& obj, std::string_view name, std::string_view path, int& out);
absl::Status GetOptInt(const Value& obj, std::string_view name, std::string_view path, std::optional<int>& out);
// An array member, or nullptr when absent or null.
absl::StatusOr<const Array*> GetArray(const Value& obj, std::string_view name, std::string_view path);
// An array of strings, appended to `out`.
absl::Status GetStrings(const Value& obj, std::string_view name, std::string_view path,
                        std::vector<std::string>& out);

// `v` as an integer (the rules above), about `path`.
absl::Status ToInt64(const Value& v, std::string_view path, int64_t& out);
// `v` must be an object; `path` empty means the whole document.
absl::Status RequireObject(const Value& v, std::string_view path);

}  // namespace gonfalon::rules
