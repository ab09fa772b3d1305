// Evaluates one flag of a flag file in offline mode and prints it: proof that the installed
// headers, libraries and their dependencies link into a program of a user's own.
#include <iostream>

#include "gonfalon/sdk/client.h"

int main(int argc, char** argv) {
  if (argc != 2) {
    std::cerr << "usage: consumer FLAG_FILE\n";
    return 2;
  }
  gonfalon::sdk::Config config;
  config.offline = true;
  config.flag_file = argv[1];
  gonfalon::sdk::Client client(config);
  if (!client.WaitForInitialization(std::chrono::seconds(1))) {
    std::cerr << "no data: " << client.GetStatus().last_error << "\n";
    return 1;
  }
  auto alice = gonfalon::rules::Context::Builder("user", "alice").Build();
  std::cout << "new-checkout for alice: " << (client.BoolVariation(alice, "new-checkout", false) ? "true" : "false") << "\n";
  return 0;
}
