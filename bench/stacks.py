"""What stacks and stall sampling cost (issue 4), measured with build/bench/stacks
(bench/stacks.c).  Every figure alternates the configurations in one
invocation (ABAB), ROUNDS times, and takes medians; method and figures in
docs/performance.md, "Stacks and stalls".

- stack capture: the shim's own capture code (preload/stack.c built alone
  into build/bench/libcapture.so) timed in a tight loop, best of 7 batches,
  at two stack depths, as for a blocking call and from a signal handler
  (minus the same signal with an empty handler);
- stall sampling: the time the sampled thread spends in the handler (the
  shim writes it into the trace: stall.sampling_ns / stall.sampled), and the
  watchdog thread's CPU time per sample;
- a healthy loop (iterations back to back, about 1 us of work each): ns per
  iteration with the watchdog (stacks=1) and without (stacks=0);
- a loop on a 1 ms timer: the watchdog's CPU time per second; on timers of
  1 to 200 ms: how often the watchdog wakes;
- the race: EINTR seen by a stalled loop that waits 10 us between bursts of
  work, against the samples taken: nanosleep (the shim resumes it) and ppoll
  (it does not).

Prints bench/bench.py's protocol for other issues' pieces:
ROW<TAB>measure<TAB>figure<TAB>target.  Run alone: /usr/bin/python3 bench/stacks.py"""
import glob
import os
import shutil
import statistics
import subprocess
import sys
import tempfile

import msgpack

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "build", "bench", "stacks")
LIB = os.path.join(ROOT, "build", "libasyncshim.so")
CAPTURE_LIB = os.path.join(ROOT, "build", "bench", "libcapture.so")
QUICK = os.environ.get("BENCH_QUICK") == "1"
ROUNDS = 2 if QUICK else 7


def once(args, options):
    d = tempfile.mkdtemp(prefix="asyncshim-bench-stacks-")
    env = dict(os.environ, LD_PRELOAD=LIB, ASYNCSHIM_OPTIONS="out=%s/asyncshim:%s" % (d, options))
    try:
        out = subprocess.run([BIN, *args], env=env, capture_output=True, text=True, timeout=300,
                             check=True).stdout
        vals = {}
        for line in out.splitlines():
            k, v = line.split()
            vals[k] = float(v)
        stalls = []
        for path in glob.glob(os.path.join(d, "asyncshim.*.msgpack")):
            with open(path, "rb") as f:
                stalls += [r for r in msgpack.Unpacker(f, raw=False) if r.get("type") == "stall"]
        return vals, stalls
    finally:
        shutil.rmtree(d, ignore_errors=True)


def med(v):
    return statistics.median(v) if v else float("nan")


def row(measure, figure, target=""):
    print("ROW\t%s\t%s\t%s" % (measure, figure, target))
    print("%-70s %s" % (measure, figure), file=sys.stderr)


def capture():
    n = "2000" if QUICK else "20000"
    env = dict(os.environ, CAPTURE_LIB=CAPTURE_LIB)
    env.pop("LD_PRELOAD", None)
    for depth in (2, 30):
        here, sig, frames = [], [], 0
        for _ in range(ROUNDS):
            out = subprocess.run([BIN, "unwind", str(depth), n], env=env, capture_output=True, text=True,
                                 timeout=300, check=True).stdout
            vals = dict((k, float(v)) for k, v in (line.split() for line in out.splitlines()))
            here.append(vals["unwind_ns"])
            sig.append(vals["signal_unwind_ns"])
            frames = int(vals["frames"])
        row("stack capture of a blocking call, %d frames (-O2, no frame pointers)" % frames,
            "%.2f us" % (med(here) / 1000), "paid only by calls >= block_ms")
        row("stack capture in the sample handler, %d frames" % frames, "%.2f us" % (med(sig) / 1000), "")


