#include "gonfalon/rules/field_error.h"

#include "absl/strings/cord.h"
#include "gonfalon/rules/str_cat.h"

namespace gonfalon::rules {
namespace {

constexpr char kFieldPayload[] = "gonfalon/field";

}  // namespace

absl::Status FieldError(absl::StatusCode code, std::string_view field, std::string_view message) {
  absl::Status s(code, field.empty() ? std::string(message) : StrCat(field, ": ", message));
  if (!field.empty()) s.SetPayload(kFieldPayload, absl::Cord(std::string(field)));
  return s;
}

std::string ErrorField(const absl::Status& s) {
  auto field = s.GetPayload(kFieldPayload);  // absl::optional<absl::Cord>
  return field.has_value() ? std::string(*field) : std::string();
}

std::string ErrorText(const absl::Status& s) {
  std::string message(s.message());
  std::string field = ErrorField(s);
  // FieldError made the message "<field>: <text>".
  if (!field.empty() && message.compare(0, field.size(), field) == 0 && message.compare(field.size(), 2, ": ") == 0) {
    message.erase(0, field.size() + 2);
  }
  return message;
}

absl::Status WithFieldPrefix(const absl::Status& s, std::string_view prefix) {
  if (s.ok()) return s;
  std::string field = ErrorField(s);
  if (field.empty()) return FieldError(s.code(), prefix, ErrorText(s));
  return FieldError(s.code(), StrCat(prefix, field[0] == '[' ? "" : ".", field), ErrorText(s));
}

}  // namespace gonfalon::rules
