"""Flight-recorder mode: only the last flight_mb MiB of events stay in memory,
and a trace is written only when something asks for one — a late blocking
call or stall >= trigger_ms (with the events just before it), SIGUSR2, or
exit with flight_exit=1."""
import signal
import subprocess
import time

from conftest import TOOL, Server, prog, records, report, run_shim, traces

BUSY = 4000000  # iterations before the finding: about 16 MB of events, far more than 2 MiB


def peak_kb(out):
    (line,) = [ln for ln in out.splitlines() if ln.startswith("peak_kb ")]
    return int(line.split()[1])


def iteration_spans(recs):
    """(start, end) of every iteration in the trace, in order."""
    out = []
    for r in recs:
        if r["type"] == "iters":
            t = r["t0"]
            for i in range(0, len(r["d"]), 2):
                t += r["d"][i]
                out.append((t, t + r["d"][i + 1]))
    return out


def test_late_blocking_call_writes_one_trace_in_bounded_memory(tmp_path):
    # big rings (8 MiB), the same in both runs, so they cancel out of the
    # memory comparison
    base = tmp_path / "normal"
    base.mkdir()
    normal = run_shim([prog("flight_loop"), str(BUSY), "block"], base, options="buffer_kb=8192", timeout=120)
    p = run_shim([prog("flight_loop"), str(BUSY), "block"], tmp_path,
                 options="buffer_kb=8192:mode=flight:flight_mb=2:trigger_ms=100", timeout=120)
    (path,) = traces(tmp_path)                  # one trace, written by the trigger, none at exit
    recs = records(path)
    assert recs[0]["options"]["mode"] == "flight"
    (fl,) = [r for r in recs if r["type"] == "flight"]
    assert fl["trigger"] == "block"
    # the window: at most flight_mb of events, the older ones dropped
    assert fl["kept_bytes"] <= 2 << 20
    assert fl["dropped_bytes"] > 2 << 20
    (b,) = [r for r in recs if r["type"] == "block"]
    assert b["call"] == "usleep" and b["dur"] >= 200e6 and fl["t"] == b["t"]
    its = iteration_spans(recs)
    # the events just before the call: iterations up to its very start ...
    before = [e for s, e in its if e <= b["t"]]
    # (a busy machine may take the core between the last iteration and the
    # call: up to a few scheduler slices)
    assert before and b["t"] - max(before) < 100e6
    # ... but not from the start of the run: those did not fit in 2 MiB
    assert len(its) < BUSY / 2
    # and the window after it (flight_after_ms, 100 ms by default)
    assert [s for s, e in its if s >= b["t"] + b["dur"]]
    # flight mode's memory beyond normal mode's (which writes as it goes,
    # after every 20 ms drain) stays within flight_mb and a little (one
    # drain's packing, the unpacker that splits it, allocator slack: ~2.5 MiB
    # measured), although the run made several times flight_mb of events
    # A busy machine may starve the collector for a while, so the ring can
    # drop some records (counted); most of the run still reached the window
    (thread,) = [r for r in recs if r["type"] == "thread"]
    assert thread["dropped"] < BUSY / 4
    grew_kb = peak_kb(p.stdout) - peak_kb(normal.stdout)
    print("flight mode peak RSS beyond normal mode: %d kB" % grew_kb)
    assert grew_kb < (2 + 3) * 1024, grew_kb
    assert fl["kept_bytes"] + fl["dropped_bytes"] > 4 * (2 << 20), fl   # several times flight_mb
    # a normal trace for the tools
    tr = report(path)["traces"][0]
    assert tr["flight"]["trigger"] == "block" and tr["complete"]
    assert [x["call"] for x in tr["blocking"]] == ["usleep"]
    text = subprocess.run([TOOL, "report", path], capture_output=True, text=True, timeout=60).stdout
    assert "flight recorder: written on a blocking call at" in text


