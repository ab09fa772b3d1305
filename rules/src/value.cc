#include "gonfalon/rules/value.h"

#include <algorithm>
#include <utility>

#include <charconv>
#include <cmath>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/string_view.h"
#include "json_convert.h"
#include "gonfalon/rules/status_macros.h"
#include "gonfalon/rules/str_cat.h"
#include "simdjson.h"

namespace gonfalon::rules {
namespace {

const std::string& EmptyString() {
  static const std::string* s = new std::string();
  return *s;
}
const Array& EmptyArray() {
  static const Array* a = new Array();
  return *a;
}
const Object& EmptyObject() {
  static const Object* o = new Object();
  return *o;
}

}  // namespace

namespace internal {

absl::Status ConvertJson(simdjson::dom::element e, int depth, Value& out) {
  if (depth > kMaxJsonDepth) {
    return absl::InvalidArgumentError(
        StrCat("invalid JSON: nesting deeper than ", kMaxJsonDepth));
  }
  switch (e.type()) {
    case simdjson::dom::element_type::NULL_VALUE:
      out = Value();
      return absl::OkStatus();
    case simdjson::dom::element_type::BOOL:
      out = Value(bool(e.get_bool().value_unsafe()));
      return absl::OkStatus();
    case simdjson::dom::element_type::INT64:
      out = Value(static_cast<double>(e.get_int64().value_unsafe()));
      return absl::OkStatus();
    case simdjson::dom::element_type::UINT64:
      out = Value(static_cast<double>(e.get_uint64().value_unsafe()));
      return absl::OkStatus();
    case simdjson::dom::element_type::DOUBLE:
      out = Value(e.get_double().value_unsafe());
      return absl::OkStatus();
    case simdjson::dom::element_type::STRING:
      out = Value(std::string(e.get_string().value_unsafe()));
      return absl::OkStatus();
    case simdjson::dom::element_type::ARRAY: {
      Array arr;
      simdjson::dom::array a = e.get_array().value_unsafe();
      arr.reserve(a.size());
      for (simdjson::dom::element child : a) {
        Value v;
        absl::Status s = ConvertJson(child, depth + 1, v);
        if (!s.ok()) return s;
        arr.push_back(std::move(v));
      }
      out = Value(std::move(arr));
      return absl::OkStatus();
    }
    case simdjson::dom::element_type::OBJECT: {
      Object obj;
      simdjson::dom::object o = e.get_object().value_unsafe();
      obj.reserve(o.size());
      // Duplicate member names: the last one wins, as in most JSON readers. Past a few
      // members the check goes through a hash map, so parsing stays linear in the members.
      // (32: a flag's ~20 members are found faster by a scan than through a map built for them.)
      constexpr size_t kLinearScan = 32;
      absl::flat_hash_map<absl::string_view, size_t> index;
      for (simdjson::dom::key_value_pair kv : o) {
        Value v;
        absl::Status s = ConvertJson(kv.value, depth + 1, v);
        if (!s.ok()) return s;
        absl::string_view name(kv.key.data(), kv.key.size());
        size_t found = obj.size();
        if (obj.size() <= kLinearScan) {
          for (size_t i = 0; i < obj.size(); ++i) {
            if (obj[i].first == kv.key) {
              found = i;
              break;
            }
          }
          if (obj.size() == kLinearScan && found == obj.size()) {
            for (size_t i = 0; i < obj.size(); ++i) index.emplace(absl::string_view(obj[i].first), i);
          }
        } else if (auto it = index.find(name); it != index.end()) {
          found = it->second;
        }
        if (found < obj.size()) {
          obj[found].second = std::move(v);
          continue;
        }
        obj.emplace_back(std::string(kv.key), std::move(v));
        if (obj.size() > kLinearScan) index.emplace(name, obj.size() - 1);
      }
      out = Value(std::move(obj));
      return absl::OkStatus();
    }
  }
  return absl::InvalidArgumentError("invalid JSON: unknown element type");
}

}  // namespace internal

const std::string& Value::as_string() const {
  return is_string() ? std::get<std::string>(v_) : EmptyString();
}
const Array& Value::as_array() const {
  return is_array() ? std::get<Array>(v_) : EmptyArray();
}
const Object& Value::as_object() const {
  return is_object() ? std::get<Object>(v_) : EmptyObject();
}
Array& Value::mutable_array() {
  if (!is_array()) v_ = Array();
  return std::get<Array>(v_);
}
Object& Value::mutable_object() {
  if (!is_object()) v_ = Object();
  return std::get<Object>(v_);
}

Value* Value::FindMutable(std::string_view name) {
  return const_cast<Value*>(std::as_const(*this).Find(name));
}

const Value* Value::Find(std::string_view name) const {
  if (!is_object()) return nullptr;
  for (const auto& [k, v] : std::get<Object>(v_)) {
    if (k == name) return &v;
  }
  return nullptr;
}

Value& Value::Set(std::string_view name, Value v) {
  Object& o = mutable_object();
  for (auto& [k, existing] : o) {
    if (k == name) {
      existing = std::move(v);
      return existing;
    }
  }
  o.emplace_back(std::string(name), std::move(v));
  return o.back().second;
}

bool Value::Erase(std::string_view name) {
  if (!is_object()) return false;
  Object& o = std::get<Object>(v_);
  for (auto it = o.begin(); it != o.end(); ++it) {
    if (it->first == name) {
      o.erase(it);
      return true;
    }
  }
  return false;
}

bool operator==(const Value& a, const Value& b) {
  if (a.type() != b.type()) return false;
  switch (a.type()) {
    case Value::Type::kNull:
      return true;
    case Value::Type::kBool:
      return a.as_bool() == b.as_bool();
    case Value::Type::kNumber:
      return a.as_number() == b.as_number();
    case Value::Type::kString:
      return a.as_string() == b.as_string();
    case Value::Type::kArray:
      return a.as_array() == b.as_array();
    case Value::Type::kObject: {
      const Object& oa = a.as_object();
      const Object& ob = b.as_object();
      if (oa.size() != ob.size()) return false;
      for (const auto& [k, v] : oa) {
        const Value* other = b.Find(k);
        if (other == nullptr || !(*other == v)) return false;
      }
      return true;
    }
  }
  return false;
}

std::optional<int64_t> IntegerIn(const Value& v, int64_t min, int64_t max) {
  if (!v.is_number()) return std::nullopt;
  double d = v.as_number();
  if (!(d >= static_cast<double>(min) && d <= static_cast<double>(max)) || d != std::floor(d)) return std::nullopt;
  return static_cast<int64_t>(d);
}

int JsonDepth(const Value& v) {
  int deepest = 0;
  if (v.is_array()) {
    for (const Value& e : v.as_array()) deepest = std::max(deepest, JsonDepth(e));
  } else if (v.is_object()) {
    for (const auto& [k, e] : v.as_object()) deepest = std::max(deepest, JsonDepth(e));
  }
  return deepest + 1;
}

std::string_view TypeName(Value::Type t) {
  switch (t) {
    case Value::Type::kNull:
      return "null";
    case Value::Type::kBool:
      return "boolean";
    case Value::Type::kNumber:
      return "number";
    case Value::Type::kString:
      return "string";
    case Value::Type::kArray:
      return "array";
    case Value::Type::kObject:
      return "object";
  }
  return "unknown";
}

namespace {

// Parses `text` and hands its root to `use`, which converts what it wants.
template <typename Use>
absl::StatusOr<Value> ParseWith(std::string_view text, Use use) {
  // One parser per thread keeps its buffers between calls for small documents. A parser's
  // buffers stay sized for the largest document it has seen, about fourteen times its size
  // (tape 8, structural indexes 4, strings 5/3 bytes per byte), so a large document gets a
  // parser of its own that is freed after it: otherwise every thread that once parsed a 1 MiB
  // segment would hold ~14 MiB for the life of the process. 16 KiB
  // covers a flag, a change set of a few items and a request of a small write; at 64 KiB the
  // server's 32 workers each came to hold ~0.7 MiB after pruning the history's bulk change
  // sets (~22 MiB in all, docs/performance.md, session 26).
  constexpr size_t kKeepCapacity = 16 * 1024;
  thread_local simdjson::dom::parser small_parser(kKeepCapacity);
  std::optional<simdjson::dom::parser> large_parser;
  simdjson::dom::parser* parser = &small_parser;
  if (text.size() > kKeepCapacity) parser = &large_parser.emplace(text.size());
  simdjson::padded_string padded(text);
  simdjson::dom::element root;
  simdjson::error_code err = parser->parse(padded).get(root);
  if (err != simdjson::SUCCESS) {
    return absl::InvalidArgumentError(
        StrCat("invalid JSON: ", simdjson::error_message(err)));
  }
  Value out;
  absl::Status s = use(root, out);
  if (!s.ok()) return s;
  return out;
}

}  // namespace

absl::StatusOr<Value> ParseJson(std::string_view text) { return internal::ParseJsonAt(text, 0); }

absl::StatusOr<Value> internal::ParseJsonAt(std::string_view text, int depth) {
  return ParseWith(text, [depth](simdjson::dom::element root, Value& out) { return ConvertJson(root, depth, out); });
}

namespace {
// Of the array member `array`, only the members `element_names` of each element.
struct ArrayProjection {
  std::string_view array;
  std::initializer_list<std::string_view> element_names;
};

// The members `names` of `object` (at `depth`), converted, in the order of `names`; absent ones
// left out. With `projection`, its array member's elements keep only the members it names (an
// element that is not an object becomes null).
absl::Status ConvertMembers(simdjson::dom::object object, std::initializer_list<std::string_view> names, int depth,
                            const ArrayProjection* projection, Object& members) {
  for (std::string_view name : names) {
    simdjson::dom::element e;
    if (object.at_key(name).get(e) != simdjson::SUCCESS) continue;  // absent
    Value v;
    simdjson::dom::array elements;
    if (projection != nullptr && name == projection->array && e.get(elements) == simdjson::SUCCESS) {
      Array& projected = v.mutable_array();
      projected.reserve(elements.size());
      for (simdjson::dom::element element : elements) {
        Value item;  // null unless an object
        simdjson::dom::object fields;
        if (element.get(fields) == simdjson::SUCCESS) {
          RETURN_IF_ERROR(ConvertMembers(fields, projection->element_names, depth + 2, nullptr, item.mutable_object()));
        }
        projected.push_back(std::move(item));
      }
    } else {
      RETURN_IF_ERROR(internal::ConvertJson(e, depth, v));
    }
    members.emplace_back(std::string(name), std::move(v));
  }
  return absl::OkStatus();
}

absl::StatusOr<Value> ParseMembers(std::string_view text, std::initializer_list<std::string_view> names,
                                   const ArrayProjection* projection) {
  return ParseWith(text, [&](simdjson::dom::element root, Value& out) -> absl::Status {
    simdjson::dom::object object;
    if (root.get(object) != simdjson::SUCCESS) return absl::InvalidArgumentError("expected a JSON object");
    return ConvertMembers(object, names, 1, projection, out.mutable_object());
  });
}
}  // namespace

absl::StatusOr<Value> ParseJsonMembers(std::string_view text, std::initializer_list<std::string_view> names) {
  return ParseMembers(text, names, nullptr);
}

absl::StatusOr<Value> ParseJsonMembers(std::string_view text, std::initializer_list<std::string_view> names,
                                       std::string_view array, std::initializer_list<std::string_view> element_names) {
  ArrayProjection projection{array, element_names};
  return ParseMembers(text, names, &projection);
}

void AppendJsonString(std::string_view s, std::string& out) {
  static constexpr char kHex[] = "0123456789abcdef";
  out.push_back('"');
  // Characters that need no escape are appended a run at a time.
  size_t run = 0;
  for (size_t i = 0; i < s.size(); ++i) {
    char c = s[i];
    auto u = static_cast<unsigned char>(c);
    if (u >= 0x20 && c != '"' && c != '\\') continue;
    out.append(s.data() + run, i - run);
    run = i + 1;
    switch (c) {
      case '"':
        out.append("\\\"");
        break;
      case '\\':
        out.append("\\\\");
        break;
      case '\n':
        out.append("\\n");
        break;
      case '\r':
        out.append("\\r");
        break;
      case '\t':
        out.append("\\t");
        break;
      case '\b':
        out.append("\\b");
        break;
      case '\f':
        out.append("\\f");
        break;
      default:
        out.append("\\u00");
        out.push_back(kHex[u >> 4]);
        out.push_back(kHex[u & 0xF]);
    }
  }
  out.append(s.data() + run, s.size() - run);
  out.push_back('"');
}

void AppendJsonNumber(double d, std::string& out) {
  if (!std::isfinite(d)) {  // JSON has no NaN or infinity
    out.append("null");
    return;
  }
  char buf[32];
  if (d == std::floor(d) && std::fabs(d) <= 9007199254740992.0) {
    auto [p, ec] = std::to_chars(buf, buf + sizeof buf, static_cast<int64_t>(d));
    out.append(buf, p);
    return;
  }
  auto [p, ec] = std::to_chars(buf, buf + sizeof buf, d);
  out.append(buf, p);
}

void AppendJson(const Value& v, std::string& out) {
  switch (v.type()) {
    case Value::Type::kNull:
      out.append("null");
      return;
    case Value::Type::kBool:
      out.append(v.as_bool() ? "true" : "false");
      return;
    case Value::Type::kNumber:
      AppendJsonNumber(v.as_number(), out);
      return;
    case Value::Type::kString:
      AppendJsonString(v.as_string(), out);
      return;
    case Value::Type::kArray: {
      out.push_back('[');
      bool first = true;
      for (const Value& e : v.as_array()) {
        if (!first) out.push_back(',');
        first = false;
        AppendJson(e, out);
      }
      out.push_back(']');
      return;
    }
    case Value::Type::kObject: {
      out.push_back('{');
      bool first = true;
      for (const auto& [k, e] : v.as_object()) {
        if (!first) out.push_back(',');
        first = false;
        AppendJsonString(k, out);
        out.push_back(':');
        AppendJson(e, out);
      }
      out.push_back('}');
      return;
    }
  }
}

std::string ToJson(const Value& v) {
  std::string out;
  AppendJson(v, out);
  return out;
}

}  // namespace gonfalon::rules
