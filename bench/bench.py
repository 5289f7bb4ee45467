"""make bench: what asyncshim costs, measured side by side with the bare program.

Every figure is a median over alternating runs of the bare and the shimmed
program made in this one invocation (ratios and differences are taken per
round, then the median over rounds).  Prints one table and writes it, with
the raw per-round figures, to bench/results.md.  Method: docs/performance.md.

    /usr/bin/python3 bench/bench.py [--quick] [--only NAME,...]

--quick runs every part once with fewer rounds (a smoke test of the suite,
not figures to quote).  NAME: probe calls scaling collector redis memory
instructions report others."""
import glob
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

import msgpack

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.path.join(ROOT, "build")
LIB = os.path.join(BUILD, "libasyncshim.so")
TOOL = os.path.join(BUILD, "asyncshim")
BB = os.path.join(BUILD, "bench")
STUB = os.path.join(BB, "libstub.so")
QUICK = "--quick" in sys.argv
ONLY = None
if "--only" in sys.argv:
    ONLY = set(sys.argv[sys.argv.index("--only") + 1].split(","))

ROUNDS = 2 if QUICK else 5
rows = []          # (section, measure, figure text, target text, verdict)
raw = []           # lines for the raw section of results.md


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def med(v):
    return statistics.median(v) if v else float("nan")


def row(section, measure, figure, target="", ok=None):
    verdict = "" if ok is None else ("met" if ok else "MISSED")
    rows.append((section, measure, figure, target, verdict))


def env_for(cfg, workdir, extra=None):
    """cfg: bare | shim | off (enabled=0); stub variants preload libstub."""
    env = dict(os.environ)
    env.pop("ASYNCSHIM_OPTIONS", None)
    env.pop("LD_PRELOAD", None)
    pre = []
    if cfg in ("shim", "off"):
        pre.append(LIB)
        opts = "out=%s/asyncshim" % workdir
        if cfg == "off":
            opts += ":enabled=0"
        env["ASYNCSHIM_OPTIONS"] = opts
    if extra and extra.get("stub"):
        pre.append(STUB)
        env["BENCH_STUB"] = "1"
    if extra and extra.get("options") and cfg == "shim":
        env["ASYNCSHIM_OPTIONS"] += ":" + extra["options"]
    if pre:
        env["LD_PRELOAD"] = ":".join(pre)
    return env


def run(cmd, env, timeout=120, cwd=None):
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout, cwd=cwd)
    if p.returncode != 0:
        raise RuntimeError("%s exited %d: %s" % (" ".join(cmd), p.returncode, p.stderr[-2000:]))
    return p.stdout


def read_trace(path):
    """events (iterations + blocking calls + other records), dropped, bytes"""
    iters = other = 0
    dropped = {}
    with open(path, "rb") as f:
        for rec in msgpack.Unpacker(f, raw=False, strict_map_key=False):
            t = rec.get("type")
            if t == "iters":
                iters += len(rec["d"]) // 2
            elif t == "thread":
                dropped[rec["tid"]] = rec.get("dropped", 0)
            elif t not in ("header", "end"):
                other += 1
    return {"events": iters + other, "iterations": iters, "dropped": sum(dropped.values()),
            "dropped_by_tid": dropped, "bytes": os.path.getsize(path)}


def traces_in(d):
    return sorted(glob.glob(os.path.join(d, "asyncshim.*.msgpack")))


def fresh_dir():
    return tempfile.mkdtemp(prefix="asyncshim-bench-")


# ---------------------------------------------------------------- calls

CALL_ROWS = ["read:plain", "write:plain", "read:loop", "write:loop", "epoll:loop", "readb:loop", "mutex:plain",
             "mutex:loop"]
# The shim times only calls on fds that can block (preload/fds.c): a
# non-blocking pipe's read is passed straight on, /dev/null (opened
# blocking) and a blocking pipe are timed, and the timed path makes the
# syscall itself (preload/raw.c).  With the stub ("hook alone") preloaded
# after the shim the hooks call the stub instead: that figure is the libc
# path's.
CALL_NAMES = {"read": "read() on an empty non-blocking pipe (EAGAIN; not timed, the fd cannot block)",
              "readb": "read() of 0 bytes from a blocking pipe (timed)",
              "write": "write() of 1 byte to /dev/null (timed: opened blocking)",
              "epoll": "epoll_wait(), timeout 0",
              "mutex": "pthread_mutex_lock() of a free mutex, and unlock (tried first; never timed)"}


