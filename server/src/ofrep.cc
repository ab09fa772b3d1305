#include "ofrep.h"

#include "gonfalon/rules/str_cat.h"

namespace gonfalon::server {

using rules::Value;

rules::Context OfrepContext(const Value* ctx, std::string& error_code) {
  error_code.clear();
  if (ctx == nullptr || ctx->is_null()) {
    error_code = "TARGETING_KEY_MISSING";
    return rules::Context::Invalid("no context");
  }
  if (!ctx->is_object()) {
    error_code = "INVALID_CONTEXT";
    return rules::Context::Invalid("context must be an object");
  }
  Value c = *ctx;
  const Value* tk = c.Find("targetingKey");
  if (c.Find("kind") != nullptr) {
    if (tk != nullptr && c.Find("key") == nullptr) c.Set("key", *tk);
    c.Erase("targetingKey");
  } else {
    if (tk == nullptr || !tk->is_string() || tk->as_string().empty()) {
      error_code = "TARGETING_KEY_MISSING";
      return rules::Context::Invalid("targetingKey is missing");
    }
    c.Set("key", *tk);
    c.Erase("targetingKey");
    c.Set("kind", Value("user"));
  }
  rules::Context out = rules::ContextFromJson(c);
  if (!out.valid()) error_code = "INVALID_CONTEXT";
  return out;
}

std::string_view OfrepReason(const rules::Detail& d) {
  switch (d.reason.kind) {
    case rules::ReasonKind::kOff:
      return "DISABLED";
    case rules::ReasonKind::kTargetMatch:
    case rules::ReasonKind::kRuleMatch:
      return "TARGETING_MATCH";
    case rules::ReasonKind::kFallthrough:
      if (d.via_rollout) return "SPLIT";
      // STATIC only when nothing about the context or other flags could change the answer.
      return d.flag_has_targeting ? "DEFAULT" : "STATIC";
    case rules::ReasonKind::kPrerequisiteFailed:
      return "PREREQUISITE_FAILED";
    case rules::ReasonKind::kError:
      return "ERROR";
  }
  return "UNKNOWN";
}

OfrepResult OfrepEvaluation(std::string_view key, const rules::Detail& d) {
  OfrepResult r;
  r.body.Set("key", Value(key));
  if (d.reason.kind == rules::ReasonKind::kError) {
    std::string code = "GENERAL";
    switch (d.reason.error_kind) {
      case rules::ErrorKind::kFlagNotFound:
        code = "FLAG_NOT_FOUND";
        r.status = 404;
        break;
      case rules::ErrorKind::kMalformedFlag:
        code = "PARSE_ERROR";
        r.status = 400;
        break;
      case rules::ErrorKind::kUserNotSpecified:
        code = "INVALID_CONTEXT";
        r.status = 400;
        break;
      default:
        r.status = 500;
    }
    r.body.Set("errorCode", Value(code));
    r.body.Set("errorDetails", Value(StrCat("evaluation error ", rules::ErrorKindName(d.reason.error_kind))));
    return r;
  }
  if (d.value != nullptr) r.body.Set("value", *d.value);  // absent: the caller's default (off, no off variation)
  r.body.Set("reason", Value(OfrepReason(d)));
  if (d.variation_index >= 0) r.body.Set("variant", Value(std::to_string(d.variation_index)));
  Value meta;
  meta.Set("flagVersion", Value(d.flag_version));
  meta.Set("gonfalonReason", Value(rules::ReasonKindName(d.reason.kind)));
  if (d.reason.in_experiment) meta.Set("inExperiment", Value(true));
  r.body.Set("metadata", std::move(meta));
  return r;
}

uint64_t ContextHash(const rules::Context& ctx) {
  // FNV-1a over the context's canonical JSON.
  uint64_t h = 1469598103934665603ULL;
  for (unsigned char c : rules::ToJson(ctx.ToValue())) {
    h ^= c;
    h *= 1099511628211ULL;
  }
  return h & 0xffffffffffffULL;
}

}  // namespace gonfalon::server
