#include "gonfalon/rules/model.h"

namespace gonfalon::rules {
namespace {
struct OpEntry {
  Op op;
  std::string_view name;
};
constexpr OpEntry kOps[] = {
    {Op::kIn, "in"},
    {Op::kStartsWith, "startsWith"},
    {Op::kEndsWith, "endsWith"},
    {Op::kContains, "contains"},
    {Op::kMatches, "matches"},
    {Op::kLessThan, "lessThan"},
    {Op::kLessThanOrEqual, "lessThanOrEqual"},
    {Op::kGreaterThan, "greaterThan"},
    {Op::kGreaterThanOrEqual, "greaterThanOrEqual"},
    {Op::kBefore, "before"},
    {Op::kAfter, "after"},
    {Op::kSemVerEqual, "semVerEqual"},
    {Op::kSemVerLessThan, "semVerLessThan"},
    {Op::kSemVerGreaterThan, "semVerGreaterThan"},
    {Op::kSegmentMatch, "segmentMatch"},
};
}  // namespace

std::string_view OpName(Op op) {
  for (const OpEntry& e : kOps) {
    if (e.op == op) return e.name;
  }
  return "";
}

Op ParseOp(std::string_view name) {
  for (const OpEntry& e : kOps) {
    if (e.name == name) return e.op;
  }
  return Op::kUnknown;
}

}  // namespace gonfalon::rules