def parse_rows(out):
    res = {}
    for line in out.splitlines():
        f = line.split()
        if f and f[0] == "ROW":
            res["%s:%s" % (f[1], f[2])] = {"diff": float(f[4]), "hooked": float(f[5]),
                                           "direct": float(f[6]), "tids": [int(x) for x in f[8].split(",")]}
    return res


def calls_rounds(stub, seconds, threads=1, call_rows=CALL_ROWS, cfgs=("bare", "shim", "off"), rounds=ROUNDS):
    """{cfg: {row: [diff per round]}} plus dropped counts of shim runs."""
    out = {c: {r: [] for r in call_rows} for c in cfgs}
    hooked = {c: {r: [] for r in call_rows} for c in cfgs}
    dropped = {r: [] for r in call_rows}
    for rnd in range(rounds):
        for cfg in cfgs:
            d = fresh_dir()
            try:
                res = parse_rows(run([os.path.join(BB, "calls"), str(seconds), str(threads), *call_rows],
                                     env_for(cfg, d, {"stub": stub}), timeout=600))
                for r in call_rows:
                    out[cfg][r].append(res[r]["diff"])
                    hooked[cfg][r].append(res[r]["hooked"])
                if cfg == "shim":
                    tr = traces_in(d)
                    if tr:
                        info = read_trace(tr[0])
                        for r in call_rows:
                            dropped[r].append(sum(info["dropped_by_tid"].get(t, 0) for t in res[r]["tids"]))
            finally:
                shutil.rmtree(d, ignore_errors=True)
        raw.append("calls%s threads=%d round %d: %s" % (" (stub)" if stub else "", threads, rnd, json.dumps(
            {c: {r: round(out[c][r][-1], 2) for r in call_rows} for c in cfgs})))
    return out, hooked, dropped


def added(out, cfg, r):
    """median over rounds of (shimmed diff - bare diff), both from the same round"""
    return med([s - b for s, b in zip(out[cfg][r], out["bare"][r])])


def spread(out, cfg, r):
    v = sorted(s - b for s, b in zip(out[cfg][r], out["bare"][r]))
    return "%+.0f..%+.0f" % (v[0], v[-1]) if v else ""


def bench_calls():
    log("calls: per-call overhead, real syscalls (%d rounds of bare, shim, enabled=0)" % ROUNDS)
    out, hooked, dropped = calls_rounds(False, 0.3 if QUICK else 0.5)
    log("calls: per-call overhead, syscall stubbed")
    sout, shooked, sdropped = calls_rounds(True, 0.15 if QUICK else 0.25)
    targets = {"loop": (25, "<= 25 ns (stretch <= 10)"), "plain": (5, "<= 5 ns"), "off": (3, "<= 3 ns")}
    for op in ("read", "readb", "write", "epoll", "mutex"):
        name = CALL_NAMES[op]
        for mode, cfg, label in (("loop", "shim", "loop thread"), ("plain", "shim", "non-loop thread"),
                                 ("plain", "off", "enabled=0")):
            r = "%s:%s" % (op, mode)
            if op == "readb" and mode != "loop":
                continue               # the same path as read's off the loop
            if op == "epoll" and mode == "plain":
                if cfg == "shim":
                    row("per call", "%s, %s" % (name, label),
                        "n/a: a thread that calls epoll_wait is a loop thread", "")
                    continue
                r = "epoll:loop"       # enabled=0: nothing is a loop
            lim, tgt = targets["off" if cfg == "off" else mode]
            if op == "mutex" and cfg == "shim":
                lim, tgt = 5, "<= 5 ns"    # a free lock must cost nothing on a loop thread either
            a, s = added(out, cfg, r), added(sout, cfg, r)
            base = med(hooked["bare"][r])
            fig = "%+.1f ns (rounds %s; of %.0f ns per call); hook alone %+.1f ns" % (
                a, spread(out, cfg, r), base, s)
            drops = dropped[r] if cfg == "shim" and mode == "loop" else []
            if drops and max(drops) > 0:
                fig += "; dropped %d" % med(drops)
            if op == "epoll" and cfg == "shim":
                fig += " (the wait pair: ends one iteration, starts the next)"
            row("per call", "%s, %s" % (name, label), fig, tgt, max(a, s) <= lim)


