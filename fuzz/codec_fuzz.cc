// libFuzzer target for the codec: arbitrary bytes through JSON parsing, environment decoding
// (lenient and strict), snapshot compilation, evaluation and re-encoding. It must never crash,
// hang or leak, and what decodes must round-trip.
//
// Built with clang by `make fuzz` (CMake option GONFALON_FUZZ); the same entry point runs over
// fuzz/corpus/ in the ordinary test suite (tests/rules/fuzz_corpus_test.cc).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "gonfalon/rules/codec.h"
#include "gonfalon/rules/evaluator.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace gonfalon::rules;
  std::string_view text(reinterpret_cast<const char*>(data), size);
  absl::StatusOr<Value> json = ParseJson(text);
  if (!json.ok()) return 0;
  // A context from the same bytes exercises the context reader too.
  Context ctx = ContextFromJson(*json);
  for (bool strict : {false, true}) {
    absl::StatusOr<Environment> env = DecodeEnvironment(*json, DecodeOptions{.strict = strict});
    if (!env.ok()) continue;
    absl::StatusOr<Environment> again = DecodeEnvironment(EncodeEnvironment(*env));
    if (!again.ok() || !(*again == *env)) abort();  // encode/decode must round-trip
    auto snap = Snapshot::Build(std::move(*env));
    Context user = Context::Builder("user", "fuzz").Set("country", Value("FR")).Build();
    for (size_t i = 0; i < snap->flag_count(); ++i) {
      Trace trace;
      Evaluate(*snap, snap->flag(i), user, &trace);
      Evaluate(*snap, snap->flag(i), ctx, nullptr);
    }
  }
  return 0;
}
