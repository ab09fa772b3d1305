#include "gonfalon/rules/references.h"

#include "absl/container/flat_hash_map.h"
#include "gonfalon/rules/field_error.h"
#include "gonfalon/rules/status_macros.h"
#include "gonfalon/rules/str_cat.h"

namespace gonfalon::rules {
namespace {

template <typename Rule>
void AddSegmentUses(const std::vector<Rule>& rules, ItemReferences& out) {
  for (size_t r = 0; r < rules.size(); ++r) {
    const std::vector<Clause>& clauses = rules[r].clauses;
    for (size_t c = 0; c < clauses.size(); ++c) {
      if (clauses[c].op != Op::kSegmentMatch) continue;
      for (size_t v = 0; v < clauses[c].values.size(); ++v) {
        if (!clauses[c].values[v].is_string()) continue;
        out.segments.push_back({clauses[c].values[v].as_string(), StrCat("rules[", r, "].clauses[", c, "].values[", v, "]")});
      }
    }
  }
}

}  // namespace

ItemReferences ReferencesOf(const Flag& flag) {
  ItemReferences out;
  AddSegmentUses(flag.rules, out);
  for (const Prerequisite& p : flag.prerequisites) out.prerequisites.push_back({p.key, p.variation});
  out.variations = flag.variations.size();
  return out;
}

ItemReferences ReferencesOf(const Segment& segment) {
  ItemReferences out;
  AddSegmentUses(segment.rules, out);
  return out;
}

ItemReferences ReferencesOf(const Value& item, ChangedKind kind) {
  ItemReferences out;
  if (const Value* rules = item.Find("rules"); rules != nullptr && rules->is_array()) {
    for (size_t r = 0; r < rules->as_array().size(); ++r) {
      const Value* clauses = rules->as_array()[r].Find("clauses");
      if (clauses == nullptr || !clauses->is_array()) continue;
      for (size_t c = 0; c < clauses->as_array().size(); ++c) {
        const Value& clause = clauses->as_array()[c];
        const Value* op = clause.Find("op");
        const Value* values = clause.Find("values");
        if (op == nullptr || !op->is_string() || op->as_string() != "segmentMatch") continue;
        if (values == nullptr || !values->is_array()) continue;
        for (size_t v = 0; v < values->as_array().size(); ++v) {
          const Value& key = values->as_array()[v];
          if (key.is_string()) out.segments.push_back({key.as_string(), StrCat("rules[", r, "].clauses[", c, "].values[", v, "]")});
        }
      }
    }
  }
  if (kind != ChangedKind::kFlag) return out;
  if (const Value* prereqs = item.Find("prerequisites"); prereqs != nullptr && prereqs->is_array()) {
    for (const Value& p : prereqs->as_array()) {
      const Value* key = p.Find("key");
      const Value* variation = p.Find("variation");
      if (key == nullptr || !key->is_string()) continue;
      out.prerequisites.push_back({key->as_string(), variation != nullptr && variation->is_number() ? static_cast<int64_t>(variation->as_number()) : 0});
    }
  }
  if (const Value* variations = item.Find("variations"); variations != nullptr && variations->is_array()) {
    out.variations = variations->as_array().size();
  }
  return out;
}

absl::Status CheckReferences(ChangedKind kind, std::string_view key, const ItemReferences& refs,
                             ReferenceLookup lookup) {
  for (const ItemReferences::SegmentUse& use : refs.segments) {
    ASSIGN_OR_RETURN(const ItemReferences* segment, lookup(ChangedKind::kSegment, use.key));
    if (segment == nullptr) return InvalidField(use.where, StrCat("no segment \"", use.key, "\""));
  }
  if (kind != ChangedKind::kFlag) return absl::OkStatus();
  for (size_t j = 0; j < refs.prerequisites.size(); ++j) {
    const ItemReferences::PrerequisiteUse& p = refs.prerequisites[j];
    std::string path = StrCat("prerequisites[", j, "]");
    if (p.key == key) return InvalidField(StrCat(path, ".key"), "a flag cannot be its own prerequisite");
    ASSIGN_OR_RETURN(const ItemReferences* prereq, lookup(ChangedKind::kFlag, p.key));
    if (prereq == nullptr) return InvalidField(StrCat(path, ".key"), StrCat("no flag \"", p.key, "\""));
    if (p.variation < 0 || static_cast<size_t>(p.variation) >= prereq->variations) {
      return InvalidField(StrCat(path, ".variation"), StrCat("variation ", p.variation, " does not exist (flag \"", p.key,
                                                              "\" has ", prereq->variations, " variations)"));
    }
  }
  return absl::OkStatus();
}

absl::Status CheckNoPrerequisiteCycle(const std::vector<std::string>& roots, ReferenceLookup lookup,
                                      absl::FunctionRef<std::string(std::string_view flag, size_t index)> field_of) {
  enum Colour : uint8_t { kOnStack = 1, kDone = 2 };
  absl::flat_hash_map<std::string, Colour> colour;
  struct Frame {
    std::string key;
    const ItemReferences* refs;
    size_t next = 0;  // the next prerequisite to follow
  };
  for (const std::string& root : roots) {
    if (colour.contains(root)) continue;
    ASSIGN_OR_RETURN(const ItemReferences* root_refs, lookup(ChangedKind::kFlag, root));
    if (root_refs == nullptr) continue;
    // An explicit stack: chains can be long, and a loop in stored data must not overflow ours.
    std::vector<Frame> stack = {{root, root_refs}};
    colour[root] = kOnStack;
    while (!stack.empty()) {
      Frame& top = stack.back();
      if (top.next == top.refs->prerequisites.size()) {
        colour[top.key] = kDone;
        stack.pop_back();
        continue;
      }
      size_t j = top.next++;
      const std::string& next = top.refs->prerequisites[j].key;
      auto it = colour.find(next);
      if (it != colour.end() && it->second == kOnStack) {
        std::string loop;
        std::string field;
        bool in_loop = false;
        for (const Frame& f : stack) {
          in_loop = in_loop || f.key == next;
          if (!in_loop) continue;
          StrAppend(&loop, f.key, " -> ");
          if (field.empty()) field = field_of(f.key, f.next - 1);  // the link it followed
        }
        StrAppend(&loop, next);
        return InvalidField(field, StrCat("prerequisite cycle: ", loop));
      }
      if (it != colour.end()) continue;  // done: no loop below it
      ASSIGN_OR_RETURN(const ItemReferences* refs, lookup(ChangedKind::kFlag, next));
      if (refs == nullptr) {
        colour[next] = kDone;
        continue;
      }
      colour[next] = kOnStack;
      stack.push_back({next, refs});  // `top` is not used after this
    }
  }
  return absl::OkStatus();
}

}  // namespace gonfalon::rules
