#!/usr/bin/env python3
"""How late scheduled changes run: starts the server given as argv[1] on a fresh data
directory, schedules N changes (each turning on its own flag) spread over a few seconds,
waits for them, and prints the distribution of lateByMs (the time from executeAt to the
change set being durable, as the server records it).

    python3 bench/schedule_latency.py build/release/server/gonfalon [N]
"""
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request

TOKEN = "bench-admin-token-0123456789"


def call(port, method, path, body=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data, method=method,
                                 headers={"Authorization": f"Bearer {TOKEN}"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read() or b"{}")


def main():
    binary = sys.argv[1]
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 100
    data_dir = tempfile.mkdtemp(prefix="gonfalon-schedule-")
    env = dict(os.environ, GONFALON_ADMIN_TOKEN=TOKEN)
    out_path = os.path.join(data_dir, "server.out")
    out = open(out_path, "w")
    server = subprocess.Popen([binary, "serve", "--listen", "127.0.0.1:0", "--data-dir", os.path.join(data_dir, "db")],
                              stdout=out, stderr=subprocess.DEVNULL, env=env)
    try:
        port = None
        deadline = time.time() + 20
        while port is None and time.time() < deadline:
            m = re.search(r"listening on http://127\.0\.0\.1:(\d+)", open(out_path).read())
            if m:
                port = int(m.group(1))
            else:
                time.sleep(0.05)
        if port is None:
            print("the server did not start", file=sys.stderr)
            return 1
        deadline = time.time() + 20
        while time.time() < deadline:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2)
                break
            except Exception:
                time.sleep(0.05)
        call(port, "POST", "/api/v1/projects", {"key": "bench", "environments": ["production"]})
        for i in range(n):
            call(port, "POST", "/api/v1/projects/bench/flags", {"key": f"f{i}", "variations": [False, True]})
        base = "/api/v1/projects/bench/environments/production/scheduled-changes"
        start = int(time.time() * 1000) + 2000
        ids = []
        for i in range(n):
            at = start + i * 5000 // n  # spread over five seconds
            made = call(port, "POST", base, {"executeAt": at, "items": [
                {"kind": "flag", "key": f"f{i}", "data": {"on": True, "fallthrough": {"variation": 1}, "offVariation": 0}}]})
            ids.append(made["id"])
        deadline = time.time() + 30
        while time.time() < deadline:
            done = call(port, "GET", base + "?status=applied")["items"]
            if len(done) == n:
                break
            time.sleep(0.2)
        late = sorted(c["lateByMs"] for c in call(port, "GET", base + "?status=applied")["items"])
        if len(late) != n:
            print(f"only {len(late)} of {n} applied", file=sys.stderr)
            return 1
        pct = lambda p: late[min(len(late) - 1, int(p * len(late)))]
        print(f"{n} scheduled changes: lateByMs p50 {pct(0.5)}, p99 {pct(0.99)}, max {late[-1]}")
        return 0
    finally:
        server.terminate()
        server.wait(timeout=20)
        shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
