#pragma once
// `gonfalon serve`: the server (docs/operations.md).

#include <string>
#include <vector>

namespace gonfalon::server {

int RunServeCommand(const std::vector<std::string>& args);
// `gonfalon admin-token`: a new admin key in a stopped server's data directory (recovery).
int RunAdminTokenCommand(const std::vector<std::string>& args);

}  // namespace gonfalon::server
