#pragma once
// The OFREP mapping (OpenFeature Remote Evaluation Protocol, DESIGN §4): OFREP contexts to
// evaluation contexts, and evaluation results to OFREP results. Pure: no I/O, no state.

#include <string>
#include <string_view>

#include "gonfalon/rules/context.h"
#include "gonfalon/rules/evaluator.h"
#include "gonfalon/rules/value.h"

namespace gonfalon::server {

// An OFREP request's `context`: `targetingKey` is the key of a `user` context; a context
// with `kind` (including "multi") is taken as it is. On failure `error_code` is the OFREP
// code (TARGETING_KEY_MISSING, INVALID_CONTEXT) and the context is invalid.
rules::Context OfrepContext(const rules::Value* context, std::string& error_code);

// OFREP's reason for a result: DISABLED, TARGETING_MATCH, SPLIT, STATIC, DEFAULT, ERROR...
std::string_view OfrepReason(const rules::Detail& d);

// One flag's OFREP result and the HTTP status a single evaluation answers with.
struct OfrepResult {
  int status = 200;
  rules::Value body;
};
OfrepResult OfrepEvaluation(std::string_view key, const rules::Detail& d);

// A stable 48-bit hash of a context (the bulk ETag's context part).
uint64_t ContextHash(const rules::Context& ctx);

}  // namespace gonfalon::server