def bench_scaling():
    log("scaling: per-call overhead with 1, 2, 8, 64 loop threads")
    counts = [1, 2, 8] if QUICK else [1, 2, 8, 64]
    for n in counts:
        rounds = 2 if QUICK else 3
        out, hooked, _ = calls_rounds(False, 0.3 if QUICK else 0.5, n, ["read:loop"], ("bare", "shim"), rounds)
        sout, _, _ = calls_rounds(True, 0.2 if QUICK else 0.25, n, ["read:loop"], ("bare", "shim"), rounds)
        row("scaling", "read() on a loop thread, %d threads at once" % n,
            "%+.1f ns per call (rounds %s); hook alone %+.1f ns" % (
                added(out, "shim", "read:loop"), spread(out, "shim", "read:loop"),
                added(sout, "shim", "read:loop")),
            "<= 25 ns", max(added(out, "shim", "read:loop"), added(sout, "shim", "read:loop")) <= 25)


def bench_probe():
    """what a syscall does to the code after it, on this machine"""
    log("probe: page walks and mispredicted returns after a syscall")
    out = run([os.path.join(BB, "probe")], dict(os.environ), timeout=300)
    raw.append("probe: " + " / ".join(out.splitlines()))
    for line in out.splitlines():
        f = line.split()
        if f[0] == "PAGES":
            n, distinct, same = int(f[1]), float(f[2]), float(f[3])
            row("machine", "read() then %d loads from %d other pages, against %d lines of one page" % (n, n, n),
                "%+.1f ns per call (%+.1f ns per page)" % (distinct - same, (distinct - same) / n), "")
        elif f[0] == "WRAP":
            row("machine", "read() through a wrapper that returns, against one that tail-jumps",
                "%+.1f ns per call (tail jump itself %+.1f ns)" % (float(f[2]) - float(f[1]), float(f[1])), "")
            if len(f) > 3:
                row("machine", "read() through a wrapper that makes the syscall itself and returns, against libc's read",
                    "%+.1f ns per call" % float(f[3]), "")


# ---------------------------------------------------------------- collector

def collector_run(threads, seconds, stub, options=None):
    d = fresh_dir()
    try:
        out = run([os.path.join(BB, "collector"), str(threads), str(seconds)],
                  env_for("shim", d, {"stub": stub, "options": options}), timeout=300)
        f = dict(zip(out.split()[0::2], map(float, out.split()[1::2])))
        info = read_trace(traces_in(d)[0])
        return {**f, **info}
    finally:
        shutil.rmtree(d, ignore_errors=True)


def bench_collector():
    log("collector: drain rate and bytes per event, 1, 2, 8, 64 producers (median of 3 runs)")
    counts = [1, 2, 8] if QUICK else [1, 2, 8, 64]
    secs = 0.5 if QUICK else 1.0
    best = None
    for stub in (True, False):
        for n in counts:
            runs = []
            for _ in range(1 if QUICK else 3):      # the run with the median rate
                r = collector_run(n, secs, stub)
                rate = r["events"] / (r["COLLECTOR_NS"] / 1e9) if r["COLLECTOR_NS"] > 0 else float("inf")
                runs.append((rate, len(runs), r))
            rate, _, r = sorted(runs)[len(runs) // 2]
            offered = r["CALLS"] / (r["WALL_NS"] / 1e9)
            raw.append("collector stub=%s threads=%d: %s" % (stub, n, json.dumps(
                {k: v for k, v in r.items() if k != "dropped_by_tid"})))
            label = "%d producer%s, %s" % (n, "s" if n > 1 else "",
                                          "waits stubbed (max rate)" if stub else "real epoll_wait")
            wall = r["WALL_NS"] / 1e9
            bpe = r["bytes"] / max(1, r["events"])
            lost = "dropped %d (%.1f%%)" % (r["dropped"], 100.0 * r["dropped"] / max(1, r["dropped"] + r["events"]))
            if stub:
                fig = ("%.1f M events/s per collector CPU s; offered %.2f M/s, drained %.2f M/s, %s, "
                       "%.2f bytes/event" % (rate / 1e6, offered / 1e6, r["events"] / wall / 1e6, lost, bpe))
                row("collector", label, fig, ">= 20 M events/s on one core; <= 16 bytes/event",
                    rate >= 20e6 and bpe <= 16)
            else:
                fig = ("collector %.1f ms CPU per s for %.2f M events/s (%.1f M events per CPU s, "
                       "including its fixed cost per 20 ms drain); %s; %.2f bytes/event" % (
                           r["COLLECTOR_NS"] / 1e6 / wall, r["events"] / wall / 1e6, rate / 1e6, lost, bpe))
                row("collector", label, fig, "<= 16 bytes/event; 0 dropped",
                    bpe <= 16 and r["dropped"] == 0)
            if stub and n == 1:
                best = r
    return best


# ---------------------------------------------------------------- redis

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, proc, timeout=10):
    end = time.time() + timeout
    while time.time() < end:
        if proc.poll() is not None:
            raise RuntimeError("redis-server exited early")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("redis-server never listened")


