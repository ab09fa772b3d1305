#include "launchdarkly_import.h"

#include "gonfalon/rules/codec.h"
#include "gonfalon/rules/field_error.h"
#include "gonfalon/rules/json_fields.h"
#include "gonfalon/rules/status_macros.h"
#include "gonfalon/rules/str_cat.h"
#include "project_document.h"

namespace gonfalon::server {

using rules::Object;
using rules::Value;

namespace {

const Value* Section(const Value* doc, std::string_view name) {
  const Value* v = doc != nullptr && doc->is_object() ? doc->Find(name) : nullptr;
  return v != nullptr && v->is_object() ? v : nullptr;
}

}  // namespace

absl::StatusOr<ImportResult> FromLaunchDarkly(const Value& payload, const std::string& project, const std::string& env,
                                              const Value* existing) {
  RETURN_IF_ERROR(rules::RequireObject(payload, ""));
  for (const auto& [name, value] : payload.as_object()) {
    if (name != "flags" && name != "segments") {
      return rules::InvalidField(name, "unknown member: a LaunchDarkly payload has \"flags\" and \"segments\"");
    }
    if (!value.is_object()) return rules::InvalidField(name, StrCat("expected an object of key -> item, got ", rules::TypeName(value.type())));
  }
  ImportResult r;
  const Value* old_flags = Section(existing, "flags");
  Object flags;
  if (const Value* in = payload.Find("flags")) {
    for (const auto& [key, flag] : in->as_object()) {
      std::string path = StrCat("flags.", key);
      if (!flag.is_object()) {
        r.notes.push_back({path, StrCat("expected an object, got ", rules::TypeName(flag.type()), ": not imported")});
        continue;
      }
      if (const Value* d = flag.Find("deleted"); d != nullptr && d->is_bool() && d->as_bool()) {
        r.notes.push_back({path, "deleted in LaunchDarkly: not imported"});
        continue;
      }
      Value whole = flag;
      whole.Set("key", Value(key));
      absl::StatusOr<rules::Flag> decoded = rules::DecodeFlag(whole, {.strict = true});
      if (!decoded.ok()) {
        absl::Status s = rules::WithFieldPrefix(decoded.status(), path);
        r.notes.push_back({rules::ErrorField(s), StrCat(rules::ErrorText(s), ": flag not imported")});
        continue;
      }
      Value model = rules::EncodeFlag(*decoded);
      for (std::string& p : UnknownFields(flag, model, path, {"version", "key", "deleted"})) {
        r.notes.push_back({std::move(p), "not part of Gonfalon's flag model: ignored"});
      }
      // Project level: the payload's variations and client-side availability over what the
      // project has (its name, description, tags, … stay).
      const Value* before = old_flags != nullptr ? old_flags->Find(key) : nullptr;
      Value out = before != nullptr && before->is_object() ? *before : Value(Object{});
      out.Set("variations", *model.Find("variations"));
      if (const Value* csa = model.Find("clientSideAvailability")) out.Set("clientSideAvailability", *csa);
      // A payload that carries more of the flag (an export of Gonfalon's own) gives it too.
      for (std::string_view name : {"name", "description", "tags", "temporary", "maintainer"}) {
        if (flag.Find(name) != nullptr && model.Find(name) != nullptr) out.Set(name, *model.Find(name));
      }
      Value targeting = FlagTargeting(*decoded);
      if (flag.Find("salt") == nullptr) targeting.Erase("salt");
      out.Set("environments", Value(Object{{env, std::move(targeting)}}));
      flags.emplace_back(key, std::move(out));
      ++r.flags;
    }
  }
  Object segments;
  if (const Value* in = payload.Find("segments")) {
    for (const auto& [key, seg] : in->as_object()) {
      std::string path = StrCat("segments.", key);
      if (!seg.is_object()) {
        r.notes.push_back({path, StrCat("expected an object, got ", rules::TypeName(seg.type()), ": not imported")});
        continue;
      }
      if (const Value* d = seg.Find("deleted"); d != nullptr && d->is_bool() && d->as_bool()) {
        r.notes.push_back({path, "deleted in LaunchDarkly: not imported"});
        continue;
      }
      if (const Value* u = seg.Find("unbounded"); u != nullptr && u->is_bool() && u->as_bool()) {
        r.notes.push_back({StrCat(path, ".unbounded"), "a big segment (its members live outside the payload): not imported"});
        continue;
      }
      Value whole = seg;
      whole.Set("key", Value(key));
      absl::StatusOr<rules::Segment> decoded = rules::DecodeSegment(whole, {.strict = true});
      if (!decoded.ok()) {
        absl::Status s = rules::WithFieldPrefix(decoded.status(), path);
        r.notes.push_back({rules::ErrorField(s), StrCat(rules::ErrorText(s), ": segment not imported")});
        continue;
      }
      for (std::string& p : UnknownFields(seg, rules::EncodeSegment(*decoded), path, {"version", "key", "deleted"})) {
        r.notes.push_back({std::move(p), "not part of Gonfalon's segment model: ignored"});
      }
      Value doc = SegmentDocument(*decoded);
      if (seg.Find("salt") == nullptr) doc.Erase("salt");
      segments.emplace_back(key, std::move(doc));
      ++r.segments;
    }
  }
  r.document = Value(Object{{"project", Value(project)}, {"flags", Value(std::move(flags))},
                            {"segments", Value(Object{{env, Value(std::move(segments))}})}});
  return r;
}

}  // namespace gonfalon::server