def sampling():
    per, wd = [], []
    for _ in range(ROUNDS):
        vals, stalls = once(["stall", "300" if QUICK else "1000"], "stall_ms=10")
        long = max(stalls, key=lambda s: s["dur"])
        per.append(long["sampling_ns"] / max(1, long["sampled"]))
        wd.append(vals["watchdog_cpu_ns"] / max(1, long["sampled"]))
    row("stall sample: time in the handler on the stalled thread", "%.1f us" % (med(per) / 1000),
        "one sample per stall_ms of stall")
    row("stall sample: watchdog CPU per sample (/proc check + signal)", "%.1f us" % (med(wd) / 1000), "")


def healthy():
    n = "100000" if QUICK else "400000"
    ratio, on_v, off_v = [], [], []
    for _ in range(ROUNDS):
        off = once(["healthy", n], "stacks=0")[0]["ns_per_iteration"]
        on = once(["healthy", n], "stacks=1")[0]["ns_per_iteration"]
        off_v.append(off)
        on_v.append(on)
        ratio.append(on / off)
    row("healthy loop, ns per iteration: watchdog on / off",
        "%.0f / %.0f ns (ratio %.3f)" % (med(on_v), med(off_v), med(ratio)), "same within noise")


def ticks():
    secs = "1" if QUICK else "3"
    wd, cpu_on, cpu_off = [], [], []
    for _ in range(ROUNDS):
        off = once(["ticks", secs], "stacks=0")[0]
        on = once(["ticks", secs], "stacks=1")[0]
        wd.append(on["watchdog_cpu_ns"] / float(secs) / 1e6)
        cpu_off.append(off["process_cpu_ns"] / float(secs) / 1e6)
        cpu_on.append(on["process_cpu_ns"] / float(secs) / 1e6)
    row("1 ms timer loop: watchdog CPU per second", "%.2f ms/s" % med(wd), "")
    row("1 ms timer loop: process CPU per second, watchdog on / off",
        "%.1f / %.1f ms/s" % (med(cpu_on), med(cpu_off)), "")


def wakeups():
    """how often the watchdog wakes for a loop with pauses: it looks every
    stall_ms while loops iterate and parks once two looks found them quiet"""
    periods = (1, 5, 20, 50, 200)
    per = {p: [] for p in periods}
    for _ in range(max(1, ROUNDS // 2)):
        for p in periods:
            vals = once(["ticks", "1" if QUICK else "3", str(p * 1000)], "stacks=1")[0]
            per[p].append(vals["watchdog_wakeups"] / (1 if QUICK else 3))
    row("timer loop of %s ms: watchdog wake-ups per second" % " / ".join(str(p) for p in periods),
        " / ".join("%.0f" % med(per[p]) for p in periods), "")


def race():
    n = {"sleeps": 0, "eintr": 0, "polls": 0, "poll_eintr": 0}
    samples = 0
    for _ in range(max(1, ROUNDS // 2)):
        vals, stalls = once(["race", "1" if QUICK else "3"], "stall_ms=1")
        for k in n:
            n[k] += vals[k]
        samples += sum(s["sampled"] for s in stalls)
    row("race: EINTR on 10 us nanosleeps inside a stall (stall_ms=1; resumed)",
        "%d of %d, %d samples taken" % (n["eintr"], n["sleeps"], samples), "0")
    row("race: EINTR on 10 us ppolls inside a stall (stall_ms=1; not resumed)",
        "%d of %d" % (n["poll_eintr"], n["polls"]), "documented, rare")


def main():
    if not all(os.path.exists(p) for p in (BIN, LIB, CAPTURE_LIB)):
        print("stacks.py: build first (make bench)", file=sys.stderr)
        return 2
    print("machine load average %.2f" % os.getloadavg()[0], file=sys.stderr)
    capture()
    sampling()
    healthy()
    ticks()
    wakeups()
    race()
    return 0


if __name__ == "__main__":
    sys.exit(main())