def redis_run(cfg, requests, options=None):
    d = fresh_dir()
    port = free_port()
    cmd = ["/usr/bin/redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
           "--appendonly", "no", "--dir", d]
    env = env_for("shim" if cfg == "shim" else "bare", d, {"options": options})
    if cfg == "strace":
        cmd = ["/usr/bin/strace", "-f", "-o", "/dev/null"] + cmd
    pin = shutil.which("taskset") and os.cpu_count() >= 2
    if pin:     # server and client each on their own CPU, in every configuration
        cmd = ["taskset", "-c", "0"] + cmd
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=d)
    try:
        wait_port(port, proc, 20)
        cpu0 = tree_cpu(proc.pid)
        wd0, t0 = watchdog_stats(proc.pid), time.time()
        out = subprocess.run((["taskset", "-c", "1"] if pin else []) +
                             ["/usr/bin/redis-benchmark", "-h", "127.0.0.1", "-p", str(port), "-c", "50",
                              "-n", str(requests), "-t", "get,set", "--csv", "-q"],
                             capture_output=True, text=True, timeout=300).stdout
        cpu = tree_cpu(proc.pid) - cpu0
        wd1 = watchdog_stats(proc.pid)
        if wd0 and wd1:
            wd_runs.append((wd1[0] - wd0[0], wd1[1] - wd0[1], time.time() - t0))
        rps = {}
        for line in out.splitlines():
            m = re.match(r'"(SET|GET)","([0-9.]+)"', line)
            if m:
                rps[m.group(1)] = float(m.group(2))
        if len(rps) != 2:
            raise RuntimeError("redis-benchmark printed no rates: %s" % out[-500:])
    finally:
        stop(proc)
    info = None
    if cfg == "shim":
        tr = traces_in(d)
        info = read_trace(tr[0]) if tr else None
    shutil.rmtree(d, ignore_errors=True)
    return rps, info, cpu


def tree_cpu(pid):
    """CPU seconds the process and its descendants (strace's tracee) have
    used so far, from the scheduler's per-thread ns counters: read around
    the benchmark alone, so start-up and exit are not counted"""
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        for task in glob.glob("/proc/%d/task/*" % p):
            try:
                with open(task + "/schedstat") as f:
                    total += int(f.read().split()[0])
                with open(task + "/children") as f:
                    todo += [int(c) for c in f.read().split()]
            except (OSError, ValueError):
                pass
    return total / 1e9


wd_runs = []       # (CPU ns, wake-ups, seconds) of the stall watchdog per shimmed redis run


def watchdog_stats(pid):
    """(CPU ns, wake-ups so far) of the shim's stall watchdog thread, or None:
    each voluntary context switch is one sleep it woke from"""
    for task in glob.glob("/proc/%d/task/*" % pid):
        try:
            with open(task + "/comm") as f:
                if f.read().strip() != "asyncshim-wd":
                    continue
            with open(task + "/schedstat") as f:
                ns = int(f.read().split()[0])
            with open(task + "/status") as f:
                st = dict(line.split(":", 1) for line in f)
            return ns, int(st["voluntary_ctxt_switches"])
        except (OSError, ValueError, KeyError):
            pass
    return None


def descendants(pid):
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        for task in glob.glob("/proc/%d/task/*" % p):
            try:
                with open(task + "/children") as f:
                    kids = [int(c) for c in f.read().split()]
            except (OSError, ValueError):
                kids = []
            out += kids
            todo += kids
    return out


def signal_pids(pids, sig):
    for p in pids:
        try:
            os.kill(p, sig)
        except ProcessLookupError:
            pass


