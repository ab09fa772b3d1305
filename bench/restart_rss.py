#!/usr/bin/env python3
"""What a server costs right after it starts: RSS and malloc's arenas (issue #10).

    GONFALON_SCALE_KEEP=1 build/release/bench/scale --flags 100000 --streams 0 --writes 0
    bench/restart_rss.py /tmp/gonfalon-scale-NNNN OLD_BINARY NEW_BINARY [...]

Starts each binary in turn on the kept data directory (`serve` on a free loopback port), waits
for `/readyz`'s log line saying the environments are loaded, then prints the RSS one second
later and, from `malloc_info` called through gdb, how much the arenas hold and how much of it is
free, in how many chunks: many free chunks threaded between live ones are pages the heap cannot
hand back. The load's timings come from the server's log. Needs gdb.
"""
import os
import re
import subprocess
import sys
import tempfile
import time


def arenas(xml):
    """(system bytes, free bytes, free chunks) summed over malloc_info's heaps."""
    system = free = chunks = 0
    for body in re.findall(r'<heap nr="\d+">(.*?)</heap>', xml, re.S):
        for total, count in re.findall(r'<(?:size|unsorted) from="\d+" to="\d+" total="(\d+)" count="(\d+)"/>', body):
            free += int(total)
            chunks += int(count)
        current = re.search(r'<system type="current" size="(\d+)"', body)
        system += int(current.group(1)) if current else 0
    return system, free, chunks


def measure(binary, data_dir, work):
    out_path, err_path = os.path.join(work, "out"), os.path.join(work, "err")
    with open(out_path, "w") as out, open(err_path, "w") as err:
        server = subprocess.Popen([binary, "serve", "--listen", "127.0.0.1:0", "--data-dir", data_dir],
                                  stdout=out, stderr=err)
    try:
        deadline = time.monotonic() + 120
        while '"msg":"ready"' not in open(err_path).read():
            if server.poll() is not None or time.monotonic() > deadline:
                sys.exit(f"{binary}: not ready; see its log:\n{open(err_path).read()}")
            time.sleep(0.1)
        time.sleep(1)
        with open(f"/proc/{server.pid}/status") as status:
            rss_kb = next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))
        subprocess.run(["gdb", "-p", str(server.pid), "-batch", "-ex", "call (void)malloc_info(0, stdout)",
                        "-ex", "call (int)fflush(0)"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                       check=False)
    finally:
        server.terminate()
        server.wait()
    system, free, chunks = arenas(open(out_path).read())
    loaded = re.findall(r'"read_ms":"(\d+)","compile_ms":"(\d+)"', open(err_path).read())
    timing = f"; read {loaded[0][0]} ms, compiled {loaded[0][1]} ms" if loaded else ""
    print(f"{binary}: RSS {rss_kb / 1024:.0f} MB; arenas {system / 1e6:.0f} MB, "
          f"free {free / 1e6:.1f} MB in {chunks} chunks{timing}", flush=True)


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    with tempfile.TemporaryDirectory() as work:
        for binary in sys.argv[2:]:
            measure(binary, sys.argv[1], work)


if __name__ == "__main__":
    main()
