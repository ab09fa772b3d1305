#!/usr/bin/env python3
"""Pools the acknowledgement times of several bench/scale runs into one distribution.

A p99 over one run's 500 writes is its 5th slowest write, so one burst of the host's stalls
moves it by milliseconds from run to run; the same percentile over the writes of several runs
is the steadier estimate. Each run must print every write (`--explain` with the number of
writes):

    for i in 1 2 3 4 5 6; do
      build/release/bench/scale --server build/release/server/gonfalon --flags 100000 \
          --streams 1000 --writes 500 --explain 500 > run$i.out
    done
    bench/pool_acks.py run*.out [--limit-ms 5]

Prints each run's p50/p99 and the pooled p50, p99, p99.9 and maximum, with the share of writes
over the limit. Percentiles are taken as bench/scale takes them (the value at index p·n of
the sorted times).
"""
import argparse
import re
import sys

WRITE = re.compile(r"write \d+ acknowledged in ([\d.]+) ms")


def percentile(sorted_values, p):
    return sorted_values[min(len(sorted_values) - 1, int(p * len(sorted_values)))]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("outputs", nargs="+", help="bench/scale outputs made with --explain N")
    ap.add_argument("--limit-ms", type=float, default=5.0, help="the target the share over is counted against")
    args = ap.parse_args()
    pooled = []
    for path in args.outputs:
        with open(path) as f:
            times = sorted(float(m) for m in WRITE.findall(f.read()))
        if not times:
            print(f"{path}: no per-write lines (run bench/scale with --explain N)", file=sys.stderr)
            return 1
        print(f"{path}: {len(times)} writes, p50 {percentile(times, 0.5):.2f} ms, p99 {percentile(times, 0.99):.2f} ms")
        pooled += times
    pooled.sort()
    over = sum(t > args.limit_ms for t in pooled)
    print(f"pooled: {len(pooled)} writes, p50 {percentile(pooled, 0.5):.2f} ms, p99 {percentile(pooled, 0.99):.2f} ms, "
          f"p99.9 {percentile(pooled, 0.999):.2f} ms, max {pooled[-1]:.2f} ms; over {args.limit_ms:g} ms: {over} "
          f"({100.0 * over / len(pooled):.2f} %)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