def stop(proc):
    """SIGTERM the server, then SIGKILL after 15 s; by PID.  Under strace
    the server is strace's child: strace would only detach from it on
    SIGTERM and leave it running, so the server gets the signal and strace
    exits with it."""
    if proc.poll() is not None:
        return
    kids = descendants(proc.pid)
    signal_pids(kids or [proc.pid], signal.SIGTERM)
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        signal_pids(kids + [proc.pid], signal.SIGKILL)
        proc.wait()
    # anything left of the tree (a detached tracee) goes too
    signal_pids([k for k in kids if os.path.exists("/proc/%d" % k)], signal.SIGKILL)


def bench_redis():
    n = 20000 if QUICK else 200000     # the figure: 200k requests each
    rounds = 2 if QUICK else 5
    log("redis: redis-benchmark GET/SET, 50 clients, %d requests each, %d rounds of bare/shim" % (n, rounds))
    ratios = {"SET": [], "GET": []}
    bare_rps = {"SET": [], "GET": []}
    cpu_ratio, cpu_ratio0 = [], []
    drops, evs, byts = [], [], []
    for rnd in range(rounds):
        b, _, bcpu = redis_run("bare", n)
        s, info, scpu = redis_run("shim", n)
        _, _, s0cpu = redis_run("shim", n, "stacks=0")
        for k in ratios:
            ratios[k].append(s[k] / b[k])
            bare_rps[k].append(b[k])
        cpu_ratio.append(bcpu / scpu)      # requests per server CPU second, shim / bare
        cpu_ratio0.append(bcpu / s0cpu)
        if info:
            drops.append(info["dropped"])
            evs.append(info["events"])
            byts.append(info["bytes"])
        raw.append("redis round %d: bare %s %.3f cpu s, shim %s %.3f cpu s, shim stacks=0 %.3f cpu s, "
                   "events %s dropped %s" % (rnd, b, bcpu, s, scpu, s0cpu, info and info["events"],
                                             info and info["dropped"]))
    log("redis: under strace -f (one round, fewer requests: it is ~30x slower)")
    ns = max(2000, n // 10)
    b, _, bcpu = redis_run("bare", ns)
    st, _, stcpu = redis_run("strace", ns)
    raw.append("redis strace: bare %s %.3f cpu s, strace %s %.3f cpu s (strace + server)" % (b, bcpu, st, stcpu))
    for k in ("SET", "GET"):
        r = med(ratios[k])
        row("redis", "redis-server %s, 50 clients: requests/s, shim / bare" % k,
            "%.3fx (rounds %.2f..%.2f; bare %.0f req/s)" % (r, min(ratios[k]), max(ratios[k]), med(bare_rps[k])),
            ">= 0.98x", r >= 0.98)
    r = med(cpu_ratio)
    row("redis", "redis-server GET+SET: requests per server CPU second, shim / bare",
        "%.3fx (rounds %.2f..%.2f)" % (r, min(cpu_ratio), max(cpu_ratio)), ">= 0.98x", r >= 0.98)
    r0 = med(cpu_ratio0)
    row("redis", "... the same with stacks=0 (no stall watchdog, no stacks)",
        "%.3fx (rounds %.2f..%.2f)" % (r0, min(cpu_ratio0), max(cpu_ratio0)), ">= 0.98x", r0 >= 0.98)
    if wd_runs:
        row("redis", "stall watchdog during a shimmed run: CPU, wake-ups",
            "%.1f ms, %d wake-ups (%.0f per s) per run" % (med([w[0] for w in wd_runs]) / 1e6,
                                                           med([w[1] for w in wd_runs]),
                                                           med([w[1] / w[2] for w in wd_runs])), "")
    for k in ("SET", "GET"):
        row("redis", "redis-server %s: requests/s, strace -f / bare" % k, "%.3fx" % (st[k] / b[k]),
            "(issue: ~0.035x)")
    row("redis", "redis-server GET+SET: requests per CPU second, strace -f (tracer + server) / bare",
        "%.3fx" % (bcpu / stcpu), "")
    total_drop = sum(drops)
    row("redis", "dropped events at that load (default buffer_kb)",
        "%d of %d events over %d runs" % (total_drop, sum(evs) + total_drop, len(drops)), "0",
        total_drop == 0)
    if evs and sum(evs):
        row("redis", "bytes per event on disk (redis trace)", "%.2f" % (sum(byts) / sum(evs)), "<= 16",
            sum(byts) / sum(evs) <= 16)


# ---------------------------------------------------------------- memory

def rss_run(cfg, threads, seconds, options=None):
    d = fresh_dir()
    try:
        out = run([os.path.join(BB, "memory"), str(threads), str(seconds)],
                  env_for(cfg, d, {"options": options}), timeout=300)
        f = out.split()
        return int(f[1]) * 1024, int(f[3]) * 1024     # resident, anonymous + shared memory
    finally:
        shutil.rmtree(d, ignore_errors=True)


def bench_memory():
    log("memory: resident bytes, bare vs shim, 1 and 9 loop threads, short and long run")
    # every run long enough that the collector's output buffer has reached
    # its bound (written after each drain, and at 16 KiB within one), so the
    # 1 -> 9 thread slope is what each thread adds and not that buffer filling up
    rounds = 2
    short_s, long_s = (0.6, 1.5) if QUICK else (1.0, 4.0)
    added = {"1": [], "9": [], "long": [], "1s0": [], "9s0": [], "1ns": [], "9ns": []}
    addedp = {k: [] for k in added}
    for rnd in range(rounds):
        for key, (n, secs, opts) in (("1", (1, short_s, None)), ("9", (9, short_s, None)),
                                     ("long", (1, long_s, None)), ("1s0", (1, short_s, "stacks=0")),
                                     ("9s0", (9, short_s, "stacks=0")),
                                     ("1ns", (1, short_s, "stall_ms=3600000")),
                                     ("9ns", (9, short_s, "stall_ms=3600000"))):
            b, bp = rss_run("bare", n, secs)
            s, sp = rss_run("shim", n, secs, opts)
            added[key].append(s - b)
            addedp[key].append(sp - bp)
        raw.append("memory round %d: added bytes resident %s, anonymous + shared %s" % (
            rnd, {k: v[-1] for k, v in added.items()}, {k: v[-1] for k, v in addedp.items()}))

    def slope(d, one, nine):
        return med([(a9 - a1) / 8 for a1, a9 in zip(d[one], d[nine])])

    # The target is judged on anonymous + shared memory: what the process
    # allocated.  The resident figure beside it also counts page-cache pages
    # of libc and the shim's libraries, which differ by tens of KiB between
    # any two runs with the code paths they took (divided by 8 in a slope).
    limit = 1024 * 1024 + 4096
    for label, one, nine in (
            ("memory added per loop thread (default buffer_kb=1024, ring written through)", "1", "9"),
            ("... the same for threads never stall-sampled (stall_ms=3600000; nine spinning threads "
             "on two cores stall by preemption, and each sample's signal frame and unwinding touch its "
             "thread's stack deeper)", "1ns", "9ns"),
            ("... the same with stacks=0 (no stacks, no stall watchdog)", "1s0", "9s0")):
        p, r = slope(addedp, one, nine), slope(added, one, nine)
        row("memory", label, "anonymous + shared %.0f (%.1f KiB); all resident %.1f KiB" % (p, p / 1024, r / 1024),
            "<= buffer + 4 KiB = %d" % limit, p <= limit)
    row("memory", "resident bytes added in total, 1 loop thread, %.0f s run" % short_s,
        "%.0f (%.1f MiB)" % (med(added["1"]), med(added["1"]) / 2**20), "bounded")
    grow = med(added["long"]) - med(added["1"])
    row("memory", "... the same after a %.0f s run (growth with run length)" % long_s,
        "%.0f (%+.0f KiB)" % (med(added["long"]), grow / 1024), "no growth",
        grow <= 256 * 1024)


# ---------------------------------------------------------------- instructions

def callgrind_costs(path):
    """{(object, function): [self Ir, calls into it]} from a callgrind.out file"""
    names = {"ob": {}, "fn": {}}
    cost = {}
    ob = fn = cob = cfn = None
    pending_calls = None
    with open(path) as f:
        for line in f:
            line = line.rstrip("\n")
            m = re.match(r"^(c?)(ob|fn|fl|fi|fe)=(?:\((\d+)\))?\s*(.*)$", line)
            if m:
                called, kind, num, name = m.groups()
                if kind in ("fl", "fi", "fe"):
                    continue
                table = names[kind]
                if num is not None and name:
                    table[num] = name
                val = table.get(num, name) if num is not None else name
                if called:
                    if kind == "ob":
                        cob = val
                    else:
                        cfn = val
                else:
                    if kind == "ob":
                        ob = val
                        cob = ob
                    else:
                        fn = val
                        cob = ob
                continue
            m = re.match(r"^calls=(\d+)", line)
            if m:
                pending_calls = int(m.group(1))
                key = (cob or ob, cfn)
                cost.setdefault(key, [0, 0])[1] += pending_calls
                continue
            m = re.match(r"^[+\-*0-9]\S*\s+(\d+)", line)
            if m and fn is not None:
                if pending_calls is not None:
                    pending_calls = None      # inclusive cost of the call: not self
                    cob = ob
                    continue
                cost.setdefault((ob, fn), [0, 0])[0] += int(m.group(1))
    return cost


def bench_instructions():
    if not shutil.which("valgrind"):
        row("instructions", "callgrind", "valgrind not installed", "")
        return
    log("instructions: callgrind instruction counts per hooked call")
    # The timed rows make real syscalls: the hook makes them itself
    # (preload/raw.c), and a stub preloaded after the shim would turn that off.
    cases = [("read() on a loop thread, non-blocking pipe (not timed)", "shim", "read:loop", "read", True),
             ("read() on a loop thread, blocking pipe (timed)", "shim", "readb:loop", "read", False),
             ("read() on a non-loop thread", "shim", "read:plain", "read", True),
             ("read() with enabled=0", "off", "read:plain", "read", True),
             ("epoll_wait() on a loop thread (the wait pair)", "shim", "epoll:loop", "epoll_wait", False)]
    for label, cfg, callrow, fn, stub in cases:
        d = fresh_dir()
        try:
            env = env_for(cfg, d, {"stub": stub})
            env["BENCH_BLOCK_US"] = "2000"
            out = os.path.join(d, "cg.out")
            subprocess.run(["valgrind", "--tool=callgrind", "--callgrind-out-file=" + out,
                            os.path.join(BB, "calls"), "0.05", "1", callrow],
                           env=env, capture_output=True, text=True, timeout=600)
            cost = callgrind_costs(out)
            mine = [(k, v) for k, v in cost.items() if k[1] == fn and k[0] and "libasyncshim" in k[0]]
            if not mine or not mine[0][1][1]:
                row("instructions", label, "not measured (callgrind found no calls)", "")
                continue
            ir, calls = mine[0][1]
            clock = "?"
            tr = traces_in(d)
            if tr:
                with open(tr[0], "rb") as f:
                    hdr = next(iter(msgpack.Unpacker(f, raw=False, strict_map_key=False)))
                    clock = hdr.get("clock", "?")
            note = "" if cfg == "off" or clock == "tsc" else " (clock under valgrind: %s)" % clock
            row("instructions", "%s: instructions in the hook" % label, "%.1f per call%s" % (ir / calls, note), "")
        finally:
            shutil.rmtree(d, ignore_errors=True)
    perf = shutil.which("perf")
    if perf:
        p = subprocess.run([perf, "stat", "-x,", "-e", "instructions:u", "true"], capture_output=True, text=True)
        if "not supported" in p.stderr or p.returncode != 0:
            row("instructions", "perf stat -e instructions", "not available: this VM exposes no hardware counters",
                "")
        else:
            row("instructions", "perf stat -e instructions", "available (see docs/performance.md)", "")


# ---------------------------------------------------------------- report

def max_rss_report(path):
    p = subprocess.run(["/usr/bin/time", "-v", TOOL, "report", path], capture_output=True, text=True,
                       timeout=1200)
    if p.returncode != 0:
        raise RuntimeError("report failed: %s" % p.stderr[-500:])
    kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", p.stderr).group(1))
    wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): ([0-9:.]+)", p.stderr).group(1)
    parts = [float(x) for x in wall.split(":")]
    secs = parts[-1] + 60 * (parts[-2] if len(parts) > 1 else 0) + 3600 * (parts[-3] if len(parts) > 2 else 0)
    return kb * 1024, secs


