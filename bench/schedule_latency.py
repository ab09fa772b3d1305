#!/usr/bin/env python3
"""How late scheduled changes run: starts the server given as argv[1] on a fresh data
directory, schedules N changes (each turning on its own flag) spread over a few seconds,
waits for them, and prints the distribution of lateByMs (the time from executeAt to the
change set being durable, as the server records it).

    python3 bench/schedule_latency.py build/release/server/gonfalon [N]
"""
import sys
import time

from bench_server import BenchServer


def main():
    binary = sys.argv[1]
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 100
    with BenchServer(binary, "gonfalon-schedule-") as server:
        call = lambda method, path, body=None: server.call(method, path, body)
        call("POST", "/api/v1/projects", {"key": "bench", "environments": ["production"]})
        for i in range(n):
            call("POST", "/api/v1/projects/bench/flags", {"key": f"f{i}", "variations": [False, True]})
        base = "/api/v1/projects/bench/environments/production/scheduled-changes"
        start = int(time.time() * 1000) + 2000
        ids = []
        for i in range(n):
            at = start + i * 5000 // n  # spread over five seconds
            made = call("POST", base, {"executeAt": at, "items": [
                {"kind": "flag", "key": f"f{i}", "data": {"on": True, "fallthrough": {"variation": 1}, "offVariation": 0}}]})
            ids.append(made["id"])
        deadline = time.time() + 30
        while time.time() < deadline:
            done = call("GET", base + "?status=applied")["items"]
            if len(done) == n:
                break
            time.sleep(0.2)
        late = sorted(c["lateByMs"] for c in call("GET", base + "?status=applied")["items"])
        if len(late) != n:
            print(f"only {len(late)} of {n} applied", file=sys.stderr)
            return 1
        pct = lambda p: late[min(len(late) - 1, int(p * len(late)))]
        print(f"{n} scheduled changes: lateByMs p50 {pct(0.5)}, p99 {pct(0.99)}, max {late[-1]}")
        return 0


if __name__ == "__main__":
    sys.exit(main())
