#include "gonfalon/rules/field_error.h"
#include "gonfalon/rules/change_set.h"

#include <algorithm>

#include "gonfalon/rules/codec.h"
#include "gonfalon/rules/str_cat.h"

namespace gonfalon::rules {

namespace {

// An item's data that does not decode: the field inside items[i].data, the item named in words.
absl::Status ItemError(const absl::Status& s, size_t i, std::string_view kind, std::string_view key) {
  absl::Status inner = WithFieldPrefix(s, StrCat("items[", i, "].data"));
  return FieldError(inner.code(), ErrorField(inner), StrCat(ErrorText(inner), " (", kind, " \"", key, "\")"));
}

std::string_view KindName(ChangedKind k) { return k == ChangedKind::kFlag ? "flag" : "segment"; }

// A JSON integer in [0, 2^53].
bool AsCount(const Value* v, int64_t& out) {
  std::optional<int64_t> n = v != nullptr ? IntegerIn(*v, 0, kMaxJsonInteger) : std::nullopt;
  if (n.has_value()) out = *n;
  return n.has_value();
}

}  // namespace

std::string EncodeChangeSetEvent(const ChangeSetEvent& event) {
  Array items;
  items.reserve(event.items.size());
  for (const ChangedItem& it : event.items) {
    Object item{{"kind", Value(KindName(it.kind))}, {"key", Value(it.key)}, {"version", Value(it.version)}};
    if (it.data.has_value()) {
      item.emplace_back("data", *it.data);
    } else {
      item.emplace_back("deleted", Value(true));
    }
    items.emplace_back(std::move(item));
  }
  Object out{{"sequence", Value(event.sequence)}};
  if (event.time_ms != 0) out.emplace_back("time", Value(event.time_ms));
  out.emplace_back("items", Value(std::move(items)));
  return ToJson(Value(std::move(out)));
}

absl::StatusOr<ChangeSetEvent> DecodeChangeSetEvent(std::string_view json) {
  absl::StatusOr<Value> parsed = ParseJson(json);
  if (!parsed.ok()) return parsed.status();
  if (!parsed->is_object()) return absl::InvalidArgumentError("expected an object");
  ChangeSetEvent out;
  if (!AsCount(parsed->Find("sequence"), out.sequence)) {
    return InvalidField("sequence", "expected an integer >= 0");
  }
  if (const Value* t = parsed->Find("time"); t != nullptr && !AsCount(t, out.time_ms)) {
    return InvalidField("time", "expected Unix milliseconds");
  }
  const Value* items = parsed->Find("items");
  if (items == nullptr || !items->is_array()) return InvalidField("items", "expected an array");
  out.items.reserve(items->as_array().size());
  for (size_t i = 0; i < items->as_array().size(); ++i) {
    const Value& item = items->as_array()[i];
    std::string path = StrCat("items[", i, "]");
    const Value* kind = item.Find("kind");
    const Value* key = item.Find("key");
    ChangedItem c;
    if (kind == nullptr || !kind->is_string() || (kind->as_string() != "flag" && kind->as_string() != "segment")) {
      return InvalidField(StrCat(path, ".kind"), "expected \"flag\" or \"segment\"");
    }
    c.kind = kind->as_string() == "flag" ? ChangedKind::kFlag : ChangedKind::kSegment;
    if (key == nullptr || !key->is_string() || key->as_string().empty()) {
      return InvalidField(StrCat(path, ".key"), "expected a non-empty string");
    }
    c.key = key->as_string();
    if (!AsCount(item.Find("version"), c.version)) {
      return InvalidField(StrCat(path, ".version"), "expected an integer >= 0");
    }
    const Value* deleted = item.Find("deleted");
    const Value* data = item.Find("data");
    bool is_deleted = deleted != nullptr && deleted->as_bool();
    if (is_deleted == (data != nullptr && !data->is_null())) {
      return InvalidField(path, "expected exactly one of \"data\" and \"deleted\":true");
    }
    if (!is_deleted) {
      if (!data->is_object()) return InvalidField(StrCat(path, ".data"), "expected an object");
      c.data = *data;
    }
    out.items.push_back(std::move(c));
  }
  return out;
}

void AppliedChanges::SortAndDedup() {
  for (auto* v : {&flags, &segments}) {
    std::sort(v->begin(), v->end());
    v->erase(std::unique(v->begin(), v->end()), v->end());
  }
}

absl::StatusOr<std::vector<DecodedChange>> DecodeChanges(const ChangeSetEvent& event) {
  std::vector<DecodedChange> decoded;
  decoded.reserve(event.items.size());
  for (size_t i = 0; i < event.items.size(); ++i) {
    const ChangedItem& it = event.items[i];
    DecodedChange d{it.kind, it.key, it.version, std::nullopt, std::nullopt};
    if (it.data.has_value()) {
      if (it.kind == ChangedKind::kFlag) {
        absl::StatusOr<Flag> f = DecodeFlag(*it.data);
        if (!f.ok()) return ItemError(f.status(), i, "flag", it.key);
        f->key = it.key;
        f->version = it.version;
        d.flag = std::move(*f);
      } else {
        absl::StatusOr<Segment> s = DecodeSegment(*it.data);
        if (!s.ok()) return ItemError(s.status(), i, "segment", it.key);
        s->key = it.key;
        s->version = it.version;
        d.segment = std::move(*s);
      }
    }
    decoded.push_back(std::move(d));
  }
  return decoded;
}

absl::StatusOr<AppliedChanges> ApplyChangeSet(const ChangeSetEvent& event, Environment& env) {
  // Decode everything first: nothing is applied unless everything decodes.
  absl::StatusOr<std::vector<DecodedChange>> decoded = DecodeChanges(event);
  if (!decoded.ok()) return decoded.status();
  AppliedChanges out;
  auto apply = [](auto& map, const std::string& key, int64_t version, auto& value, std::vector<std::string>& touched) {
    auto found = map.find(key);
    if (found != map.end() && found->second.version >= version) return;  // only if newer
    if (!value.has_value()) {
      if (found != map.end()) map.erase(found);
    } else if (found != map.end()) {
      found->second = std::move(*value);
    } else {
      map.emplace(key, std::move(*value));
    }
    touched.push_back(key);
  };
  for (DecodedChange& d : *decoded) {
    if (d.kind == ChangedKind::kFlag) {
      apply(env.flags, d.key, d.version, d.flag, out.flags);
    } else {
      apply(env.segments, d.key, d.version, d.segment, out.segments);
    }
  }
  env.sequence = std::max(env.sequence, event.sequence);
  out.SortAndDedup();
  return out;
}

}  // namespace gonfalon::rules