def bench_report():
    log("report: max RSS of asyncshim report on growing traces (tests/gen_trace.py, grown by bench/bigtrace)")
    sys.path.insert(0, os.path.join(ROOT, "tests"))
    import gen_trace
    d = fresh_dir()
    try:
        sizes = [16, 64] if QUICK else [64, 256, 1024]
        for label, blocks in (("1% blocking calls, 0.2% stalls", 10000), ("no blocking calls, 0.2% stalls", 0)):
            base = os.path.join(d, "base.msgpack")
            gen_trace.generate(base, events=500000 if QUICK else 1000000, blocks=blocks)
            res = []
            for mb in sizes:
                big = os.path.join(d, "big.msgpack")
                run([os.path.join(BB, "bigtrace"), base, big, str(mb)], dict(os.environ), timeout=600)
                rss, secs = max_rss_report(big)
                res.append((mb, os.path.getsize(big), rss, secs))
                os.unlink(big)
            raw.append("report %s: %s" % (label, res))
            figs = ", ".join("%d MiB: %.1f MiB RSS (%.0f MB/s)" % (mb, rss / 2**20, size / secs / 1e6)
                             for mb, size, rss, secs in res)
            growth = res[-1][2] - res[0][2]
            row("report", "asyncshim report, %s" % label, figs, "constant memory",
                growth <= 8 * 2**20)
    finally:
        shutil.rmtree(d, ignore_errors=True)


