// Simulated traffic for a canary (docs/releases.md, "A canary, end to end"): users evaluate a
// boolean flag through the SDK, and those served `true` (the treatment) meet errors at one
// rate, the others at another, reported with TrackError. Prints, every second, the users so
// far, the share served the treatment and the errors of each side; the server's guards judge
// the plan from those events.
//   build/dev/sdk/sdk_canary http://127.0.0.1:8070 gfs_... new-checkout
//       [control error rate 0.01] [treatment error rate 0.05] [users/second 500] [seconds 120]
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <random>
#include <string>
#include <thread>

#include "gonfalon/sdk/client.h"

int main(int argc, char** argv) {
  if (argc < 4) {
    std::cerr << "usage: sdk_canary BASE_URL SDK_KEY FLAG [CONTROL_ERROR_RATE] [TREATMENT_ERROR_RATE] [USERS_PER_SECOND] [SECONDS]\n";
    return 2;
  }
  std::string flag = argv[3];
  double rate[2] = {argc > 4 ? std::atof(argv[4]) : 0.01, argc > 5 ? std::atof(argv[5]) : 0.05};
  int per_second = argc > 6 ? std::atoi(argv[6]) : 500;
  int seconds = argc > 7 ? std::atoi(argv[7]) : 120;
  gonfalon::sdk::Client client({.base_url = argv[1], .sdk_key = argv[2]});
  if (!client.WaitForInitialization(std::chrono::seconds(5))) {
    std::cerr << "not initialized: " << client.GetStatus().last_error << "\n";
    return 1;
  }
  std::mt19937_64 rng(std::random_device{}());
  std::uniform_real_distribution<double> u(0, 1);
  long users = 0, served[2] = {0, 0}, errors[2] = {0, 0};
  auto start = std::chrono::steady_clock::now();
  std::printf("%6s %8s %10s %16s %16s\n", "second", "users", "treatment", "errors control", "errors treatment");
  for (int second = 1; second <= seconds; ++second) {
    // One second's users, spread over ten slices.
    for (int slice = 0; slice < 10; ++slice) {
      for (int i = 0; i < per_second / 10; ++i, ++users) {
        auto user = gonfalon::rules::Context::Builder("user", "user-" + std::to_string(users)).Build();
        int side = client.BoolVariation(user, flag, false) ? 1 : 0;
        ++served[side];
        if (u(rng) < rate[side]) {
          client.TrackError(user, flag);
          ++errors[side];
        }
      }
      std::this_thread::sleep_until(start + std::chrono::milliseconds((second - 1) * 1000 + (slice + 1) * 100));
    }
    std::printf("%6d %8ld %9.1f%% %16ld %16ld\n", second, users, 100.0 * served[1] / std::max(1L, users), errors[0], errors[1]);
    std::fflush(stdout);
  }
  client.Flush();
  return 0;
}
