#pragma once
// `gonfalon eval`: evaluates flags from a data file for one or many contexts (docs/cli.md).

#include <iosfwd>
#include <string>
#include <vector>

namespace gonfalon::server {

// Runs the subcommand with its arguments (argv after "eval"). Returns the process exit code:
// 0 success, 1 bad data or context input, 2 bad usage.
int RunEvalCommand(const std::vector<std::string>& args, std::ostream& out, std::ostream& err);

}  // namespace gonfalon::server
