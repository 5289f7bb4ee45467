"""Write a large, valid asyncshim trace (docs/trace-format.md) without running
a program: loop threads with many iterations, blocking calls inside some of
them, stalls (slow iterations without a blocking call), coroutine tasks that
run twice each, and a non-loop thread.  For the HTML report's and export's
scale tests, and by hand:

    python3 tests/gen_trace.py OUT.msgpack [EVENTS [TASKS]]

Deterministic for a given seed; returns what it wrote so tests can compare.
EVENTS counts iterations + blocking calls + stalls + task runs."""
import random
import sys

import msgpack

CALLS = [("usleep", None, None), ("read", 7, "pipe"), ("fsync", 12, "file"),
         ("getaddrinfo", None, None), ("connect", 9, "socket"), ("write", 14, "socket")]
BATCH = 512          # iterations per iters record, as the collector batches them
FN = 0x401000        # the coroutines' entry function


def pick(rnd, sizes, count, taken):
    """count distinct (thread, iteration) pairs spread over the threads, none in taken."""
    out = [set() for _ in sizes]
    while sum(map(len, out)) < count:
        i = rnd.randrange(len(sizes))
        n = rnd.randrange(sizes[i])
        if n not in taken[i]:
            out[i].add(n)
    return out


def generate(path, events=1_000_000, loops=4, blocks=10_000, tasks=0, seed=1, pid=424242):
    rnd = random.Random(seed)
    stalls = events // 500
    iterations = events - blocks - stalls - 2 * tasks
    per_loop = [iterations // loops + (1 if i < iterations % loops else 0) for i in range(loops)]
    tids = [pid + i for i in range(loops)]
    blocked = pick(rnd, per_loop, blocks, [set() for _ in tids])
    stalled = pick(rnd, per_loop, stalls, blocked)
    summary = {"pid": pid, "tids": tids, "iterations": dict(zip(tids, per_loop)), "blocks": blocks,
               "block_calls": {}, "stalls": stalls, "tasks": tasks, "duration_ns": 0, "max_lag_ns": 0}
    pk = msgpack.Packer()
    with open(path, "wb") as f:
        f.write(pk.pack({"type": "header", "format": 1, "pid": pid, "ppid": 1,
                         "exe": "/usr/bin/generated-server", "argv": ["generated-server", "--big"],
                         "start_unix_ns": 1_700_000_000_000_000_000, "clock": "tsc",
                         "options_string": "", "options": {"out": "/tmp/asyncshim", "block_ms": 10,
                                                            "stall_ms": 10, "stacks": 1, "buffer_kb": 1024,
                                                            "flush_ms": 1000}}))
        for i, tid in enumerate(tids):
            f.write(pk.pack({"type": "thread", "tid": tid, "name": f"loop-{i}", "loop": True,
                             "dropped": 0, "exited": False}))
        end = 0
        for i, tid in enumerate(tids):
            t = rnd.randrange(1_000_000)
            batch, t0, prev, found = [], None, None, []
            for n in range(per_loop[i]):
                t += rnd.randrange(200_000, 1_500_000)          # waiting in the loop's wait
                if n in blocked[i]:
                    call, fd, kind = CALLS[rnd.randrange(len(CALLS))]
                    bdur = rnd.randrange(10_000_000, 60_000_000)
                    dur = bdur + rnd.randrange(50_000, 500_000)
                    found.append({"type": "block", "tid": tid, "call": call, "fd": fd, "fd_kind": kind,
                                  "t": t + 20_000, "dur": bdur, "stack": 0})
                    summary["block_calls"][call] = summary["block_calls"].get(call, 0) + 1
                elif n in stalled[i]:
                    dur = rnd.randrange(10_000_000, 40_000_000)   # busy with no call to blame
                    found.append({"type": "stall", "tid": tid, "t": t, "dur": dur, "iteration": dur,
                                  "blocked": 0, "sampled": 1, "sampling_ns": 2_000, "samples": []})
                else:
                    dur = int(rnd.lognormvariate(10.5, 0.8))     # ~36 µs typical
                summary["max_lag_ns"] = max(summary["max_lag_ns"], dur)
                if t0 is None:
                    t0, prev = t, t
                batch += [t - prev, dur]
                prev = t
                t += dur
                if len(batch) == 2 * BATCH or n == per_loop[i] - 1:
                    # as the collector does: a batch of iterations, then what was found in them
                    f.write(pk.pack({"type": "iters", "tid": tid, "t0": t0, "d": batch}))
                    for b in found:
                        f.write(pk.pack(b))
                    batch, t0, found = [], None, []
            end = max(end, t)
        write_tasks(f, pk, rnd, pid, tasks, end)
        # a worker that is not a loop, named only at the end (as at exit)
        f.write(pk.pack({"type": "thread", "tid": pid + 100, "name": "worker", "loop": False,
                         "dropped": 0, "exited": True}))
        f.write(pk.pack({"type": "end", "reason": "exit", "duration_ns": end + 1_000_000}))
    summary["duration_ns"] = end + 1_000_000
    return summary


def write_tasks(f, pk, rnd, tid, tasks, end):
    """Coroutines on the first loop thread: created, run, suspended, run again, completed."""
    if not tasks:
        return
    f.write(pk.pack({"type": "func", "addr": FN, "name": "handle_request", "module": "/usr/bin/generated-server",
                     "offset": 0x1000}))
    runs = []
    for k in range(1, tasks + 1):
        created = rnd.randrange(max(1, end - 50_000_000))
        first = created + rnd.randrange(10_000, 1_000_000)
        d1, wait, d2 = rnd.randrange(5_000, 200_000), rnd.randrange(100_000, 20_000_000), rnd.randrange(5_000, 200_000)
        f.write(pk.pack({"type": "task", "tid": tid, "id": k, "parent": None, "kind": "ucontext", "fn": FN,
                         "t": created}))
        runs += [(first, k, d1, 0), (first + d1 + wait, k, d2, 1)]
        f.write(pk.pack({"type": "task_end", "tid": tid, "id": k, "t": first + d1 + wait + d2,
                         "status": "completed"}))
    runs.sort()
    for i in range(0, len(runs), BATCH):
        part, d, prev = runs[i:i + BATCH], [], runs[i][0]
        for start, k, dur, fin in part:
            d += [k, start - prev, dur, fin]
            prev = start
        f.write(pk.pack({"type": "task_runs", "tid": tid, "t0": part[0][0], "d": d}))


if __name__ == "__main__":
    s = generate(sys.argv[1], events=int(sys.argv[2]) if len(sys.argv) > 2 else 1_000_000,
                 tasks=int(sys.argv[3]) if len(sys.argv) > 3 else 0)
    print(f"{sys.argv[1]}: {sum(s['iterations'].values())} iterations, {s['blocks']} blocking calls, "
          f"{s['stalls']} stalls, {s['tasks']} tasks, {s['duration_ns'] / 1e9:.1f} s")
