// Connects to a Gonfalon server (`make run`), prints a flag for a user and every change to it.
//   build/dev/sdk/sdk_example http://127.0.0.1:8070 gfs_... new-checkout alice [seconds]
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <thread>

#include "gonfalon/sdk/client.h"

int main(int argc, char** argv) {
  if (argc < 5) {
    std::cerr << "usage: sdk_example BASE_URL SDK_KEY FLAG USER_KEY [SECONDS]\n";
    return 2;
  }
  std::string flag = argv[3];
  int seconds = argc > 5 ? std::atoi(argv[5]) : 60;
  gonfalon::sdk::Client client({.base_url = argv[1], .sdk_key = argv[2]});
  if (!client.WaitForInitialization(std::chrono::seconds(5))) {
    std::cerr << "not initialized: " << client.GetStatus().last_error << "\n";
  }
  auto user = gonfalon::rules::Context::Builder("user", argv[4]).Build();
  auto detail = client.JsonVariationDetail(user, flag, gonfalon::rules::Value());
  std::cout << flag << " = " << gonfalon::rules::ToJson(detail.value) << " ("
            << gonfalon::rules::ReasonKindName(detail.reason.kind) << ")" << std::endl;
  client.OnValueChange(flag, user, [&](const gonfalon::rules::Value& before, const gonfalon::rules::Value& now) {
    std::cout << flag << " changed: " << gonfalon::rules::ToJson(before) << " -> " << gonfalon::rules::ToJson(now)
              << std::endl;
  });
  std::this_thread::sleep_for(std::chrono::seconds(seconds));  // a demo: watch for a while
  return 0;
}