# ---------------------------------------------------------------- others' pieces

def bench_others():
    """bench/<name>.sh|.py pieces added for other issues (stacks, watchdog,
    tasks...): each prints lines 'ROW<TAB>measure<TAB>figure<TAB>target[<TAB>met|MISSED]'."""
    mine = {"bench.py", "run.sh"}
    for path in sorted(glob.glob(os.path.join(ROOT, "bench", "*.sh")) + glob.glob(os.path.join(ROOT, "bench", "*.py"))):
        name = os.path.basename(path)
        if name in mine:
            continue
        log("others: %s" % name)
        cmd = ["/usr/bin/python3", path] if name.endswith(".py") else ["/bin/sh", path]
        try:
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=ROOT,
                               env={**os.environ, "BENCH_QUICK": "1" if QUICK else "0"})
        except subprocess.TimeoutExpired:
            row("other issues", name, "timed out", "")
            continue
        found = False
        for line in p.stdout.splitlines():
            f = line.split("\t")
            if f[0] == "ROW" and len(f) >= 4:
                ok = None if len(f) < 5 or f[4] not in ("met", "MISSED") else f[4] == "met"
                row("other issues", f[1], f[2], f[3], ok)
                found = True
        if not found:
            row("other issues", name, "printed no ROW lines (exit %d)" % p.returncode, "")


