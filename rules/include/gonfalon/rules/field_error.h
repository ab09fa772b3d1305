#pragma once
// Errors about one field of the input. The field's path ("rules[2].clauses[0].op") travels with
// the status as data (a payload), so whoever answers a request reports it without reading the
// message; the message starts with it too, for people: "rules[2].clauses[0].op: unknown op".
//
//   return InvalidField(StrCat(path, ".key"), "expected a string");
//   ...
//   ErrorField(status)  // "items[0].key"

#include <string>
#include <string_view>

#include "absl/status/status.h"

namespace gonfalon::rules {

// A status with `code` about `field`, its message "<field>: <message>".
absl::Status FieldError(absl::StatusCode code, std::string_view field, std::string_view message);
inline absl::Status InvalidField(std::string_view field, std::string_view message) {
  return FieldError(absl::StatusCode::kInvalidArgument, field, message);
}

// The field `s` is about; "" when it names none (an OK status names none).
std::string ErrorField(const absl::Status& s);
// What `s` says about its field: its message without the leading "<field>: ".
std::string ErrorText(const absl::Status& s);

// `s` as an error about a field inside `prefix`: its field becomes "<prefix>.<field>" (or
// "<prefix><field>" when the field starts with '['), or `prefix` when it named none; its message
// starts with the new field. OK stays OK.
absl::Status WithFieldPrefix(const absl::Status& s, std::string_view prefix);

}  // namespace gonfalon::rules
