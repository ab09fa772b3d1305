#pragma once
// `gonfalon serve`: the server (docs/operations.md).

#include <string>
#include <vector>

namespace gonfalon::server {

int RunServeCommand(const std::vector<std::string>& args);

}  // namespace gonfalon::server
