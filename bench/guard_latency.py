#!/usr/bin/env python3
"""Guard to rollback: how long from the moment the data that trips a release plan's guard is
ingested (its POST /sdk/v1/events answered, so durable) to the rollback change set being
durable. Starts the server given as argv[1] on a fresh data directory; N times (default 20),
starts a plan on a flag of its own with a metric guard and a threshold guard, sends one
healthy batch, then one batch whose treatment units all fail, and times the rollback:

  observed   until GET .../release-plan first says rolledBack (polled every 5 ms: an upper
             bound, including the poll)
  recorded   until the rollback change set's time in the history (the server's clock)

    python3 bench/guard_latency.py build/release/server/gonfalon [N]
"""
import sys
import time

from bench_server import BenchServer


def percentiles(values):
    v = sorted(values)
    pct = lambda p: v[min(len(v) - 1, int(p * len(v)))]
    return f"p50 {pct(0.5)} ms, p99 {pct(0.99)} ms, max {v[-1]} ms"


def main():
    binary = sys.argv[1]
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 20
    with BenchServer(binary, "gonfalon-guards-") as s:
        s.call("POST", "/api/v1/projects", {"key": "bench", "environments": ["production"]})
        sdk = s.call("POST", "/api/v1/keys", {"kind": "server", "project": "bench", "environment": "production"})["secret"]
        env = "/api/v1/projects/bench/environments/production"
        observed, recorded = [], []
        for run in range(n):
            flag = f"canary-{run}"
            s.call("POST", "/api/v1/projects/bench/flags", {"key": flag, "variations": [False, True]})
            s.call("PATCH", f"{env}/flags/{flag}", {"on": True, "fallthrough": {"variation": 0}})
            s.call("PUT", f"/api/v1/projects/bench/metrics/errors-{run}",
                   {"eventKey": f"error.{flag}", "kind": "conversion", "successCriteria": "lower"})
            plan = s.call("POST", f"{env}/flags/{flag}/release-plan", {
                "controlVariation": 0, "treatmentVariation": 1,
                "stages": [{"weight": 50000, "minDurationMs": 600000}, {"weight": 100000}],
                "guards": [{"kind": "metric", "metric": f"errors-{run}"},
                           {"kind": "threshold", "metric": f"errors-{run}", "max": 0.2}]})
            version = plan["flagVersion"]

            def batch(prefix, failing):
                now = int(time.time() * 1000)
                units = [{"flag": flag, "variation": u % 2, "flagVersion": version, "unitKind": "user",
                          "unitKey": f"{prefix}-{u}", "time": now - 5} for u in range(400)]
                errors = [{"event": f"error.{flag}", "time": now, "units": {"user": f"{prefix}-{u}"}}
                          for u in range(400) if failing and u % 2 == 1]
                s.call("POST", "/sdk/v1/events", {"exposedUnits": units, "metrics": errors}, token=sdk)

            batch(f"ok{run}", False)
            time.sleep(0.6)  # a look at healthy data first, as in life
            batch(f"bad{run}", True)
            ingested = time.time()
            deadline = ingested + 10
            status = ""
            while time.time() < deadline:
                status = s.call("GET", f"{env}/flags/{flag}/release-plan")["status"]
                if status != "active":
                    break
                time.sleep(0.005)
            seen = time.time()
            if status != "rolledBack":
                print(f"run {run}: the plan is {status}, not rolled back", file=sys.stderr)
                return 1
            observed.append(int((seen - ingested) * 1000))
            last = s.call("GET", f"{env}/history?limit=1")["items"][0]
            recorded.append(int(last["time"] - ingested * 1000))
        print(f"{n} guarded plans, data ingested -> rollback durable:")
        print(f"  observed (poll) {percentiles(observed)}")
        print(f"  recorded (history time) {percentiles(recorded)}")
        return 0


if __name__ == "__main__":
    sys.exit(main())
