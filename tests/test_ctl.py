"""asyncshim ctl PID enable|disable|clear|dump on running processes: recording
toggled without a restart, a trace written on demand, a process that closed
every fd still reached, and refusals that never harm a process."""
import json
import os
import signal
import subprocess
import time

import msgpack
import pytest

from conftest import TOOL, Server, prog, traces

STEP = 0.6      # seconds a phase lasts (the loop runs at 200 iterations/s)


def ctl(pid, cmd):
    return subprocess.run([TOOL, "ctl", str(pid), cmd], capture_output=True, text=True, timeout=30)


def read_all(path):
    """Records of a trace that is still being written: whole ones only."""
    with open(path, "rb") as f:
        data = f.read()
    up = msgpack.Unpacker(raw=False, strict_map_key=False)
    up.feed(data)
    out = []
    try:
        for r in up:
            out.append(r)
    except msgpack.OutOfData:
        pass
    return out


def wait_for(path, pred, timeout=10):
    deadline = time.time() + timeout
    while time.time() < deadline:
        recs = read_all(path)
        if pred(recs):
            return recs
        time.sleep(0.05)
    raise AssertionError("trace never showed what was expected: %s" % [r["type"] for r in read_all(path)][-20:])


def ctl_cmds(recs):
    return [r["cmd"] for r in recs if r["type"] == "ctl"]


def iteration_starts(recs):
    out = []
    for r in recs:
        if r["type"] == "iters":
            t = r["t0"]
            for i in range(0, len(r["d"]), 2):
                t += r["d"][i]
                out.append(t)
    return out


def start(tmp_path, servers, options="flush_ms=0"):
    s = Server([prog("ctl_loop")], tmp_path, options=options)
    servers.append(s)
    assert s.proc.stdout.readline() == "ready\n"
    (path,) = traces(tmp_path)
    return s, path


def test_dump_disable_enable_clear(tmp_path, servers):
    s, path = start(tmp_path, servers)
    pid = s.proc.pid
    time.sleep(STEP)
    # flush_ms=0: nothing but the start of the trace is written until asked
    assert not [r for r in read_all(path) if r["type"] == "iters"]
    p = ctl(pid, "dump")
    assert p.returncode == 0, p.stderr
    assert "sent dump to process %d" % pid in p.stderr
    recs = wait_for(path, lambda rs: "dump" in ctl_cmds(rs))
    before = iteration_starts(recs)
    assert len(before) >= 0.5 * STEP * 200
    assert [r for r in recs if r["type"] == "block" and r["call"] == "usleep"]
    assert any(r["type"] == "overhead" for r in recs)

    assert ctl(pid, "disable").returncode == 0
    time.sleep(STEP)
    assert ctl(pid, "enable").returncode == 0
    time.sleep(STEP)
    assert ctl(pid, "dump").returncode == 0
    recs = wait_for(path, lambda rs: ctl_cmds(rs) == ["dump", "disable", "enable", "dump"])
    t = {r["cmd"]: r["t"] for r in recs if r["type"] == "ctl" and r["cmd"] in ("disable", "enable")}
    assert t["enable"] - t["disable"] >= 0.8 * STEP * 1e9
    starts = iteration_starts(recs)
    # nothing recorded while disabled, recording again after enable
    assert not [x for x in starts if t["disable"] + 10e6 < x < t["enable"] - 10e6]
    assert len([x for x in starts if x > t["enable"]]) >= 0.5 * STEP * 200
    blocks = [r["t"] for r in recs if r["type"] == "block"]
    assert not [x for x in blocks if t["disable"] + 20e6 < x < t["enable"]]
    assert [x for x in blocks if x > t["enable"]]
    # no iteration spans the disabled time: the open one was dropped
    assert max(r["d"][i + 1] for r in recs if r["type"] == "iters" for i in range(0, len(r["d"]), 2)) < 100e6

    assert ctl(pid, "clear").returncode == 0
    recs = wait_for(path, lambda rs: "clear" in ctl_cmds(rs))
    assert s.stop() == -signal.SIGTERM
    recs = read_all(path)
    assert recs[-1]["type"] == "end"
    # the report reads it and lists the control events
    tr = subprocess.run([TOOL, "report", "--json", path], capture_output=True, text=True, timeout=60)
    assert tr.returncode == 0, tr.stderr
    rep = json.loads(tr.stdout)["traces"][0]
    assert [c["cmd"] for c in rep["ctl"]] == ["dump", "disable", "enable", "dump", "clear"]
    text = subprocess.run([TOOL, "report", path], capture_output=True, text=True, timeout=60).stdout
    assert "recording control (asyncshim ctl): dump at" in text


def test_ctl_refuses_a_process_whose_shim_is_off(tmp_path, servers):
    """enabled=0 starts no collector and takes no signal: ctl refuses rather
    than send a signal whose default action would kill the process."""
    s = Server([prog("ctl_loop")], tmp_path, options="enabled=0")
    servers.append(s)
    assert s.proc.stdout.readline() == "ready\n"
    p = ctl(s.proc.pid, "enable")
    assert p.returncode == 2 and "does not catch its ctl signal" in p.stderr
    time.sleep(0.2)
    assert s.proc.poll() is None            # not killed by a stray signal


def test_ctl_refuses_what_it_cannot_reach(tmp_path, servers):
    bare = subprocess.Popen([prog("ctl_loop")], stdout=subprocess.PIPE, text=True)
    try:
        assert bare.stdout.readline() == "ready\n"
        p = ctl(bare.pid, "dump")
        assert p.returncode == 2 and "does not run under asyncshim" in p.stderr
        assert bare.poll() is None
    finally:
        bare.kill()
        bare.wait()
    for args in (["ctl"], ["ctl", "123"], ["ctl", "x", "dump"], ["ctl", "123", "reboot"], ["ctl", "-5", "dump"]):
        p = subprocess.run([TOOL, *args], capture_output=True, text=True, timeout=30)
        assert p.returncode == 2 and p.stderr.count("\n") == 1 and "usage" in p.stderr, args
    p = ctl(2 ** 22 + 7, "dump")
    assert p.returncode == 2 and "no process" in p.stderr


def test_ctl_signal_option(tmp_path, servers):
    """ctl_signal=N moves the signal; ctl finds it; ctl_signal=0 turns it off."""
    sig = signal.SIGRTMAX - 6
    s, path = start(tmp_path, servers, options="flush_ms=0:ctl_signal=%d" % sig)
    assert ctl(s.proc.pid, "dump").returncode == 0
    wait_for(path, lambda rs: "dump" in ctl_cmds(rs))
    s.stop()
    d = tmp_path / "off"
    d.mkdir()
    s2, _ = start(d, servers, options="ctl_signal=0")
    p = ctl(s2.proc.pid, "dump")
    assert p.returncode == 2 and "ctl_signal=0" in p.stderr
    assert s2.proc.poll() is None


@pytest.mark.parametrize("opts", ["ctl_signal=65", "ctl_signal=x", "flight_signal=12:ctl_signal=12"])
def test_bad_ctl_options_disable_the_shim(tmp_path, opts):
    p = subprocess.run([prog("spans")], cwd=tmp_path, capture_output=True, text=True, timeout=60,
                       env=dict(os.environ, LD_PRELOAD=os.path.join(os.path.dirname(TOOL), "libasyncshim.so"),
                                ASYNCSHIM_OPTIONS=opts))
    assert p.returncode == 0 and p.stdout.count("handled") == 20
    assert p.stderr.count("\n") == 1 and "asyncshim disabled" in p.stderr
    assert not traces(tmp_path)
