"""Write a large, valid asyncshim trace (docs/trace-format.md) without running
a program: loop threads with many iterations, blocking calls inside some of
them, and a couple of non-loop threads.  For the HTML report's and export's
scale tests, and by hand:

    python3 tests/gen_trace.py OUT.msgpack [EVENTS]

Deterministic for a given seed; returns what it wrote so tests can compare."""
import random
import sys

import msgpack

CALLS = [("usleep", None, None), ("read", 7, "pipe"), ("fsync", 12, "file"),
         ("getaddrinfo", None, None), ("connect", 9, "socket"), ("write", 14, "socket")]
BATCH = 512          # iterations per iters record, as the collector batches them


def generate(path, events=1_000_000, loops=4, blocks=10_000, seed=1, pid=424242):
    rnd = random.Random(seed)
    iterations = events - blocks
    per_loop = [iterations // loops + (1 if i < iterations % loops else 0) for i in range(loops)]
    tids = [pid + i for i in range(loops)]
    # which iterations hold a blocking call: spread evenly over the threads
    blocked = [set() for _ in range(loops)]
    for k in range(blocks):
        i = k % loops
        blocked[i].add(rnd.randrange(per_loop[i]))
    while sum(len(b) for b in blocked) < blocks:   # collisions: top up
        i = rnd.randrange(loops)
        blocked[i].add(rnd.randrange(per_loop[i]))
    summary = {"pid": pid, "tids": tids, "iterations": dict(zip(tids, per_loop)), "blocks": 0,
               "block_calls": {}, "duration_ns": 0, "max_lag_ns": 0}
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
            batch, t0, prev, blocks_out = [], None, None, []
            for n in range(per_loop[i]):
                t += rnd.randrange(200_000, 1_500_000)          # waiting in the loop's wait
                if n in blocked[i]:
                    call, fd, kind = CALLS[rnd.randrange(len(CALLS))]
                    bdur = rnd.randrange(10_000_000, 60_000_000)
                    dur = bdur + rnd.randrange(50_000, 500_000)
                    blocks_out.append({"type": "block", "tid": tid, "call": call, "fd": fd, "fd_kind": kind,
                                       "t": t + 20_000, "dur": bdur, "stack": 0})
                    summary["block_calls"][call] = summary["block_calls"].get(call, 0) + 1
                elif rnd.random() < 0.002:
                    dur = rnd.randrange(10_000_000, 40_000_000)   # slow without a call to blame
                else:
                    dur = int(rnd.lognormvariate(10.5, 0.8))     # ~36 µs typical
                summary["max_lag_ns"] = max(summary["max_lag_ns"], dur)
                if t0 is None:
                    t0, prev = t, t
                batch += [t - prev, dur]
                prev = t
                t += dur
                if len(batch) == 2 * BATCH:
                    f.write(pk.pack({"type": "iters", "tid": tid, "t0": t0, "d": batch}))
                    for b in blocks_out:
                        f.write(pk.pack(b))
                    summary["blocks"] += len(blocks_out)
                    batch, t0, blocks_out = [], None, []
            if batch:
                f.write(pk.pack({"type": "iters", "tid": tid, "t0": t0, "d": batch}))
            for b in blocks_out:
                f.write(pk.pack(b))
            summary["blocks"] += len(blocks_out)
            end = max(end, t)
        # a worker that is not a loop, named only at the end (as at exit)
        f.write(pk.pack({"type": "thread", "tid": pid + 100, "name": "worker", "loop": False,
                         "dropped": 0, "exited": True}))
        f.write(pk.pack({"type": "end", "reason": "exit", "duration_ns": end + 1_000_000}))
    summary["duration_ns"] = end + 1_000_000
    return summary


if __name__ == "__main__":
    s = generate(sys.argv[1], events=int(sys.argv[2]) if len(sys.argv) > 2 else 1_000_000)
    print(f"{sys.argv[1]}: {sum(s['iterations'].values())} iterations, {s['blocks']} blocking calls, "
          f"{s['duration_ns'] / 1e9:.1f} s")
