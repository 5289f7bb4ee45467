"""Issue 19: waits no hook sees (the off-CPU watchdog), and why a stall stalled.

The programs check their own results (full counts, no EINTR): the watchdog
must find the waits without interrupting them."""
import os
import subprocess
import sys
import time

import pytest

from conftest import TOOL, one_trace, prog, records, report, run_shim, shim_env, traces

WAIT_MS = 300

# mode -> (syscall the kernel names, fd kind)
MODES = {
    "nanosleep": ("nanosleep", None),
    "epoll": ("epoll_wait", "other"),
    "read": ("read", "pipe"),
    "write": ("write", "pipe"),
    "futex": ("futex", None),
    "stdio": ("write", "pipe"),      # glibc's internal __write under fwrite
}


def run_waits(tmp_path, mode, iters=2, ms=WAIT_MS, options=None, **kw):
    p = run_shim([prog("offcpu_waits"), mode, str(iters), str(ms)], tmp_path, options=options, **kw)
    assert "OK" in p.stdout, p.stdout + p.stderr   # no EINTR, no short count
    truth = [float(line.split()[1]) for line in p.stdout.splitlines() if line.startswith("wait_ms")]
    assert len(truth) == iters
    return truth, report(one_trace(tmp_path))["traces"][0]


def functions(entry):
    return [f["function"] for f in entry["stack"]]


def close_enough(measured, truth, stall_ms):
    return abs(measured - truth) <= max(2 * stall_ms, 0.1 * truth)


def assert_no_unexplained_stalls(tr):
    for s in tr["stalls"]:
        assert s["cause"] in ("cpu", "preempted", "off_cpu"), s


@pytest.mark.parametrize("mode", sorted(MODES))
def test_waits_no_hook_sees_are_blocking_calls_seen_by_the_watchdog(tmp_path, mode):
    call, kind = MODES[mode]
    truth, tr = run_waits(tmp_path, mode)
    found = [b for b in tr["blocking"] if b["seen_by"] == "watchdog"]
    assert len(found) == 2, tr["blocking"]
    for b, real in zip(sorted(found, key=lambda b: b["at_ms"]), truth):
        assert b["call"] == call
        assert b["fd_kind"] == kind
        assert (b["fd"] is None) == (kind is None)
        assert close_enough(b["duration_ms"], real, 10), (b["duration_ms"], real)
        assert f"wait_in_{mode}" in functions(b), functions(b)
    # the wait explains the iteration: no stall of 0 samples "busy without a blocking call"
    assert not [s for s in tr["stalls"] if s["duration_ms"] > 100], tr["stalls"]
    assert_no_unexplained_stalls(tr)


def test_watchdog_never_interrupts_waits_at_a_short_stall_ms(tmp_path):
    """Looks every 2 ms over 5 waits of each kind: every call still completes whole."""
    for mode in MODES:
        d = tmp_path / mode
        d.mkdir()
        truth, tr = run_waits(d, mode, iters=5, ms=100, options="stall_ms=2:block_ms=10")
        found = [b for b in tr["blocking"] if b["seen_by"] == "watchdog"]
        assert len(found) == 5, (mode, tr["blocking"])
        for b, real in zip(sorted(found, key=lambda b: b["at_ms"]), truth):
            assert close_enough(b["duration_ms"], real, 2), (mode, b["duration_ms"], real)


def test_a_wait_a_hook_times_is_reported_once_by_the_hook(tmp_path):
    truth, tr = run_waits(tmp_path, "usleep")
    assert [b["seen_by"] for b in tr["blocking"]] == ["hook", "hook"], tr["blocking"]
    assert all(b["call"] == "usleep" for b in tr["blocking"])


def test_cpu_stall_says_it_ran(tmp_path):
    truth, tr = run_waits(tmp_path, "spin")
    stalls = tr["stalls"]
    assert len(stalls) == 2, stalls
    for s in stalls:
        # a busy machine may take the core away for a while: running or preempted, never off CPU
        assert s["cause"] in ("cpu", "preempted"), s
        assert s["cpu_ms"] is not None and s["cpu_ms"] + s["runqueue_ms"] > 0.5 * s["duration_ms"], s
        assert s["samples"] > 0


def test_stall_of_short_waits_is_off_cpu_not_zero_samples_without_cause(tmp_path):
    truth, tr = run_waits(tmp_path, "naps", options="block_ms=50")
    stalls = tr["stalls"]
    assert len(stalls) == 2, stalls
    for s in stalls:
        assert s["cause"] == "off_cpu", s
        assert s["cpu_ms"] < 0.5 * s["duration_ms"], s
    text = subprocess.run([TOOL, "report", one_trace(tmp_path)], capture_output=True, text=True).stdout
    assert "waiting off CPU" in text


def test_preempted_spin_is_preempted_and_blames_no_frame(tmp_path):
    """The program and a CPU hog on one core, the program at low priority."""
    hog = subprocess.Popen(["taskset", "-c", "0", "sh", "-c", "while :; do :; done"])
    try:
        time.sleep(0.2)
        p = subprocess.run(["taskset", "-c", "0", "nice", "-n", "15", prog("offcpu_waits"), "spin", "2", "300"],
                           cwd=tmp_path, env=shim_env(), capture_output=True, text=True, timeout=60)
    finally:
        hog.kill()
        hog.wait()
    assert p.returncode == 0, p.stderr
    path = [t for t in traces(tmp_path) if "offcpu_waits" in report(t)["traces"][0]["exe"]]
    assert len(path) == 1
    tr = report(path[0])["traces"][0]
    assert len(tr["stalls"]) == 2, tr["stalls"]
    for s in tr["stalls"]:
        assert s["cause"] == "preempted", s
        assert s["runqueue_ms"] > 2 * s["cpu_ms"], s
        assert s["stack"] == [], s          # where it happened to be is not the cause
    assert not tr["stall_sites"], tr["stall_sites"]
    text = subprocess.run([TOOL, "report", path[0]], capture_output=True, text=True).stdout
    assert "preempted" in text


