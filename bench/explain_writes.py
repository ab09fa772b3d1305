#!/usr/bin/env python3
"""Where the slowest acknowledged writes of bench/scale spent their time, from a scheduler trace.

    perf record -k mono -a -e sched:sched_switch -e sched:sched_wakeup \
        -e block:block_rq_issue -e block:block_rq_complete -o trace.data -- \
        build/release/bench/scale --server build/release/server/gonfalon --flags 100000 \
        --streams 1000 --writes 500 --explain 500 > scale.out
    perf script -i trace.data -F comm,pid,tid,cpu,time,event,trace > trace.txt
    bench/explain_writes.py scale.out trace.txt [--top 10] [--timeline N]

For each of the slowest writes (`--explain` prints each write's sending time on the monotonic
clock, which `perf record -k mono` shares) it splits the acknowledgement into the server's part
(from the sending to the moment the answer woke the benchmark's writer thread) and the writer's
wait for a core after that, and names the threads that held the cores while a thread on the
write's path (the server's, or the writer) was runnable but waiting: the benchmark's own stream
reader, the server's fan-out, `kdamond`, the host's agents. `--timeline N` prints the N-th
slowest write's events one by one.
"""
import argparse
import bisect
import re
from collections import Counter

SWITCH = re.compile(r'prev_comm=(.*?) prev_pid=(\d+) prev_prio=(\d+) prev_state=(\S+) ==> next_comm=(.*?) next_pid=(\d+) next_prio=(\d+)')
SWITCH_SHORT = re.compile(r'(.*?) prev_pid=(\d+) prev_prio=(\d+) prev_state=(\S+) ==> (.*?) next_pid=(\d+) next_prio=(\d+)')
WAKE = re.compile(r'comm=(.*?) pid=(\d+) prio=(\d+) target_cpu=(\d+)')
LINE = re.compile(r'\s*(.+?)\s+(\d+)/(\d+)\s+\[(\d+)\]\s+([\d.]+):\s+(\S+):\s*(.*)')
WRITE = re.compile(r'write (\d+) acknowledged in ([\d.]+) ms.*sent at ([\d.]+) s')


def load(scale_out, trace_txt):
    writes = []
    for line in open(scale_out):
        m = WRITE.search(line)
        if m:
            writes.append((int(m.group(1)), float(m.group(2)) / 1000, float(m.group(3))))
    if not writes:
        raise SystemExit(f"{scale_out}: no write with its sending time (run scale with --explain 500)")
    lo = min(w[2] for w in writes) - 0.05
    hi = max(w[2] + w[1] for w in writes) + 0.05
    events, writer = [], None
    for line in open(trace_txt):
        m = LINE.match(line)
        if not m:
            continue
        t = float(m.group(5))
        if t < lo or t > hi:
            continue
        comm, pid, tid, cpu, ev, tr = m.group(1), int(m.group(2)), int(m.group(3)), int(m.group(4)), m.group(6), m.group(7)
        if comm == 'scale' and pid == tid:
            writer = tid  # the writes are sent from the benchmark's main thread
        if ev == 'sched:sched_switch':
            s = SWITCH.search(tr) or SWITCH_SHORT.search(tr)
            events.append((t, cpu, 'switch', (s.group(1).strip(), int(s.group(2)), s.group(4), s.group(5).strip(), int(s.group(6)))))
        elif ev == 'sched:sched_wakeup':
            w = WAKE.search(tr)
            events.append((t, cpu, 'wake', (w.group(1), int(w.group(2)), int(w.group(4)), comm, tid)))
        elif ev.startswith('block:'):
            events.append((t, cpu, ev.split(':')[1], (comm, tid, tr)))
    return writes, events, writer


