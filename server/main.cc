// The `gonfalon` executable: one binary, one subcommand per job.
#include <iostream>
#include <string>
#include <vector>

#include "src/as_code_command.h"
#include "src/eval_command.h"
#include "src/serve_command.h"

namespace {
constexpr char kUsage[] =
    "usage: gonfalon <command> [options]\n"
    "commands:\n"
    "  serve    run the server (gonfalon serve --help)\n"
    "  eval     evaluate flags from a data file (gonfalon eval --help)\n"
    "  export   write a project as a YAML or JSON document (gonfalon export --help)\n"
    "  apply    make a project match such a document; --plan shows the drift (gonfalon apply --help)\n"
    "  import   take a LaunchDarkly payload into a project (gonfalon import --help)\n"
    "  admin-token  make a new admin key in a stopped server's data directory\n";
}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::cerr << kUsage;
    return 2;
  }
  std::string command = argv[1];
  std::vector<std::string> args(argv + 2, argv + argc);
  if (command == "eval") return gonfalon::server::RunEvalCommand(args, std::cout, std::cerr);
  if (command == "serve") return gonfalon::server::RunServeCommand(args);
  if (command == "export") return gonfalon::server::RunExportCommand(args, std::cout, std::cerr);
  if (command == "apply") return gonfalon::server::RunApplyCommand(args, std::cout, std::cerr);
  if (command == "import") return gonfalon::server::RunImportCommand(args, std::cout, std::cerr);
  if (command == "admin-token") return gonfalon::server::RunAdminTokenCommand(args);
  if (command == "--help" || command == "-h" || command == "help") {
    std::cout << kUsage;
    return 0;
  }
  std::cerr << "gonfalon: unknown command \"" << command << "\"\n" << kUsage;
  return 2;
}
