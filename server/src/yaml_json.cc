#include "yaml_json.h"

#include <yaml-cpp/yaml.h>

#include <cmath>
#include <cstdlib>

#include "gonfalon/rules/status_macros.h"
#include "gonfalon/rules/str_cat.h"

namespace gonfalon::server {

using rules::Value;

namespace {

// A plain scalar as JSON would read it: a number only when all of it is one.
Value PlainScalar(const std::string& s) {
  if (s.empty() || s == "~" || s == "null" || s == "Null" || s == "NULL") return Value();
  if (s == "true" || s == "True" || s == "TRUE") return Value(true);
  if (s == "false" || s == "False" || s == "FALSE") return Value(false);
  absl::StatusOr<Value> number = rules::ParseJson(s);
  if (number.ok() && number->is_number()) return *number;
  return Value(s);
}

absl::StatusOr<Value> FromNode(const YAML::Node& n, int depth) {
  if (depth > 64) return absl::InvalidArgumentError("the YAML nests more than 64 levels");
  switch (n.Type()) {
    case YAML::NodeType::Null:
    case YAML::NodeType::Undefined:
      return Value();
    case YAML::NodeType::Scalar:
      return n.Tag() == "!" ? Value(n.Scalar()) : PlainScalar(n.Scalar());
    case YAML::NodeType::Sequence: {
      rules::Array out;
      for (const YAML::Node& e : n) {
        ASSIGN_OR_RETURN(Value v, FromNode(e, depth + 1));
        out.push_back(std::move(v));
      }
      return Value(std::move(out));
    }
    case YAML::NodeType::Map: {
      rules::Object out;
      for (const auto& kv : n) {
        if (!kv.first.IsScalar()) {
          return absl::InvalidArgumentError(StrCat("line ", kv.first.Mark().line + 1, ": a mapping key must be a scalar"));
        }
        ASSIGN_OR_RETURN(Value v, FromNode(kv.second, depth + 1));
        std::string key = kv.first.Scalar();
        for (const auto& [seen, unused] : out) {
          if (seen == key) return absl::InvalidArgumentError(StrCat("line ", kv.first.Mark().line + 1, ": duplicate key \"", key, "\""));
        }
        out.emplace_back(std::move(key), std::move(v));
      }
      return Value(std::move(out));
    }
  }
  return Value();
}

void Emit(YAML::Emitter& e, const Value& v) {
  switch (v.type()) {
    case Value::Type::kNull:
      e << YAML::Null;
      return;
    case Value::Type::kBool:
      e << (v.as_bool() ? "true" : "false");
      return;
    case Value::Type::kNumber:
      e << rules::ToJson(v);  // the JSON spelling: integers without a point
      return;
    case Value::Type::kString:
      e << YAML::DoubleQuoted << v.as_string();
      return;
    case Value::Type::kArray:
      if (v.as_array().empty()) {
        e << YAML::Flow << YAML::BeginSeq << YAML::EndSeq;
        return;
      }
      e << YAML::BeginSeq;
      for (const Value& x : v.as_array()) Emit(e, x);
      e << YAML::EndSeq;
      return;
    case Value::Type::kObject:
      if (v.as_object().empty()) {
        e << YAML::Flow << YAML::BeginMap << YAML::EndMap;
        return;
      }
      e << YAML::BeginMap;
      for (const auto& [k, x] : v.as_object()) {
        e << YAML::Key << k << YAML::Value;
        Emit(e, x);
      }
      e << YAML::EndMap;
      return;
  }
}

}  // namespace

absl::StatusOr<Value> ParseYaml(std::string_view text) {
  YAML::Node root;
  try {
    root = YAML::Load(std::string(text));
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(StrCat("YAML line ", e.mark.line + 1, ", column ", e.mark.column + 1, ": ", e.msg));
  }
  return FromNode(root, 0);
}

std::string ToYaml(const Value& v) {
  YAML::Emitter e;
  e.SetIndent(2);
  Emit(e, v);
  return StrCat(e.c_str(), "\n");
}

}  // namespace gonfalon::server
