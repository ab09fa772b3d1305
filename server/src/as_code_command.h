#pragma once
// `gonfalon export`, `apply` and `import` (docs/cli.md, docs/flags-as-code.md): thin clients
// of GET /api/v1/projects/{p}/export and POST /api/v1/projects/{p}/apply.

#include <iosfwd>
#include <string>
#include <vector>

namespace gonfalon::server {

// Writes the project's document (YAML by default, or JSON). Exit: 0 done, 1 the server said
// no or could not be reached, 2 bad usage.
int RunExportCommand(const std::vector<std::string>& args, std::ostream& out, std::ostream& err);

// Prints the plan that makes the project match the file and, without --plan, applies it
// (guarded by the plan's token: a change made in between fails the apply). Exit: with --plan,
// 0 when nothing would change and 2 when something would (drift); without it, 0 applied (or
// nothing to do); 1 an error (the server's, naming the document path); 2 bad usage.
int RunApplyCommand(const std::vector<std::string>& args, std::ostream& out, std::ostream& err);

// `gonfalon import --from launchdarkly FILE --project P --env E`: the payload as a document
// (launchdarkly_import.h) applied like `apply` (no prune); what it could not take is listed
// on stderr with its path. Exit codes as apply's.
int RunImportCommand(const std::vector<std::string>& args, std::ostream& out, std::ostream& err);

}  // namespace gonfalon::server
