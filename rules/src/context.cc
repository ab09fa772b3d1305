#include "gonfalon/rules/context.h"

#include <algorithm>

#include "gonfalon/rules/str_cat.h"

namespace gonfalon::rules {

AttributeRef AttributeRef::Invalid(std::string error) {
  AttributeRef r;
  r.components_.push_back(std::move(error));
  return r;
}

const std::string& AttributeRef::error() const {
  static const std::string kNone;
  return valid_ || components_.empty() ? kNone : components_.front();  // default-constructed: no error
}

AttributeRef AttributeRef::Parse(std::string_view ref, bool literal) {
  AttributeRef r;
  if (ref.empty()) {
    return Invalid("attribute reference is empty");
  }
  if (literal || ref[0] != '/') {
    r.components_.emplace_back(ref);
    r.valid_ = true;
    r.ResolveBuiltin();
    return r;
  }
  if (ref.size() == 1) {
    return Invalid("attribute reference \"/\" names no attribute");
  }
  std::string_view rest = ref.substr(1);
  while (true) {
    size_t slash = rest.find('/');
    std::string_view part = rest.substr(0, slash);
    if (part.empty()) {
      return Invalid(StrCat("attribute reference \"", ref, "\" has an empty component"));
    }
    std::string comp;
    comp.reserve(part.size());
    for (size_t i = 0; i < part.size(); ++i) {
      if (part[i] != '~') {
        comp.push_back(part[i]);
        continue;
      }
      if (i + 1 < part.size() && part[i + 1] == '0') {
        comp.push_back('~');
      } else if (i + 1 < part.size() && part[i + 1] == '1') {
        comp.push_back('/');
      } else {
        return Invalid(StrCat("attribute reference \"", ref, "\" has an invalid escape (only ~0 and ~1 are allowed)"));
      }
      ++i;
    }
    r.components_.push_back(std::move(comp));
    if (slash == std::string_view::npos) break;
    rest = rest.substr(slash + 1);
  }
  r.valid_ = true;
  r.ResolveBuiltin();
  return r;
}

void AttributeRef::ResolveBuiltin() {
  const std::string& first = components_[0];
  if (first == "key") {
    builtin_ = Builtin::kKey;
  } else if (first == "kind") {
    builtin_ = Builtin::kKind;
  } else if (first == "anonymous") {
    builtin_ = Builtin::kAnonymous;
  }
}

namespace {
// Attributes sorted by name, each name once (the last value wins), so that a lookup is a
// binary search and a context costs linear-logarithmic time in its attributes, not quadratic.
void NormalizeAttributes(Object& attributes) {
  std::stable_sort(attributes.begin(), attributes.end(),
                   [](const auto& a, const auto& b) { return a.first < b.first; });
  size_t out = 0;
  for (size_t i = 0; i < attributes.size(); ++i) {
    if (out > 0 && attributes[out - 1].first == attributes[i].first) {
      attributes[out - 1].second = std::move(attributes[i].second);
    } else {
      if (out != i) attributes[out] = std::move(attributes[i]);
      ++out;
    }
  }
  attributes.resize(out);
}
}  // namespace

bool IsValidKind(std::string_view kind) {
  if (kind.empty() || kind == "kind" || kind == "multi") return false;
  return std::all_of(kind.begin(), kind.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '.' || c == '_' || c == '-';
  });
}

const Value* Context::Get(const Single& part, const AttributeRef& ref) {
  if (!ref.valid()) return nullptr;
  const auto& comps = ref.components();
  const Value* v = nullptr;
  switch (ref.builtin()) {
    case AttributeRef::Builtin::kKey:
      v = &part.key;
      break;
    case AttributeRef::Builtin::kKind:
      v = &part.kind;
      break;
    case AttributeRef::Builtin::kAnonymous:
      v = &part.anonymous;
      break;
    case AttributeRef::Builtin::kNone: {
      // The usual few attributes: a scan of equality tests (which compare sizes first) beats
      // a binary search of ordering comparisons. Many: they are sorted (NormalizeAttributes).
      constexpr size_t kScanUpTo = 16;
      if (part.attributes.size() <= kScanUpTo) {
        for (const auto& [name, val] : part.attributes) {
          if (name == comps[0]) {
            v = &val;
            break;
          }
        }
        break;
      }
      auto it = std::lower_bound(part.attributes.begin(), part.attributes.end(), comps[0],
                                 [](const auto& a, const std::string& name) { return a.first < name; });
      if (it != part.attributes.end() && it->first == comps[0]) v = &it->second;
      break;
    }
  }
  for (size_t i = 1; v != nullptr && i < comps.size(); ++i) {
    v = v->Find(comps[i]);  // nullptr unless v is an object with that member
  }
  return v;
}

Context Context::Invalid(std::string error) {
  Context c;
  c.error_ = std::move(error);
  return c;
}

Context::Builder::Builder(std::string_view kind, std::string_view key) { AddKind(kind, key); }

Context::Builder& Context::Builder::AddKind(std::string_view kind, std::string_view key) {
  Single s;
  s.kind = Value(kind);
  s.key = Value(key);
  s.anonymous = Value(false);
  kinds_.push_back(std::move(s));
  return *this;
}

