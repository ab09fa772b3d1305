#pragma once
// A JSON value: what flag variations, context attributes and clause values are made of.
//
// Value is a plain immutable-by-convention tree (null, bool, number, string, array, object).
// Objects keep their members in insertion order, which keeps encoded output stable and makes
// lookups on the small objects flags carry a short linear scan.
//
// Thread safety: a const Value may be read from any number of threads.
//
//   absl::StatusOr<Value> v = ParseJson(R"({"a":[1,true,"x"]})");
//   std::string s = ToJson(*v);  // {"a":[1,true,"x"]}

#include <cstdint>
#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "absl/status/statusor.h"

namespace gonfalon::rules {

class Value;
using Array = std::vector<Value>;
using Object = std::vector<std::pair<std::string, Value>>;

class Value {
 public:
  enum class Type : uint8_t { kNull, kBool, kNumber, kString, kArray, kObject };

  Value() = default;
  Value(std::nullptr_t) {}
  Value(bool b) : v_(b) {}
  Value(int n) : v_(static_cast<double>(n)) {}
  Value(int64_t n) : v_(static_cast<double>(n)) {}
  Value(double n) : v_(n) {}
  Value(const char* s) : v_(std::string(s)) {}
  Value(std::string s) : v_(std::move(s)) {}
  Value(std::string_view s) : v_(std::string(s)) {}
  Value(Array a) : v_(std::move(a)) {}
  Value(Object o) : v_(std::move(o)) {}

  Type type() const { return static_cast<Type>(v_.index()); }
  bool is_null() const { return type() == Type::kNull; }
  bool is_bool() const { return type() == Type::kBool; }
  bool is_number() const { return type() == Type::kNumber; }
  bool is_string() const { return type() == Type::kString; }
  bool is_array() const { return type() == Type::kArray; }
  bool is_object() const { return type() == Type::kObject; }

  // Accessors return a neutral value (false, 0, "", empty) when the type differs.
  bool as_bool() const { return is_bool() ? std::get<bool>(v_) : false; }
  double as_number() const { return is_number() ? std::get<double>(v_) : 0.0; }
  const std::string& as_string() const;
  const Array& as_array() const;
  const Object& as_object() const;
  Array& mutable_array();    // converts to an empty array first if needed
  Object& mutable_object();  // converts to an empty object first if needed

  // Object member by name, or nullptr.
  const Value* Find(std::string_view name) const;
  Value* FindMutable(std::string_view name);
  // Sets (or replaces) an object member; converts to an object first if needed.
  Value& Set(std::string_view name, Value v);
  // Removes an object member; returns whether it was there.
  bool Erase(std::string_view name);

  // JSON equality: numbers by value, objects regardless of member order.
  friend bool operator==(const Value& a, const Value& b);

 private:
  std::variant<std::monostate, bool, double, std::string, Array, Object> v_;
};

std::string_view TypeName(Value::Type t);

// Parses one JSON document. Errors name the problem, e.g. "invalid JSON: TAPE_ERROR ...".
// Depth is limited (kMaxJsonDepth) so hostile input cannot exhaust the stack.
inline constexpr int kMaxJsonDepth = 128;
absl::StatusOr<Value> ParseJson(std::string_view text);
// Only the members `names` of the JSON object `text`: an object of those present, in the
// order of `names`, the rest parsed but not converted (a few fields of 100,000 items' JSON).
// Errors as ParseJson's, or "expected a JSON object".
absl::StatusOr<Value> ParseJsonMembers(std::string_view text, std::initializer_list<std::string_view> names);
// The same, except that the member `array`, when it is one of `names` and an array, keeps of
// each element only the members `element_names` (an element that is not an object becomes
// null): the kinds and keys of a change set's thousands of items without their data.
absl::StatusOr<Value> ParseJsonMembers(std::string_view text, std::initializer_list<std::string_view> names,
                                       std::string_view array, std::initializer_list<std::string_view> element_names);

// The largest integer a JSON number (a double) holds exactly: 2^53.
inline constexpr int64_t kMaxJsonInteger = int64_t{1} << 53;
// `v` as an integer when it is a number without a fraction in [min, max]; nullopt otherwise
// (not a number, a fraction, out of range). Bounds should lie within ±kMaxJsonInteger.
std::optional<int64_t> IntegerIn(const Value& v, int64_t min, int64_t max);

// How deeply a value nests: 1 for a scalar, 1 + the deepest member for arrays and objects.
int JsonDepth(const Value& v);
// The deepest a flag or segment may nest when written. Stored items travel inside envelopes
// (stream events, polling payloads, history records) that add a few levels; every reader of
// those accepts kMaxJsonDepth, so items are held well below it.
inline constexpr int kMaxItemDepth = 64;

// Compact JSON. Integral numbers up to 2^53 print without a fraction.
std::string ToJson(const Value& v);
void AppendJson(const Value& v, std::string& out);
void AppendJsonString(std::string_view s, std::string& out);
void AppendJsonNumber(double d, std::string& out);

}  // namespace gonfalon::rules