def test_check_fails_on_a_wait_the_watchdog_found(tmp_path):
    run_waits(tmp_path, "nanosleep")
    p = subprocess.run([TOOL, "check", "--max-block-ms", "100", one_trace(tmp_path)], capture_output=True,
                       text=True)
    assert p.returncode == 1, p.stdout + p.stderr
    assert "nanosleep" in p.stdout and "found waiting in the kernel" in p.stdout
    assert "wait_in_nanosleep" in p.stdout


PY_SUBPROCESS = """
import asyncio, subprocess
def cb(loop):
    subprocess.run(["sleep", "0.3"], check=True)
    loop.call_later(0.05, loop.stop)
loop = asyncio.new_event_loop()
loop.call_soon(cb, loop)
loop.run_forever()
loop.close()
import os
print("OK", os.getpid())
"""


def test_python_subprocess_in_an_asyncio_callback(tmp_path):
    p = run_shim(["/usr/bin/python3", "-c", PY_SUBPROCESS], tmp_path)
    assert "OK" in p.stdout
    tr = [r for r in (report(t)["traces"][0] for t in traces(tmp_path)) if r["pid"] == int(p.stdout.split()[-1])]
    assert len(tr) == 1
    tr = tr[0]
    waits = [b for b in tr["blocking"] if b["call"] in ("wait4", "waitpid")]
    assert len(waits) == 1, tr["blocking"]
    assert close_enough(waits[0]["duration_ms"], 300, 10), waits[0]
    assert waits[0]["stack"], waits[0]
    assert not [s for s in tr["stalls"] if s["duration_ms"] > 100], tr["stalls"]
    assert_no_unexplained_stalls(tr)


def test_trace_keys(tmp_path):
    run_waits(tmp_path, "read", iters=1)
    recs = records(one_trace(tmp_path))
    blocks = [r for r in recs if r.get("type") == "block"]
    assert blocks and all(r["seen_by"] == "watchdog" for r in blocks)


# ---- nested loops ----

def test_a_second_epoll_set_inside_a_handler_is_a_nested_blocking_call(tmp_path):
    p = run_shim([prog("nested_loop"), "2", "3", "100"], tmp_path)
    assert "OK" in p.stdout
    tr = report(one_trace(tmp_path))["traces"][0]
    loop = [t for t in tr["threads"] if t["loop"]]
    assert len(loop) == 1
    # the outer loop's iterations only: 3 outer waits end 2 iterations
    assert loop[0]["iterations"] == 2, loop
    nested = [b for b in tr["blocking"] if b["nested"]]
    assert len(nested) == 6, tr["blocking"]
    for b in nested:
        assert b["call"] == "epoll_wait" and b["seen_by"] == "hook"
        assert b["fd_kind"] == "other"
        assert close_enough(b["duration_ms"], 100, 10), b
        assert "inner_loop" in functions(b)
    assert not [b for b in tr["blocking"] if not b["nested"]], tr["blocking"]
    # each outer iteration is explained by its nested waits: no stall
    assert not tr["stalls"], tr["stalls"]


# ---- memcached -vv with stderr to a slow pipe (the first case) ----

@pytest.mark.skipif(not os.path.exists("/usr/bin/memcached"), reason="memcached not installed")
def test_memcached_verbose_to_a_slow_pipe(tmp_path):
    import signal
    import socket
    import threading
    from conftest import free_port
    port = free_port()
    p = subprocess.Popen(["/usr/bin/memcached", "-vv", "-u", "root", "-p", str(port), "-U", "0", "-t", "1",
                          "-l", "127.0.0.1"], cwd=tmp_path, env=shim_env(), stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE)
    try:
        for _ in range(200):
            try:
                s = socket.create_connection(("127.0.0.1", port))
                break
            except OSError:
                time.sleep(0.05)
        started = []

        def slow_reader():          # reads nothing for 0.5 s, then everything
            time.sleep(0.5)
            started.append(time.monotonic())
            while p.stderr.read1(65536):
                pass
        threading.Thread(target=slow_reader, daemon=True).start()
        t0 = time.monotonic()
        s.sendall(b"get somekey\r\n" * 4000)     # -vv logs each: more than the pipe holds
        got = b""
        while got.count(b"END\r\n") < 4000:
            got += s.recv(65536)
        s.close()
    finally:
        p.send_signal(signal.SIGTERM)
        p.wait(timeout=20)
    tr = report(one_trace(tmp_path))["traces"][0]
    writes = [b for b in tr["blocking"] if b["seen_by"] == "watchdog" and b["call"] == "write"]
    assert writes, tr["blocking"]
    longest = max(writes, key=lambda b: b["duration_ms"])
    assert longest["fd"] == 2 and longest["fd_kind"] == "pipe"
    truth = (started[0] - t0) * 1000
    assert close_enough(sum(b["duration_ms"] for b in writes), truth, 10), (writes, truth)
    assert "__fprintf_chk" in functions(longest) or "fprintf" in functions(longest), functions(longest)
    assert any("memcached" in f["module"] for f in longest["stack"])
    assert not [s for s in tr["stalls"] if s["duration_ms"] > 100], tr["stalls"]