def test_stall_triggers_a_trace(tmp_path):
    run_shim([prog("flight_loop"), "200000", "stall"], tmp_path, options="mode=flight:flight_mb=4", timeout=60)
    (path,) = traces(tmp_path)
    recs = records(path)
    (fl,) = [r for r in recs if r["type"] == "flight"]
    assert fl["trigger"] == "stall"
    stalls = [r for r in recs if r["type"] == "stall"]
    assert stalls and max(s["dur"] for s in stalls) >= 150e6


def test_nothing_written_without_a_trigger(tmp_path):
    run_shim([prog("flight_loop"), "200000", "none"], tmp_path, options="mode=flight:flight_mb=4", timeout=60)
    assert traces(tmp_path) == []
    # trigger_ms=0: even a long blocking call writes nothing
    run_shim([prog("flight_loop"), "200000", "block"], tmp_path, options="mode=flight:trigger_ms=0", timeout=60)
    assert traces(tmp_path) == []


def test_flight_exit_writes_the_last_window(tmp_path):
    run_shim([prog("flight_loop"), "200000", "none"], tmp_path, options="mode=flight:flight_mb=1:flight_exit=1",
             timeout=60)
    (path,) = traces(tmp_path)
    recs = records(path)
    (fl,) = [r for r in recs if r["type"] == "flight"]
    assert fl["trigger"] == "exit" and fl["kept_bytes"] <= 1 << 20
    assert recs[-1] == {"type": "end", "reason": "exit", "duration_ns": recs[-1]["duration_ns"],
                        "threads_seen": 1}
    assert iteration_spans(recs)


def test_signal_writes_a_trace_each_time(tmp_path, servers):
    s = Server([prog("ctl_loop")], tmp_path, options="mode=flight:flight_mb=1")
    servers.append(s)
    assert s.proc.stdout.readline() == "ready\n"
    assert traces(tmp_path) == []
    for n in (1, 2):
        time.sleep(0.4)
        s.proc.send_signal(signal.SIGUSR2)
        deadline = time.time() + 10
        while len(traces(tmp_path)) < n and time.time() < deadline:
            time.sleep(0.05)
        assert len(traces(tmp_path)) == n
    assert s.proc.poll() is None                # SIGUSR2 did not kill it
    s.stop()
    paths = traces(tmp_path)
    assert len(paths) == 2                      # nothing more at exit
    for path in paths:
        deadline = time.time() + 5
        recs = records(path)
        while recs[-1]["type"] != "end" and time.time() < deadline:
            time.sleep(0.05)
            recs = records(path)
        (fl,) = [r for r in recs if r["type"] == "flight"]
        assert fl["trigger"] == "signal"
        its = iteration_spans(recs)
        assert len(its) >= 20                   # 5 ms timer: the ~0.4 s before the signal
    # an event goes into one trace only: the second starts after the first ends
    paths.sort(key=lambda p: [r["t"] for r in records(p) if r["type"] == "flight"][0])
    first, second = (iteration_spans(records(p)) for p in paths)
    assert second[0][0] >= first[-1][0]


def test_ctl_dump_and_clear_in_flight_mode(tmp_path, servers):
    s = Server([prog("ctl_loop")], tmp_path, options="mode=flight:flight_mb=1")
    servers.append(s)
    assert s.proc.stdout.readline() == "ready\n"
    time.sleep(0.5)
    assert subprocess.run([TOOL, "ctl", str(s.proc.pid), "clear"], capture_output=True, timeout=30).returncode == 0
    time.sleep(0.3)
    assert subprocess.run([TOOL, "ctl", str(s.proc.pid), "dump"], capture_output=True, timeout=30).returncode == 0
    deadline = time.time() + 10
    while not traces(tmp_path) and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)
    (path,) = traces(tmp_path)
    recs = records(path)
    (fl,) = [r for r in recs if r["type"] == "flight"]
    (clear,) = [r for r in recs if r["type"] == "ctl"]
    assert fl["trigger"] == "ctl" and clear["cmd"] == "clear"
    # what was recorded before the clear is gone
    its = iteration_spans(recs)
    assert its and its[0][0] >= clear["t"] - 20e6
    s.stop()