# ---------------------------------------------------------------- output

def machine():
    cpu = ""
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    load = os.getloadavg()
    return "%s, %d cores, Linux %s, load average at start %.2f" % (cpu, os.cpu_count(), platform.release(), load[0])


def table():
    out = ["| section | measure | figure | target | |", "|---|---|---|---|---|"]
    for r in rows:
        out.append("| %s |" % " | ".join(x.replace("|", "/") for x in r))
    return "\n".join(out)


def main():
    if not os.path.exists(LIB) or not os.path.exists(os.path.join(BB, "calls")):
        print("bench: build first (make bench)", file=sys.stderr)
        return 2
    started = time.time()
    mach = machine()
    parts = [("probe", bench_probe), ("calls", bench_calls), ("scaling", bench_scaling), ("collector", bench_collector),
             ("redis", bench_redis), ("memory", bench_memory), ("instructions", bench_instructions),
             ("report", bench_report), ("others", bench_others)]
    for name, fn in parts:
        if ONLY and name not in ONLY:
            continue
        t0 = time.time()
        try:
            fn()
            raw.append("part %s took %.0f s" % (name, time.time() - t0))
        except Exception as e:      # one broken part must not hide the others
            row(name, "error", str(e).splitlines()[0][:200], "")
            log("%s: %s" % (name, e))
    t = table()
    print(t)
    head = "# asyncshim benchmark results\n\nMachine: %s.  Took %.0f s%s.  Method: docs/performance.md.\n\n" % (
        mach, time.time() - started, " (--quick: smoke run, not figures to quote)" if QUICK else "")
    with open(os.path.join(ROOT, "bench", "results.md"), "w") as f:
        f.write(head + t + "\n\n## Raw figures per round\n\n```\n" + "\n".join(raw) + "\n```\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
