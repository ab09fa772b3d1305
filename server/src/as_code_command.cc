#include "as_code_command.h"

#include <cstdlib>
#include <fstream>
#include <iostream>
#include <optional>
#include <sstream>

#include "gonfalon/rules/str_cat.h"
#include "gonfalon/rules/value.h"
#include "http_client.h"
#include "launchdarkly_import.h"
#include "project_document.h"
#include "yaml_json.h"

namespace gonfalon::server {

using rules::Value;

namespace {

struct Common {
  std::string url = "http://127.0.0.1:8070";
  std::string token;
  std::string project;
};

// Reads --url, --token (or $GONFALON_TOKEN) and --project from `args` (removing them).
std::optional<std::string> TakeOption(std::vector<std::string>& args, std::string_view name) {
  for (size_t i = 0; i < args.size(); ++i) {
    if (args[i] == name && i + 1 < args.size()) {
      std::string v = args[i + 1];
      args.erase(args.begin() + static_cast<long>(i), args.begin() + static_cast<long>(i) + 2);
      return v;
    }
    std::string prefix = StrCat(name, "=");
    if (args[i].rfind(prefix, 0) == 0) {
      std::string v = args[i].substr(prefix.size());
      args.erase(args.begin() + static_cast<long>(i));
      return v;
    }
  }
  return std::nullopt;
}
bool TakeFlag(std::vector<std::string>& args, std::string_view name) {
  for (size_t i = 0; i < args.size(); ++i) {
    if (args[i] == name) {
      args.erase(args.begin() + static_cast<long>(i));
      return true;
    }
  }
  return false;
}

Common TakeCommon(std::vector<std::string>& args) {
  Common c;
  if (auto u = TakeOption(args, "--url")) c.url = *u;
  while (!c.url.empty() && c.url.back() == '/') c.url.pop_back();
  if (auto t = TakeOption(args, "--token")) {
    c.token = *t;
  } else if (const char* env = std::getenv("GONFALON_TOKEN")) {
    c.token = env;
  }
  if (auto p = TakeOption(args, "--project")) c.project = *p;
  return c;
}

// The server's answer as JSON, or the reason there is none (its error message when it gave one).
absl::StatusOr<Value> Call(const Common& c, const std::string& method, const std::string& path, const std::string& body) {
  HttpRequest req;
  req.method = method;
  req.url = c.url + path;
  req.headers = {{"Authorization", StrCat("Bearer ", c.token)}, {"Content-Type", "application/json"}};
  req.body = body;
  req.timeout = std::chrono::seconds(120);
  req.body_limit = 256u << 20;
  HttpAnswer a = HttpCall(req);
  if (a.status == 0) return absl::UnavailableError(StrCat(c.url, ": ", a.error));
  absl::StatusOr<Value> json = rules::ParseJson(a.body);
  if (a.status / 100 != 2) {
    const Value* e = json.ok() ? json->Find("error") : nullptr;
    const Value* m = e != nullptr ? e->Find("message") : nullptr;
    return absl::FailedPreconditionError(StrCat("HTTP ", a.status, ": ", m != nullptr && m->is_string() ? m->as_string() : a.body));
  }
  if (!json.ok()) return absl::InternalError(StrCat("the server's answer is not JSON: ", json.status().message()));
  return *json;
}

// Pretty JSON, two spaces, for files people diff.
void PrettyJson(const Value& v, int indent, std::string& out) {
  std::string pad(static_cast<size_t>(indent) + 2, ' ');
  if (v.is_array() && !v.as_array().empty()) {
    out += "[\n";
    for (size_t i = 0; i < v.as_array().size(); ++i) {
      out += pad;
      PrettyJson(v.as_array()[i], indent + 2, out);
      out += i + 1 < v.as_array().size() ? ",\n" : "\n";
    }
    out += std::string(static_cast<size_t>(indent), ' ') + "]";
  } else if (v.is_object() && !v.as_object().empty()) {
    out += "{\n";
    size_t i = 0;
    for (const auto& [k, x] : v.as_object()) {
      out += StrCat(pad, rules::ToJson(Value(k)), ": ");
      PrettyJson(x, indent + 2, out);
      out += ++i < v.as_object().size() ? ",\n" : "\n";
    }
    out += std::string(static_cast<size_t>(indent), ' ') + "}";
  } else {
    out += rules::ToJson(v);
  }
}

constexpr char kExportUsage[] =
    "usage: gonfalon export --project P [--env E] [--format yaml|json] [-o FILE] [--url URL] [--token T]\n"
    "  writes the project (flags with each environment's targeting, segments, metrics) as one\n"
    "  stable document; --url defaults to http://127.0.0.1:8070, --token to $GONFALON_TOKEN\n";
constexpr char kImportUsage[] =
    "usage: gonfalon import --from launchdarkly FILE --project P --env E [--plan] [--comment TEXT] [--url URL] [--token T]\n"
    "  takes a LaunchDarkly server-side payload ({\"flags\":{…},\"segments\":{…}}) into project P,\n"
    "  environment E (both created when missing): what is missing is created, what exists updated,\n"
    "  one change set; what Gonfalon cannot take is listed with its path\n";
constexpr char kApplyUsage[] =
    "usage: gonfalon apply -f FILE [--plan] [--prune] [--project P] [--comment TEXT] [--url URL] [--token T]\n"
    "  makes the project match FILE (YAML or JSON, as `gonfalon export` writes it);\n"
    "  --plan only prints what would change and exits 2 if anything would (0 if not);\n"
    "  --prune also deletes flags, metrics and segments the file does not list\n";

// Plans `doc` on the server and prints the plan; applies it unless `plan_only` (see
// RunApplyCommand for the exit codes). `what` names the input in messages.
int ApplyDocument(const Common& c, const Value& doc, bool plan_only, bool prune, const std::optional<std::string>& comment,
                  const std::string& what, std::ostream& out, std::ostream& err) {
  std::string base = StrCat("/api/v1/projects/", c.project, "/apply?", prune ? "prune=true&" : "");
  absl::StatusOr<Value> plan = Call(c, "POST", base + "dryRun=true", rules::ToJson(doc));
  if (!plan.ok()) {
    err << "gonfalon apply: " << what << ": " << plan.status().message() << "\n";
    return 1;
  }
  out << PlanJsonToText(*plan);
  const Value* changes = plan->Find("changes");
  bool changed = changes != nullptr && changes->is_array() && !changes->as_array().empty();
  if (plan_only) return changed ? 2 : 0;
  if (!changed) return 0;
  const Value* token = plan->Find("planToken");
  std::string query = StrCat(base, "planToken=", token != nullptr && token->is_string() ? token->as_string() : "",
                             comment ? StrCat("&comment=", UrlEncode(*comment)) : "");
  absl::StatusOr<Value> done = Call(c, "POST", query, rules::ToJson(doc));
  if (!done.ok()) {
    err << "gonfalon apply: " << done.status().message() << "\n";
    return 1;
  }
  if (const Value* a = done->Find("applied"); a != nullptr && a->is_array()) {
    for (const Value& e : a->as_array()) {
      out << "applied to " << e.Find("environment")->as_string() << ": change set " << rules::ToJson(*e.Find("sequence")) << "\n";
    }
  }
  if (const Value* r = done->Find("changeRequests"); r != nullptr && r->is_array()) {
    for (const Value& e : r->as_array()) {
      out << e.Find("environment")->as_string() << " requires approval: change request " << e.Find("changeRequest")->as_string()
          << " opened\n";
    }
  }
  return 0;
}

}  // namespace

int RunExportCommand(const std::vector<std::string>& argv, std::ostream& out, std::ostream& err) {
  std::vector<std::string> args = argv;
  if (TakeFlag(args, "--help") || TakeFlag(args, "-h")) {
    out << kExportUsage;
    return 0;
  }
  Common c = TakeCommon(args);
  std::string format = TakeOption(args, "--format").value_or("yaml");
  std::optional<std::string> env = TakeOption(args, "--env");
  std::optional<std::string> file = TakeOption(args, "-o");
  if (!args.empty() || c.project.empty() || (format != "yaml" && format != "json")) {
    err << (args.empty() ? "" : StrCat("gonfalon export: unexpected \"", args[0], "\"\n")) << kExportUsage;
    return 2;
  }
  absl::StatusOr<Value> doc = Call(c, "GET", StrCat("/api/v1/projects/", c.project, "/export", env ? StrCat("?env=", UrlEncode(*env)) : ""), "");
  if (!doc.ok()) {
    err << "gonfalon export: " << doc.status().message() << "\n";
    return 1;
  }
  std::string text;
  if (format == "json") {
    PrettyJson(*doc, 0, text);
    text += "\n";
  } else {
    text = ToYaml(*doc);
  }
  if (file.has_value()) {
    std::ofstream f(*file, std::ios::binary | std::ios::trunc);
    f << text;
    if (!f.good()) {
      err << "gonfalon export: cannot write " << *file << "\n";
      return 1;
    }
    err << "gonfalon export: wrote " << *file << " (" << text.size() << " bytes)\n";
    return 0;
  }
  out << text;
  return 0;
}

int RunApplyCommand(const std::vector<std::string>& argv, std::ostream& out, std::ostream& err) {
  std::vector<std::string> args = argv;
  if (TakeFlag(args, "--help") || TakeFlag(args, "-h")) {
    out << kApplyUsage;
    return 0;
  }
  Common c = TakeCommon(args);
  bool plan_only = TakeFlag(args, "--plan");
  bool prune = TakeFlag(args, "--prune");
  std::optional<std::string> file = TakeOption(args, "-f");
  std::optional<std::string> comment = TakeOption(args, "--comment");
  if (!args.empty() || !file.has_value()) {
    err << (args.empty() ? "" : StrCat("gonfalon apply: unexpected \"", args[0], "\"\n")) << kApplyUsage;
    return 2;
  }
  std::ifstream in(*file, std::ios::binary);
  if (!in) {
    err << "gonfalon apply: cannot read " << *file << "\n";
    return 1;
  }
  std::stringstream buf;
  buf << in.rdbuf();
  std::string text = buf.str();
  // JSON when it reads as JSON (every JSON document is YAML, but errors read better so).
  size_t first = text.find_first_not_of(" \t\r\n");
  absl::StatusOr<Value> doc = first != std::string::npos && text[first] == '{' ? rules::ParseJson(text) : ParseYaml(text);
  if (!doc.ok()) {
    err << "gonfalon apply: " << *file << ": " << doc.status().message() << "\n";
    return 1;
  }
  if (c.project.empty()) {
    const Value* p = doc->is_object() ? doc->Find("project") : nullptr;
    if (p == nullptr || !p->is_string()) {
      err << "gonfalon apply: " << *file << ": no \"project\" (give --project)\n";
      return 2;
    }
    c.project = p->as_string();
  }
  return ApplyDocument(c, *doc, plan_only, prune, comment, *file, out, err);
}

int RunImportCommand(const std::vector<std::string>& argv, std::ostream& out, std::ostream& err) {
  std::vector<std::string> args = argv;
  if (TakeFlag(args, "--help") || TakeFlag(args, "-h")) {
    out << kImportUsage;
    return 0;
  }
  Common c = TakeCommon(args);
  bool plan_only = TakeFlag(args, "--plan");
  std::optional<std::string> from = TakeOption(args, "--from");
  std::optional<std::string> env = TakeOption(args, "--env");
  std::optional<std::string> comment = TakeOption(args, "--comment");
  if (args.size() != 1 || from != "launchdarkly" || c.project.empty() || !env.has_value()) {
    err << (from.has_value() && *from != "launchdarkly" ? StrCat("gonfalon import: --from ", *from, ": only launchdarkly is known\n") : "")
        << kImportUsage;
    return 2;
  }
  std::string file = args[0];
  std::ifstream in(file, std::ios::binary);
  if (!in) {
    err << "gonfalon import: cannot read " << file << "\n";
    return 1;
  }
  std::stringstream buf;
  buf << in.rdbuf();
  absl::StatusOr<Value> payload = rules::ParseJson(buf.str());
  if (!payload.ok()) {
    err << "gonfalon import: " << file << ": " << payload.status().message() << "\n";
    return 1;
  }
  // What the project holds now in that environment (nothing when it does not exist yet).
  absl::StatusOr<Value> existing = Call(c, "GET", StrCat("/api/v1/projects/", c.project, "/export?env=", UrlEncode(*env)), "");
  if (!existing.ok() && existing.status().message().find("HTTP 404") == std::string::npos) {
    err << "gonfalon import: " << existing.status().message() << "\n";
    return 1;
  }
  absl::StatusOr<ImportResult> imported = FromLaunchDarkly(*payload, c.project, *env, existing.ok() ? &*existing : nullptr);
  if (!imported.ok()) {
    err << "gonfalon import: " << file << ": " << imported.status().message() << "\n";
    return 1;
  }
  for (const ImportNote& n : imported->notes) err << "not taken: " << n.path << ": " << n.reason << "\n";
  err << "gonfalon import: " << imported->flags << " flags and " << imported->segments << " segments from " << file << ", "
      << imported->notes.size() << " things not taken\n";
  return ApplyDocument(c, imported->document, plan_only, false, comment.value_or(StrCat("imported from LaunchDarkly (", file, ")")),
                       file, out, err);
}

}  // namespace gonfalon::server