Context::Builder& Context::Builder::Set(std::string_view attribute, Value v) {
  Single& s = kinds_.back();
  if (attribute == "anonymous") {
    s.anonymous = Value(v.as_bool());
    return *this;
  }
  // Duplicates are resolved in Build() (the last value wins).
  s.attributes.emplace_back(std::string(attribute), std::move(v));
  return *this;
}

Context::Builder& Context::Builder::Anonymous(bool a) {
  kinds_.back().anonymous = Value(a);
  return *this;
}

Context Context::Builder::Build() {
  Context c;
  for (size_t i = 0; i < kinds_.size(); ++i) {
    const Single& s = kinds_[i];
    if (!IsValidKind(s.kind.as_string())) {
      return Invalid(StrCat("invalid context kind \"", s.kind.as_string(), "\""));
    }
    if (s.key.as_string().empty()) {
      return Invalid(StrCat("context of kind \"", s.kind.as_string(), "\" has no key"));
    }
    for (size_t j = 0; j < i; ++j) {
      if (kinds_[j].kind.as_string() == s.kind.as_string()) {
        return Invalid(StrCat("context kind \"", s.kind.as_string(), "\" appears twice"));
      }
    }
  }
  c.kinds_ = kinds_;
  for (Single& s : c.kinds_) NormalizeAttributes(s.attributes);
  return c;
}

namespace {

// Fills one kind's part from its JSON object (which no longer carries "kind" for multi parts).
// Returns an error message, empty on success.
std::string ReadSingle(const Value& obj, std::string_view kind, bool legacy, Context::Single& out) {
  if (!obj.is_object()) {
    return StrCat("context of kind \"", kind, "\" must be a JSON object");
  }
  if (!IsValidKind(kind)) return StrCat("invalid context kind \"", kind, "\"");
  out.kind = Value(kind);
  out.anonymous = Value(false);
  const Value* key = obj.Find("key");
  if (key == nullptr || !key->is_string()) {
    return StrCat("context of kind \"", kind, "\" needs a string \"key\"");
  }
  if (key->as_string().empty()) {
    return StrCat("context of kind \"", kind, "\" has an empty key");
  }
  out.key = *key;
  for (const auto& [name, v] : obj.as_object()) {
    if (name == "key" || name == "kind" || name == "_meta") continue;
    if (name == "anonymous") {
      if (!v.is_bool() && !v.is_null()) {
        return StrCat("context of kind \"", kind, "\": \"anonymous\" must be a boolean");
      }
      out.anonymous = Value(v.as_bool());
      continue;
    }
    if (name == "name" && !v.is_string() && !v.is_null()) {
      return StrCat("context of kind \"", kind, "\": \"name\" must be a string");
    }
    if (legacy && name == "custom" && v.is_object()) {
      for (const auto& [cname, cv] : v.as_object()) out.attributes.emplace_back(cname, cv);
      continue;
    }
    if (v.is_null()) continue;  // a null attribute is the same as an absent one
    out.attributes.emplace_back(name, v);
  }
  NormalizeAttributes(out.attributes);
  return {};
}

}  // namespace

Context ContextFromJson(const Value& json) {
  if (!json.is_object()) return Context::Invalid("context must be a JSON object");
  const Value* kind = json.Find("kind");
  Context c;
  if (kind == nullptr) {
    Context::Single s;
    std::string err = ReadSingle(json, "user", /*legacy=*/true, s);
    if (!err.empty()) return Context::Invalid(err);
    c.kinds_.push_back(std::move(s));
    return c;
  }
  if (!kind->is_string()) return Context::Invalid("context \"kind\" must be a string");
  if (kind->as_string() != "multi") {
    Context::Single s;
    std::string err = ReadSingle(json, kind->as_string(), /*legacy=*/false, s);
    if (!err.empty()) return Context::Invalid(err);
    c.kinds_.push_back(std::move(s));
    return c;
  }
  for (const auto& [name, part] : json.as_object()) {
    if (name == "kind") continue;
    if (name == "_meta") continue;
    Context::Single s;
    std::string err = ReadSingle(part, name, /*legacy=*/false, s);
    if (!err.empty()) return Context::Invalid(err);
    c.kinds_.push_back(std::move(s));
  }
  if (c.kinds_.empty()) return Context::Invalid("multi-kind context has no kinds");
  return c;
}

Value Context::ToValue() const {
  auto single = [](const Single& s, bool with_kind) {
    Value v;
    if (with_kind) v.Set("kind", s.kind);
    v.Set("key", s.key);
    if (s.anonymous.as_bool()) v.Set("anonymous", Value(true));
    // Attributes are unique and never "kind", "key" or "anonymous" (those are fields of
    // Single; a Builder::Set of one of them is dropped here): appended without a scan.
    Object& members = v.mutable_object();
    members.reserve(members.size() + s.attributes.size());
    for (const auto& [name, a] : s.attributes) {
      if (name == "kind" || name == "key" || name == "anonymous") continue;
      members.emplace_back(name, a);
    }
    return v;
  };
  if (kinds_.size() == 1) return single(kinds_[0], true);
  Value v;
  v.Set("kind", Value("multi"));
  for (const Single& s : kinds_) v.Set(s.kind.as_string(), single(s, false));
  return v;
}

}  // namespace gonfalon::rules
