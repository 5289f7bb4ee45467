"""What spans cost, and what a hook costs while recording is off (issue 9).

Runs build/bench/spans (bench/spans.c: ABBA blocks in one process, thread CPU
clock) with the shim and build/bench/libstub.so preloaded — recording on,
then switched off at run time with asyncshim ctl's disable command, then on
again — with the shim loaded but enabled=0, and bare (no shim: the span API
is the header's no-op).  ROUNDS runs each, median.  Output follows
bench/bench.py's protocol: ROW<TAB>measure<TAB>figure<TAB>target[<TAB>met|MISSED].
Run alone: /usr/bin/python3 bench/spans.py"""
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "build", "bench", "spans")
LIB = os.path.join(ROOT, "build", "libasyncshim.so")
STUB = os.path.join(ROOT, "build", "bench", "libstub.so")
TOOL = os.path.join(ROOT, "build", "asyncshim")
QUICK = os.environ.get("BENCH_QUICK") == "1"
ROUNDS = 1 if QUICK else 5


def once(cfg):
    env = dict(os.environ)
    env.pop("ASYNCSHIM_OPTIONS", None)
    env.pop("LD_PRELOAD", None)
    d = tempfile.mkdtemp(prefix="asyncshim-bench-spans-")
    try:
        if cfg != "bare":
            env["LD_PRELOAD"] = "%s:%s" % (LIB, STUB)
            env["ASYNCSHIM_OPTIONS"] = "out=%s/asyncshim:buffer_kb=8192" % d + (":enabled=0" if cfg == "off" else "")
        else:
            env["LD_PRELOAD"] = STUB
        args = [BIN, "40" if QUICK else "100"] + (["ctl"] if cfg == "shim" else [])
        out = subprocess.run(args, env=env, capture_output=True, text=True,
                             timeout=600, check=True).stdout
        dropped = 0
        for t in (os.path.join(d, f) for f in os.listdir(d)):
            rep = subprocess.run([TOOL, "report", "--json", t], capture_output=True, text=True, timeout=120)
            dropped += sum(x["dropped_events"] for x in json.loads(rep.stdout)["traces"])
    finally:
        shutil.rmtree(d, ignore_errors=True)
    res = {}
    for line in out.splitlines():
        f = line.split()
        if f and f[0] == "ROW":
            res[(f[1], f[2])] = (float(f[3]), float(f[4]))
    return res, dropped


def main():
    if not all(os.path.exists(p) for p in (BIN, LIB, STUB)):
        print("spans.py: build first (make bench)", file=sys.stderr)
        return 2
    runs = {c: [] for c in ("bare", "off", "shim")}
    dropped = 0
    for _ in range(ROUNDS):
        for cfg in runs:
            res, d = once(cfg)
            runs[cfg].append(res)
            dropped += d

    def med(cfg, phase, op):
        return statistics.median(r[(phase, op)][0] for r in runs[cfg])

    on, dis, again = (med("shim", p, "hook") for p in ("on", "disabled", "enabled-again"))
    print("ROW\tspans: stub write() on a loop thread, recording on / after `ctl disable` / enabled=0\t"
          "%+.1f ns / %+.1f ns / %+.1f ns (on again after `ctl enable`: %+.1f ns); method noise (no shim) %+.1f ns\t"
          "disabled: a few ns\t%s" % (on, dis, med("off", "on", "hook"), again, med("bare", "on", "hook"),
                                      "met" if dis <= 5 else "MISSED"))
    for op, name in (("span", "asyncshim_span_begin + _end pair"),
                     ("cumul", "cumulative span begin + end pair (hot loops)")):
        print("ROW\tspans: %s\t%.1f ns recording; %.1f ns after `ctl disable`; %.1f ns with enabled=0; "
              "%.1f ns without the shim (the header's no-op)\t\t" % (
                  name, med("shim", "on", op), med("shim", "disabled", op), med("off", "on", op),
                  med("bare", "on", op)))
    if dropped:
        print("ROW\tspans: records dropped during the span rows\t%d (figures too low)\t0\tMISSED" % dropped)
    return 0


if __name__ == "__main__":
    sys.exit(main())