def explain(write, events, times, writer):
    index, ack, t0 = write
    t1 = t0 + ack
    a, b = bisect.bisect_left(times, t0), bisect.bisect_right(times, t1 + 0.0002)
    woken = {}     # tid -> time of a wake-up not yet followed by the thread running
    held = Counter()  # thread switched out when a path thread finally ran -> ms it waited
    answered = None   # the last wake-up of the writer in the window: the answer's
    for t, cpu, kind, d in events[a:b]:
        if kind == 'wake':
            name, tid, _, _, _ = d
            if name == 'gonfalon' or tid == writer:
                woken[tid] = t
                if tid == writer:
                    answered = t
        elif kind == 'switch':
            prev, prev_tid, _, _, nxt_tid = d
            if nxt_tid in woken:
                waited = t - woken.pop(nxt_tid)
                if waited > 0.0002:
                    held[f"{prev}/{prev_tid}"] += waited * 1000
    server = (answered - t0) * 1000 if answered else None
    return index, ack * 1000, server, held


def timeline(write, events, times):
    index, ack, t0 = write
    a, b = bisect.bisect_left(times, t0 - 0.0002), bisect.bisect_right(times, t0 + ack + 0.0002)
    print(f"write {index}, acknowledged in {ack * 1000:.2f} ms; times in ms from its sending:")
    for t, cpu, kind, d in events[a:b]:
        rel = (t - t0) * 1000
        if kind == 'switch':
            prev, prev_tid, state, nxt, nxt_tid = d
            print(f"  {rel:7.3f} cpu{cpu} {prev}/{prev_tid} [{state}] -> {nxt}/{nxt_tid}")
        elif kind == 'wake':
            name, tid, target, by, by_tid = d
            print(f"  {rel:7.3f} cpu{cpu} {by}/{by_tid} wakes {name}/{tid} onto cpu{target}")
        else:
            comm, tid, tr = d
            print(f"  {rel:7.3f} cpu{cpu} {kind} by {comm}/{tid}: {tr[:70]}")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('scale_out')
    p.add_argument('trace_txt')
    p.add_argument('--top', type=int, default=10)
    p.add_argument('--timeline', type=int, default=0, help='print the events of the N-th slowest write')
    o = p.parse_args()
    writes, events, writer = load(o.scale_out, o.trace_txt)
    times = [e[0] for e in events]
    slow = sorted(writes, key=lambda w: -w[1])
    if o.timeline:
        timeline(slow[o.timeline - 1], events, times)
        return
    # Over all writes: the server's part and the writer's wait, where the trace shows the answer
    # waking the writer (a writer not yet asleep when the answer came has no such wake-up).
    split = [explain(w, events, times, writer) for w in writes]
    server = sorted(s[2] for s in split if s[2] is not None)
    wait = sorted(s[1] - s[2] for s in split if s[2] is not None)
    acks = sorted(w[1] * 1000 for w in writes)

    def pct(v, q):
        return v[min(len(v) - 1, int(q * len(v)))] if v else float('nan')
    print(f"{len(writes)} writes: acknowledged p50 {pct(acks, 0.5):.2f} / p99 {pct(acks, 0.99):.2f} ms; "
          f"of the {len(server)} whose answer woke the writer, the server's part p50 {pct(server, 0.5):.2f} / "
          f"p99 {pct(server, 0.99):.2f} ms, the writer's wait for a core p50 {pct(wait, 0.5):.2f} / p99 {pct(wait, 0.99):.2f} ms")
    total = Counter()
    for w in slow[:o.top]:
        index, ack, server, held = explain(w, events, times, writer)
        where = f"server {server:.2f} ms, writer's wait {ack - server:.2f} ms" if server is not None else "the writer was never asleep"
        top = ', '.join(f"{k} {v:.2f}" for k, v in held.most_common(3))
        print(f"write {index}: {ack:.2f} ms ({where}); path threads waited behind: {top or 'nothing'}")
        for k, v in held.items():
            total[re.sub(r'/\d+$', '', k) if not k.startswith(('gonfalon', 'scale')) else k] += v
    print("over these writes, waiting behind:", ', '.join(f"{k} {v:.1f} ms" for k, v in total.most_common(8)))


if __name__ == '__main__':
    main()
