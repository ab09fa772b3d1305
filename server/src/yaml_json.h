#pragma once
// YAML for project documents (docs/flags-as-code.md), through yaml-cpp: the same tree as
// JSON. Reading: mappings are objects, sequences arrays; a plain scalar is null (~, null,
// empty), a boolean (true, false), a number (what JSON calls one), or else a string; a quoted
// scalar is always a string. Writing: block style, strings double-quoted (so "true" and "1"
// stay strings), keys in the order given.

#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "gonfalon/rules/value.h"

namespace gonfalon::server {

// InvalidArgument with the line and column of a syntax error.
absl::StatusOr<rules::Value> ParseYaml(std::string_view text);
std::string ToYaml(const rules::Value& v);

}  // namespace gonfalon::server
