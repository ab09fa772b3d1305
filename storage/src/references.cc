#include "rocks_store.h"

#include <algorithm>

#include "gonfalon/rules/evaluator.h"
#include "gonfalon/rules/references.h"

namespace gonfalon::storage::internal {

namespace {

// Whether a flag's write changes its prerequisites (chains through it can only grow then).
bool PrerequisitesChanged(const std::optional<Value>& before, const Value& after) {
  const Value* now = after.Find("prerequisites");
  bool has_now = now != nullptr && !now->as_array().empty();
  const Value* was = before.has_value() ? before->Find("prerequisites") : nullptr;
  if (was == nullptr) return has_now;
  return has_now && !(*was == *now);
}

rules::ChangedKind Changed(ItemKind kind) {
  return kind == ItemKind::kFlag ? rules::ChangedKind::kFlag : rules::ChangedKind::kSegment;
}

}  // namespace

template <typename Fn>
absl::Status RocksStore::ForEachItemAfter(EnvState& env, const std::vector<PreparedItem>& prepared, ItemKind kind, Fn fn) {
  std::string prefix = ItemPrefix(env.record.project, env.record.key, kind);
  std::set<std::string, std::less<>> decided;  // keys whose state comes from prepared or pending
  for (const PreparedItem& p : prepared) {
    if (p.kind != kind) continue;
    decided.insert(p.key);
    if (p.after.has_value()) RETURN_IF_ERROR(fn(p.key, *p.after));
  }
  for (const auto& [k, pending] : env.pending) {
    if (k.rfind(prefix, 0) != 0) continue;
    std::string key = k.substr(prefix.size());
    if (!decided.insert(key).second || !pending.json.has_value()) continue;
    ASSIGN_OR_RETURN(Value item, ParseStored(kItems, k, *pending.json));
    RETURN_IF_ERROR(fn(key, item));
  }
  return Scan(kItems, prefix, nullptr, [&](std::string_view k, std::string_view v) -> absl::Status {
    std::string key(k.substr(prefix.size()));
    if (decided.count(key) != 0) return absl::OkStatus();
    ASSIGN_OR_RETURN(Value item, ParseStored(kItems, k, v));
    return fn(key, item);
  });
}

absl::Status RocksStore::CheckReferencesAfter(EnvState& env, const std::vector<PreparedItem>& prepared) {
  // Each item's references, as it will be, found (and parsed) at most once however many paths
  // lead to it; nullopt: it will not exist.
  std::map<std::pair<ItemKind, std::string>, std::optional<rules::ItemReferences>> found;
  auto lookup = [&](rules::ChangedKind changed, std::string_view key) -> absl::StatusOr<const rules::ItemReferences*> {
    ItemKind kind = changed == rules::ChangedKind::kFlag ? ItemKind::kFlag : ItemKind::kSegment;
    auto it = found.find(std::make_pair(kind, std::string(key)));
    if (it == found.end()) {
      std::optional<rules::ItemReferences> refs;
      auto p = std::find_if(prepared.begin(), prepared.end(), [&](const PreparedItem& p) { return p.kind == kind && p.key == key; });
      if (p != prepared.end()) {
        if (p->after.has_value()) refs = rules::ReferencesOf(*p->after, changed);
      } else {
        ASSIGN_OR_RETURN(auto item, ReadItem(env, kind, key));
        if (item.has_value()) refs = rules::ReferencesOf(*item, changed);
      }
      it = found.emplace(std::make_pair(kind, std::string(key)), std::move(refs)).first;
    }
    return it->second.has_value() ? &*it->second : nullptr;
  };
  std::vector<std::string> flags;  // the flags written: any new prerequisite loop passes through one
  for (size_t i = 0; i < prepared.size(); ++i) {
    const PreparedItem& item = prepared[i];
    std::string path = StrCat("items[", i, "]");
    if (!item.after.has_value()) {
      if (item.kind != ItemKind::kSegment) continue;
      for (ItemKind kind : {ItemKind::kFlag, ItemKind::kSegment}) {
        RETURN_IF_ERROR(ForEachItemAfter(env, prepared, kind, [&](const std::string& user, const Value& v) -> absl::Status {
          for (const auto& use : rules::ReferencesOf(v, Changed(kind)).segments) {
            if (use.key != item.key) continue;
            return rules::FieldError(absl::StatusCode::kFailedPrecondition, StrCat(path, ".delete"),
                                     StrCat("segment \"", item.key, "\" is used by ", ItemKindName(kind), " \"", user,
                                            "\" (", use.where, ")"));
          }
          return absl::OkStatus();
        }));
      }
      continue;
    }
    ASSIGN_OR_RETURN(const rules::ItemReferences* refs, lookup(Changed(item.kind), item.key));
    RETURN_IF_ERROR(rules::WithFieldPrefix(rules::CheckReferences(Changed(item.kind), item.key, *refs, lookup),
                                           StrCat(path, ".data")));
    if (item.kind == ItemKind::kFlag) flags.push_back(item.key);
  }
  RETURN_IF_ERROR(rules::CheckNoPrerequisiteCycle(flags, lookup, [&](std::string_view flag, size_t j) -> std::string {
    for (size_t i = 0; i < prepared.size(); ++i) {
      if (prepared[i].kind == ItemKind::kFlag && prepared[i].key == flag) {
        return StrCat("items[", i, "].data.prerequisites[", j, "].key");
      }
    }
    return "";  // a stored flag: the loop's link from a written one is named instead
  }));
  for (size_t i = 0; i < prepared.size(); ++i) {
    const PreparedItem& item = prepared[i];
    // Every flag carries "prerequisites" (often empty): only a write that gives the flag new
    // ones can make a chain through it longer, and only that pays for the chain check.
    if (item.kind == ItemKind::kFlag && item.after.has_value() && PrerequisitesChanged(item.before, *item.after)) {
      RETURN_IF_ERROR(CheckChainLength(env, prepared, i, lookup));
    }
  }
  return absl::OkStatus();
}

template <typename Lookup>
absl::Status RocksStore::CheckChainLength(EnvState& env, const std::vector<PreparedItem>& prepared, size_t i, Lookup& lookup) {
  constexpr int kLimit = rules::kMaxPrerequisiteChain;
  const std::string& root = prepared[i].key;
  // Below: the longest chain of prerequisites from each flag (memoized), with the next link.
  std::map<std::string, std::pair<int, std::string>> below;
  std::function<absl::StatusOr<int>(const std::string&, int)> down = [&](const std::string& key, int depth) -> absl::StatusOr<int> {
    if (auto it = below.find(key); it != below.end()) return it->second.first;
    if (depth > kLimit) return 1;  // the path here is already too long: refused whatever lies below
    ASSIGN_OR_RETURN(const rules::ItemReferences* flag, lookup(rules::ChangedKind::kFlag, key));
    int best = 1;
    std::string next;
    if (flag != nullptr) {
      for (const auto& p : flag->prerequisites) {
        ASSIGN_OR_RETURN(int d, down(p.key, depth + 1));
        if (d + 1 > best) {
          best = d + 1;
          next = p.key;
        }
      }
    }
    below[key] = {best, next};
    return best;
  };
  ASSIGN_OR_RETURN(int depth_below, down(root, 1));
  // Above: dependents, from every flag as it will be.
  std::map<std::string, std::vector<std::string>> dependents;
  RETURN_IF_ERROR(ForEachItemAfter(env, prepared, ItemKind::kFlag, [&](const std::string& key, const Value& flag) {
    for (const auto& p : rules::ReferencesOf(flag, rules::ChangedKind::kFlag).prerequisites) dependents[p.key].push_back(key);
    return absl::OkStatus();
  }));
  std::map<std::string, std::pair<int, std::string>> above;
  std::function<int(const std::string&, int)> up = [&](const std::string& key, int depth) -> int {
    if (auto it = above.find(key); it != above.end()) return it->second.first;
    int best = 1;
    std::string prev;
    if (depth <= kLimit) {
      for (const std::string& d : dependents[key]) {
        int u = up(d, depth + 1) + 1;
        if (u > best) {
          best = u;
          prev = d;
        }
      }
    }
    above[key] = {best, prev};
    return best;
  };
  int depth_above = up(root, 1);
  int total = depth_above + depth_below - 1;
  if (total <= kLimit) return absl::OkStatus();
  std::vector<std::string> chain;
  for (std::string k = above[root].second; !k.empty(); k = above[k].second) chain.insert(chain.begin(), k);
  for (std::string k = root; !k.empty(); k = below.count(k) ? below[k].second : std::string()) chain.push_back(k);
  std::string shown;
  for (size_t n = 0; n < chain.size(); ++n) {
    if (chain.size() > 8 && n == 3) {
      StrAppend(&shown, " -> ... (", chain.size() - 6, " more)");
      n = chain.size() - 3;
    }
    StrAppend(&shown, n == 0 ? "" : " -> ", chain[n]);
  }
  return rules::InvalidField(StrCat("items[", i, "].data.prerequisites"), StrCat("a prerequisite chain of ", total,
                                           " flags is longer than the ", kLimit, " that evaluate: ", shown));
}

absl::Status RocksStore::CheckNotPrerequisite(const EnvLocks& locks, std::string_view key, std::string_view advice) {
  for (EnvState* env : locks.states) {
    RETURN_IF_ERROR(ForEachItemAfter(*env, {}, ItemKind::kFlag, [&](const std::string& other, const Value& item) {
      if (other == key) return absl::OkStatus();
      const auto prereqs = rules::ReferencesOf(item, rules::ChangedKind::kFlag).prerequisites;
      for (size_t j = 0; j < prereqs.size(); ++j) {
        if (prereqs[j].key != key) continue;
        return absl::FailedPreconditionError(StrCat("flag \"", key, "\" is a prerequisite of flag \"", other,
                                                    "\" in environment \"", env->record.key, "\" (prerequisites[", j,
                                                    "]); ", advice));
      }
      return absl::OkStatus();
    }));
  }
  return absl::OkStatus();
}

}  // namespace gonfalon::storage::internal
