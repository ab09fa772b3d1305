#include "rocks_store.h"

#include "gonfalon/rules/evaluator.h"

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

// Calls fn(segment key, where) for every segmentMatch value in an item's rules, `where` being
// its path inside the item ("rules[0].clauses[1].values[0]"); stops at fn's first error.
template <typename Fn>
absl::Status ForEachSegmentRef(const Value& item, Fn fn) {
  const Value* rules = item.Find("rules");
  if (rules == nullptr || !rules->is_array()) return absl::OkStatus();
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
        if (!key.is_string()) continue;
        RETURN_IF_ERROR(fn(key.as_string(), StrCat("rules[", r, "].clauses[", c, "].values[", v, "]")));
      }
    }
  }
  return absl::OkStatus();
}

// Calls fn(index, prerequisite flag key, variation) for each of a flag's prerequisites.
template <typename Fn>
absl::Status ForEachPrerequisite(const Value& flag, Fn fn) {
  const Value* prereqs = flag.Find("prerequisites");
  if (prereqs == nullptr || !prereqs->is_array()) return absl::OkStatus();
  for (size_t j = 0; j < prereqs->as_array().size(); ++j) {
    const Value& p = prereqs->as_array()[j];
    const Value* key = p.Find("key");
    const Value* variation = p.Find("variation");
    if (key == nullptr || !key->is_string()) continue;
    double v = variation != nullptr && variation->is_number() ? variation->as_number() : 0;
    RETURN_IF_ERROR(fn(j, key->as_string(), v));
  }
  return absl::OkStatus();
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
  // Each item is read (and parsed) at most once, however many paths lead to it.
  std::map<std::pair<ItemKind, std::string>, std::optional<Value>> read;
  auto lookup = [&](ItemKind kind, const std::string& key) -> absl::StatusOr<std::optional<Value>> {
    for (const PreparedItem& p : prepared) {
      if (p.kind == kind && p.key == key) return p.after;
    }
    auto it = read.find({kind, key});
    if (it == read.end()) {
      ASSIGN_OR_RETURN(auto item, ReadItem(env, kind, key));
      it = read.emplace(std::make_pair(kind, key), std::move(item)).first;
    }
    return it->second;
  };
  for (size_t i = 0; i < prepared.size(); ++i) {
    const PreparedItem& item = prepared[i];
    std::string path = StrCat("items[", i, "]");
    if (!item.after.has_value()) {
      if (item.kind != ItemKind::kSegment) continue;
      for (ItemKind kind : {ItemKind::kFlag, ItemKind::kSegment}) {
        RETURN_IF_ERROR(ForEachItemAfter(env, prepared, kind, [&](const std::string& user, const Value& v) {
          return ForEachSegmentRef(v, [&](const std::string& seg, const std::string& where) -> absl::Status {
            if (seg != item.key) return absl::OkStatus();
            return rules::FieldError(absl::StatusCode::kFailedPrecondition, StrCat(path, ".delete"), StrCat("segment \"", item.key, "\" is used by ",
                                                        ItemKindName(kind), " \"", user, "\" (", where, ")"));
          });
        }));
      }
      continue;
    }
    std::string dpath = StrCat(path, ".data");
    RETURN_IF_ERROR(ForEachSegmentRef(*item.after, [&](const std::string& seg, const std::string& where) -> absl::Status {
      ASSIGN_OR_RETURN(auto found, lookup(ItemKind::kSegment, seg));
      if (!found.has_value()) return rules::InvalidField(StrCat(dpath, ".", where), StrCat("no segment \"", seg, "\""));
      return absl::OkStatus();
    }));
    if (item.kind != ItemKind::kFlag) continue;
    RETURN_IF_ERROR(ForEachPrerequisite(*item.after, [&](size_t j, const std::string& key, double variation) -> absl::Status {
      std::string ppath = StrCat(dpath, ".prerequisites[", j, "]");
      if (key == item.key) return rules::InvalidField(StrCat(ppath, ".key"), "a flag cannot be its own prerequisite");
      ASSIGN_OR_RETURN(auto prereq, lookup(ItemKind::kFlag, key));
      if (!prereq.has_value()) return rules::InvalidField(StrCat(ppath, ".key"), StrCat("no flag \"", key, "\""));
      const Value* variations = prereq->Find("variations");
      size_t n = variations != nullptr && variations->is_array() ? variations->as_array().size() : 0;
      if (variation >= static_cast<double>(n)) {
        return rules::InvalidField(StrCat(ppath, ".variation"), StrCat("flag \"", key, "\" has ", n, " variations"));
      }
      // Follow the prerequisites from here: reaching this flag again is a cycle.
      std::vector<std::vector<std::string>> stack = {{item.key, key}};
      std::set<std::string> visited;
      while (!stack.empty()) {
        std::vector<std::string> chain = std::move(stack.back());
        stack.pop_back();
        if (!visited.insert(chain.back()).second) continue;
        ASSIGN_OR_RETURN(auto flag, lookup(ItemKind::kFlag, chain.back()));
        if (!flag.has_value()) continue;
        RETURN_IF_ERROR(ForEachPrerequisite(*flag, [&](size_t, const std::string& next, double) -> absl::Status {
          std::vector<std::string> longer = chain;
          longer.push_back(next);
          if (next == item.key) {
            std::string loop;
            for (size_t n = 0; n < longer.size(); ++n) StrAppend(&loop, n == 0 ? "" : " -> ", longer[n]);
            return rules::InvalidField(StrCat(ppath, ".key"), StrCat("prerequisite cycle: ", loop));
          }
          stack.push_back(std::move(longer));
          return absl::OkStatus();
        }));
      }
      return absl::OkStatus();
    }));
    // Every flag carries "prerequisites" (often empty): only a write that gives the flag new
    // ones can make a chain through it longer, and only that pays for the chain check.
    if (PrerequisitesChanged(item.before, *item.after)) RETURN_IF_ERROR(CheckChainLength(env, prepared, i, lookup));
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
    ASSIGN_OR_RETURN(auto flag, lookup(ItemKind::kFlag, key));
    int best = 1;
    std::string next;
    if (flag.has_value()) {
      RETURN_IF_ERROR(ForEachPrerequisite(*flag, [&](size_t, const std::string& p, double) -> absl::Status {
        ASSIGN_OR_RETURN(int d, down(p, depth + 1));
        if (d + 1 > best) {
          best = d + 1;
          next = p;
        }
        return absl::OkStatus();
      }));
    }
    below[key] = {best, next};
    return best;
  };
  ASSIGN_OR_RETURN(int depth_below, down(root, 1));
  // Above: dependents, from every flag as it will be.
  std::map<std::string, std::vector<std::string>> dependents;
  RETURN_IF_ERROR(ForEachItemAfter(env, prepared, ItemKind::kFlag, [&](const std::string& key, const Value& flag) {
    return ForEachPrerequisite(flag, [&](size_t, const std::string& p, double) -> absl::Status {
      dependents[p].push_back(key);
      return absl::OkStatus();
    });
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
      return ForEachPrerequisite(item, [&](size_t j, const std::string& prereq, double) -> absl::Status {
        if (prereq != key) return absl::OkStatus();
        return absl::FailedPreconditionError(StrCat("flag \"", key, "\" is a prerequisite of flag \"", other,
                                                    "\" in environment \"", env->record.key, "\" (prerequisites[", j,
                                                    "]); ", advice));
      });
    }));
  }
  return absl::OkStatus();
}

}  // namespace gonfalon::storage::internal
