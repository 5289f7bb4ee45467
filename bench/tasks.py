"""What the task hooks add to a coroutine switch and to a loop callback.

Runs build/bench/tasks (bench/tasks.c: ABBA blocks of direct vs hooked
operations in one process) bare, with the shim disabled (enabled=0: the cost
of being interposed at all) and with the shim recording, ROUNDS times each
in alternation, and prints the median per configuration.  Output follows
bench/bench.py's protocol for other issues' pieces:
ROW<TAB>measure<TAB>figure<TAB>target.  Run alone: /usr/bin/python3 bench/tasks.py"""
import os
import shutil
import statistics
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "build", "bench", "tasks")
LIB = os.path.join(ROOT, "build", "libasyncshim.so")
QUICK = os.environ.get("BENCH_QUICK") == "1"
ROUNDS = 1 if QUICK else 5
OPS = {"switch": "swapcontext round trip of a task (1 suspension + 1 resumption)",
       "event_cb": "libevent callback (event_assign)",
       "uv_idle_cb": "libuv idle callback (uv_idle_start; one loop iteration each)"}


def once(cfg):
    env = dict(os.environ)
    env.pop("LD_PRELOAD", None)
    env.pop("ASYNCSHIM_OPTIONS", None)
    d = tempfile.mkdtemp(prefix="asyncshim-bench-tasks-")
    try:
        if cfg != "bare":
            env["LD_PRELOAD"] = LIB
            env["ASYNCSHIM_OPTIONS"] = "out=%s/asyncshim" % d + (":enabled=0" if cfg == "off" else "")
        out = subprocess.run([BIN, "2000" if QUICK else "5000"], env=env, capture_output=True, text=True,
                             timeout=300, check=True).stdout
    finally:
        shutil.rmtree(d, ignore_errors=True)
    res = {}
    for line in out.splitlines():
        f = line.split()
        if f and f[0] == "ROW":
            res[f[1]] = (float(f[2]), float(f[4]))     # diff, direct
    return res


def main():
    if not os.path.exists(BIN) or not os.path.exists(LIB):
        print("tasks.py: build first (make bench)", file=sys.stderr)
        return 2
    runs = {c: [] for c in ("bare", "off", "shim")}
    for _ in range(ROUNDS):
        for cfg in runs:
            runs[cfg].append(once(cfg))
    for op, name in OPS.items():
        med = {c: statistics.median(r[op][0] for r in runs[c]) for c in runs}
        base = statistics.median(r[op][1] for r in runs["bare"])
        fig = "%+.0f ns (of %.0f ns); enabled=0 %+.0f ns; method noise (no shim) %+.0f ns" % (
            med["shim"], base, med["off"], med["bare"])
        print("ROW\ttasks: %s\t%s\t" % (name, fig))
    return 0


if __name__ == "__main__":
    sys.exit(main())
