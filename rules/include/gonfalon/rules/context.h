#pragma once
// Evaluation contexts: who or what a flag is evaluated for.
//
// A context is single-kind ({"kind":"user","key":"u1",...}) or multi-kind
// ({"kind":"multi","user":{"key":"u1"},"org":{"key":"acme"}}). A missing "kind" means "user"
// (the legacy user format, whose "custom" object is flattened into attributes).
//
// A Context is always constructed; an invalid one (no key, bad kind) carries its error and
// evaluates to USER_NOT_SPECIFIED, as LaunchDarkly does.
//
// Thread safety: immutable after construction; share freely.
//
//   Context c = Context::Builder("user", "u1").Set("country", "FR").Build();
//   Context m = ContextFromJson(*ParseJson(R"({"kind":"multi","org":{"key":"acme"}})"));

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "gonfalon/rules/value.h"

namespace gonfalon::rules {

// An attribute reference: a plain name ("email") or a slash path ("/address/city") with
// "~1" for "/" and "~0" for "~" inside a component.
class AttributeRef {
 public:
  AttributeRef() = default;
  // Parses a reference; `literal` takes the whole string as one name (clauses without
  // contextKind, and bucketBy of legacy data).
  static AttributeRef Parse(std::string_view ref, bool literal = false);

  bool valid() const { return valid_; }
  // Why it is not valid ("" when it is).
  const std::string& error() const;
  // Empty when not valid.
  const std::vector<std::string>& components() const { return valid_ ? components_ : kNoComponents; }
  // The built-in attributes, resolved once at parse time so lookups skip string compares.
  enum class Builtin : uint8_t { kNone, kKey, kKind, kAnonymous };
  Builtin builtin() const { return builtin_; }
  // True for the single-component reference "kind", which reads the context kind.
  bool is_kind() const { return builtin_ == Builtin::kKind && components_.size() == 1; }
  bool operator==(const AttributeRef&) const = default;

 private:
  static AttributeRef Invalid(std::string error);
  static inline const std::vector<std::string> kNoComponents;
  bool valid_ = false;
  Builtin builtin_ = Builtin::kNone;
  // An invalid reference holds its error here instead (one string fewer in every compiled
  // clause and rollout: 100,000 flags carry hundreds of thousands).
  std::vector<std::string> components_;
  void ResolveBuiltin();
};

class Context {
 public:
  struct Single {
    Value kind;  // string
    Value key;   // string
    Value anonymous;  // bool
    Object attributes;  // everything else, including "name"
  };

  class Builder {
   public:
    Builder(std::string_view kind, std::string_view key);
    Builder& Set(std::string_view attribute, Value v);
    Builder& Anonymous(bool a);
    // Adds another kind, making the context multi-kind.
    Builder& AddKind(std::string_view kind, std::string_view key);
    Context Build();

   private:
    std::vector<Single> kinds_;
  };

  Context() = default;
  static Context Invalid(std::string error);

  bool valid() const { return error_.empty() && !kinds_.empty(); }
  const std::string& error() const { return error_; }
  bool is_multi() const { return kinds_.size() > 1; }
  const std::vector<Single>& kinds() const { return kinds_; }

  // The part of the given kind, or nullptr.
  const Single* Find(std::string_view kind) const {
    for (const Single& s : kinds_) {
      if (s.kind.as_string() == kind) return &s;
    }
    return nullptr;
  }
  // Reads an attribute of one kind's part; nullptr when the kind or attribute is absent.
  // "key", "kind", "anonymous" are built in; paths descend into objects.
  static const Value* Get(const Single& part, const AttributeRef& ref);
  const Value* Get(std::string_view kind, const AttributeRef& ref) const {
    const Single* s = Find(kind);
    return s == nullptr ? nullptr : Get(*s, ref);
  }

  // The context as JSON (single or multi form).
  Value ToValue() const;

 private:
  friend Context ContextFromJson(const Value& json);
  std::vector<Single> kinds_;
  std::string error_;
};

// Reads a context from JSON. Never fails: an invalid context carries its error.
Context ContextFromJson(const Value& json);

// A context kind is 1+ characters of [A-Za-z0-9._-] and not "kind"; "multi" only at the top.
bool IsValidKind(std::string_view kind);

}  // namespace gonfalon::rules
