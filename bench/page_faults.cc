// What a first touch of memory costs on this host (docs/performance.md, "Session 19"):
//
//   build/release/bench/page_faults [MB] [--huge]
//
// Maps MB (default 512) of anonymous memory, writes one byte in each 4 KiB page, and reports the
// time per page; --huge first asks for transparent huge pages (madvise MADV_HUGEPAGE). Then
// writes the whole area again, to show what the same bytes cost once they are mapped.
#include <sys/mman.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string_view>

int main(int argc, char** argv) {
  size_t mb = 512;
  bool huge = false;
  for (int i = 1; i < argc; ++i) {
    if (std::string_view(argv[i]) == "--huge") {
      huge = true;
    } else {
      mb = std::strtoul(argv[i], nullptr, 10);
    }
  }
  if (mb == 0) {
    std::fprintf(stderr, "usage: %s [MB] [--huge]\n", argv[0]);
    return 2;
  }
  const size_t bytes = mb << 20, page = 4096;
  void* area = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (area == MAP_FAILED) {
    std::perror("mmap");
    return 1;
  }
  auto* p = static_cast<volatile char*>(area);
  if (huge && madvise(area, bytes, MADV_HUGEPAGE) != 0) std::perror("madvise(MADV_HUGEPAGE)");
  auto ms = [](auto d) { return std::chrono::duration<double, std::milli>(d).count(); };
  auto t0 = std::chrono::steady_clock::now();
  for (size_t i = 0; i < bytes; i += page) p[i] = 1;
  auto t1 = std::chrono::steady_clock::now();
  std::memset(area, 2, bytes);
  auto t2 = std::chrono::steady_clock::now();
  std::printf("%zu MB%s: first touch %.0f ms (%.2f us per 4 KiB page); written again %.0f ms\n", mb,
              huge ? " (huge pages asked for)" : "", ms(t1 - t0), ms(t1 - t0) * 1000 / static_cast<double>(bytes / page),
              ms(t2 - t1));
  munmap(area, bytes);
  return 0;
}
