// Experiment (not built by CMake): what one fan-out round to N loopback TCP streams costs the
// sending thread, as N send() syscalls (what Hubs::FanOut does today through Session::Send)
// against one io_uring submission of N sends. Alternates the two in one process, round by
// round, and prints the median thread CPU time and wall time of a round.
//   apt-get install liburing-dev
//   g++ -O2 -std=c++20 bench/uring_fanout.cc -o /tmp/uring_fanout -luring
//   /tmp/uring_fanout 1000 300      # streams, rounds (needs N+10 file descriptors)
// Results and what they suggest: docs/performance.md, "Session 23".
#include <arpa/inet.h>
#include <fcntl.h>
#include <liburing.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

static double Now(clockid_t c) {
  timespec t;
  clock_gettime(c, &t);
  return t.tv_sec * 1e6 + t.tv_nsec / 1e3;
}

int main(int argc, char** argv) {
  int n = argc > 1 ? atoi(argv[1]) : 1000;
  int rounds = argc > 2 ? atoi(argv[2]) : 200;
  int lfd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (bind(lfd, (sockaddr*)&a, sizeof a) != 0 || listen(lfd, 4096) != 0) {
    perror("listen");
    return 1;
  }
  socklen_t al = sizeof a;
  getsockname(lfd, (sockaddr*)&a, &al);
  std::vector<int> cli(n), srv(n);
  for (int i = 0; i < n; ++i) {
    cli[i] = socket(AF_INET, SOCK_STREAM, 0);
    if (connect(cli[i], (sockaddr*)&a, sizeof a) != 0) { perror("connect"); return 1; }
    srv[i] = accept(lfd, nullptr, nullptr);
    int one = 1;
    setsockopt(srv[i], IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    fcntl(cli[i], F_SETFL, O_NONBLOCK);
  }
  std::string msg = "id: 12345\nevent: changes\ndata: " + std::string(180, 'x') + "\n\n";
  io_uring ring;
  if (io_uring_queue_init(std::max(n, 64), &ring, 0) != 0) { perror("ring"); return 1; }
  char buf[65536];
  auto drain = [&] {
    for (int i = 0; i < n; ++i) while (recv(cli[i], buf, sizeof buf, 0) > 0) {}
  };
  std::vector<double> cpu[2], wall[2];
  for (int r = 0; r < rounds; ++r) {
    for (int mode = 0; mode < 2; ++mode) {
      double c0 = Now(CLOCK_THREAD_CPUTIME_ID), w0 = Now(CLOCK_MONOTONIC);
      if (mode == 0) {
        for (int i = 0; i < n; ++i) send(srv[i], msg.data(), msg.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
      } else {
        for (int i = 0; i < n; ++i) {
          io_uring_sqe* sqe = io_uring_get_sqe(&ring);
          io_uring_prep_send(sqe, srv[i], msg.data(), msg.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
        }
        io_uring_submit_and_wait(&ring, n);
        io_uring_cqe* cqe;
        unsigned head, seen = 0;
        io_uring_for_each_cqe(&ring, head, cqe) {
          if (cqe->res != (int)msg.size()) { fprintf(stderr, "res %d\n", cqe->res); }
          ++seen;
        }
        io_uring_cq_advance(&ring, seen);
      }
      cpu[mode].push_back(Now(CLOCK_THREAD_CPUTIME_ID) - c0);
      wall[mode].push_back(Now(CLOCK_MONOTONIC) - w0);
      drain();
    }
  }
  for (int mode = 0; mode < 2; ++mode) {
    std::sort(cpu[mode].begin(), cpu[mode].end());
    std::sort(wall[mode].begin(), wall[mode].end());
    printf("%s: round of %d sends: cpu p50 %.0f us (%.2f us/send), wall p50 %.0f us\n", mode ? "io_uring" : "send()  ", n,
           cpu[mode][cpu[mode].size() / 2], cpu[mode][cpu[mode].size() / 2] / n, wall[mode][wall[mode].size() / 2]);
  }
}
