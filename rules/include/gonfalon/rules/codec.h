#pragma once
// JSON codec for the data model (model.h).
//
// Decoding is all-or-nothing: it returns a complete object or an InvalidArgument status whose
// message starts with the path of the first problem, e.g.
//   rules[2].clauses[0].op: unknown operator "startswith"
// Unknown members are ignored (LaunchDarkly data carries many); known members of the wrong
// type are errors.
//
// Two levels of checking:
//  - lenient (default): what LaunchDarkly SDKs accept. Unknown operators, out-of-range
//    variation indices and invalid attribute references decode and are handled at evaluation
//    (never match / MALFORMED_FLAG), so data from newer writers still evaluates.
//  - strict: additionally rejects those, for data entered by people (admin API, CLI checks).
//
// Encoding writes every field that differs from its default; Decode(Encode(x)) == x.
//
// Thread safety: stateless functions.

#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "gonfalon/rules/model.h"
#include "gonfalon/rules/split_json.h"
#include "gonfalon/rules/parallel.h"
#include "gonfalon/rules/value.h"

namespace gonfalon::rules {

struct DecodeOptions {
  bool strict = false;
};

// For data entered by people: every member of a flag's or segment's JSON, at any depth, is one
// the codec knows (the variations' values and the clauses' values, which may be any JSON, are
// not looked into). A typo ("onn", "inclued", "atribute") would otherwise be ignored and the
// write change nothing. InvalidArgument naming the first unknown member, e.g.
//   rules[0].clauses[0].atribute: unknown field (docs/data-model.md lists a flag's fields)
absl::Status CheckKnownMembers(const Value& item);

absl::StatusOr<Flag> DecodeFlag(const Value& json, DecodeOptions options = {});
absl::StatusOr<Segment> DecodeSegment(const Value& json, DecodeOptions options = {});
// {"flags":{key: flag}, "segments":{key: segment}, "sequence"?: n}; either map may be absent.
// Items are decoded through `parallel` when given (the first error in document order wins, as
// without it).
absl::StatusOr<Environment> DecodeEnvironment(const Value& json, DecodeOptions options = {},
                                              const ParallelFor& parallel = {});
// Parses text and decodes; JSON syntax errors are reported as such. The text is never one Value
// tree: each item is converted to one, decoded and freed in turn (SplitJson), so a 60 MB `put`
// takes the memory of its model, not several times its size. PaddedJson text is parsed in place.
absl::StatusOr<Environment> ParseEnvironment(std::string_view text, DecodeOptions options = {},
                                             const ParallelFor& parallel = {});
absl::StatusOr<Environment> ParseEnvironment(PaddedJson text, DecodeOptions options = {},
                                             const ParallelFor& parallel = {});

// Strict checks that need the whole environment: prerequisites and segment references that
// point nowhere. Returns the first problem with its path.
absl::Status CheckReferences(const Environment& env);

Value EncodeFlag(const Flag& flag);
Value EncodeSegment(const Segment& segment);
Value EncodeEnvironment(const Environment& env);

}  // namespace gonfalon::rules
