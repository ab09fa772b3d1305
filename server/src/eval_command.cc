#include "eval_command.h"

#include <chrono>
#include <fstream>
#include <iostream>
#include <optional>
#include <sstream>

#include "gonfalon/rules/codec.h"
#include "gonfalon/rules/evaluator.h"
#include "gonfalon/rules/str_cat.h"

namespace gonfalon::server {
namespace {

using rules::Value;

constexpr char kUsage[] =
    "usage: gonfalon eval --data FILE [--flag KEY] (--context JSON | --contexts FILE.jsonl)\n"
    "                     [--explain] [--lenient]\n"
    "  --data FILE        environment payload {\"flags\":{...},\"segments\":{...}}\n"
    "  --flag KEY         evaluate only this flag (default: every flag)\n"
    "  --context JSON     one context, e.g. '{\"kind\":\"user\",\"key\":\"u1\"}'\n"
    "  --contexts FILE    one context per line (JSON Lines)\n"
    "  --explain          add the explain trace to each line\n"
    "  --lenient          accept what SDKs accept (unknown operators, out-of-range variations)\n"
    "                     instead of rejecting them\n";

struct Options {
  std::string data_path;
  std::optional<std::string> flag;
  std::optional<std::string> context_json;
  std::optional<std::string> contexts_path;
  bool explain = false;
  bool lenient = false;
};

bool ReadFile(const std::string& path, std::string& out, std::string& error) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    error = StrCat("cannot open ", path);
    return false;
  }
  std::ostringstream ss;
  ss << in.rdbuf();
  out = ss.str();
  return true;
}

void EvaluateOne(const rules::Snapshot& snap, const Options& opt, const rules::Context& ctx,
                 const Value& ctx_json, std::ostream& out) {
  auto print = [&](std::string_view key, const rules::Detail& d, const rules::Trace* trace) {
    Value line;
    line.Set("flag", Value(key));
    line.Set("context", ctx_json);
    Value detail = rules::DetailToValue(d);
    for (auto& [k, v] : detail.mutable_object()) line.Set(k, std::move(v));
    if (trace != nullptr) line.Set("trace", trace->steps());
    out << rules::ToJson(line) << '\n';
  };
  if (opt.flag.has_value()) {
    rules::Trace trace;
    rules::Detail d = rules::Evaluate(snap, *opt.flag, ctx, opt.explain ? &trace : nullptr);
    print(*opt.flag, d, opt.explain ? &trace : nullptr);
    return;
  }
  for (size_t i = 0; i < snap.flag_count(); ++i) {
    const auto& f = snap.flag(i);
    rules::Trace trace;
    rules::Detail d = rules::Evaluate(snap, f, ctx, opt.explain ? &trace : nullptr);
    print(rules::FlagModel(f).key, d, opt.explain ? &trace : nullptr);
  }
}

}  // namespace

int RunEvalCommand(const std::vector<std::string>& args, std::ostream& out, std::ostream& err) {
  Options opt;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    auto value = [&](std::string& into) {
      if (i + 1 >= args.size()) return false;
      into = args[++i];
      return true;
    };
    std::string v;
    if (a == "--data" && value(v)) {
      opt.data_path = v;
    } else if (a == "--flag" && value(v)) {
      opt.flag = v;
    } else if (a == "--context" && value(v)) {
      opt.context_json = v;
    } else if (a == "--contexts" && value(v)) {
      opt.contexts_path = v;
    } else if (a == "--explain") {
      opt.explain = true;
    } else if (a == "--lenient") {
      opt.lenient = true;
    } else if (a == "--help" || a == "-h") {
      out << kUsage;
      return 0;
    } else {
      err << "gonfalon eval: unknown or incomplete argument \"" << a << "\"\n" << kUsage;
      return 2;
    }
  }
  if (opt.data_path.empty()) {
    err << "gonfalon eval: --data is required\n" << kUsage;
    return 2;
  }
  if (opt.context_json.has_value() == opt.contexts_path.has_value()) {
    err << "gonfalon eval: give exactly one of --context and --contexts\n" << kUsage;
    return 2;
  }

  std::string text, error;
  if (!ReadFile(opt.data_path, text, error)) {
    err << "gonfalon eval: " << error << '\n';
    return 1;
  }
  auto started = std::chrono::steady_clock::now();
  absl::StatusOr<rules::Environment> env =
      rules::ParseEnvironment(text, rules::DecodeOptions{.strict = !opt.lenient});
  if (!env.ok()) {
    err << "gonfalon eval: " << opt.data_path << ": " << env.status().message() << '\n';
    return 1;
  }
  size_t flag_count = env->flags.size();
  std::shared_ptr<const rules::Snapshot> snap = rules::Snapshot::Build(std::move(*env));
  auto built = std::chrono::steady_clock::now();
  if (opt.flag.has_value() && snap->FindFlag(*opt.flag) == nullptr) {
    err << "gonfalon eval: " << opt.data_path << " has no flag \"" << *opt.flag << "\"\n";
    return 1;
  }

  size_t evaluations = 0;
  auto run_context = [&](std::string_view json_text, const std::string& where) {
    absl::StatusOr<Value> json = rules::ParseJson(json_text);
    if (!json.ok()) {
      err << "gonfalon eval: " << where << ": " << json.status().message() << '\n';
      return false;
    }
    EvaluateOne(*snap, opt, rules::ContextFromJson(*json), *json, out);
    ++evaluations;
    return true;
  };
  if (opt.context_json.has_value()) {
    if (!run_context(*opt.context_json, "--context")) return 1;
  } else {
    std::ifstream in(*opt.contexts_path);
    if (!in) {
      err << "gonfalon eval: cannot open " << *opt.contexts_path << '\n';
      return 1;
    }
    std::string line;
    size_t line_no = 0;
    while (std::getline(in, line)) {
      ++line_no;
      if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
      if (!run_context(line, StrCat(*opt.contexts_path, ":", line_no))) return 1;
    }
  }
  auto done = std::chrono::steady_clock::now();
  using std::chrono::duration_cast;
  using std::chrono::microseconds;
  err << "gonfalon eval: " << flag_count << " flags loaded and compiled in "
      << duration_cast<microseconds>(built - started).count() << " us; " << evaluations
      << " contexts evaluated in " << duration_cast<microseconds>(done - built).count()
      << " us\n";
  return 0;
}

}  // namespace gonfalon::server
