"""Data through faults: a full disk, a kill in the middle of a write, output
files of the tools, deaths by any default-fatal signal, flight mode's memory
and threads that could not get a ring (issue 18, points 4 to 8)."""
import json
import os
import signal
import stat
import subprocess
import time

import msgpack
import pytest

from conftest import (TOOL, prog, records, report, run_shim, shim_env, traces)

FLOOD = 2000000  # flight_loop iterations: about 8 MB of trace, far more than the small disks below


@pytest.fixture
def small_fs(tmp_path):
    """mount(size) -> a fresh tmpfs of that size, unmounted at teardown."""
    mounted = []

    def mount(size):
        d = tmp_path / f"fs{len(mounted)}"
        d.mkdir()
        p = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0777", "tmpfs", str(d)],
                           capture_output=True, text=True)
        if p.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here (needs root): {p.stderr.strip()}")
        mounted.append(d)
        return d

    yield mount
    for d in mounted:
        subprocess.run(["umount", "-l", str(d)], capture_output=True)


def fill(d):
    """Fill the filesystem at d to the last byte."""
    fd = os.open(d / "filler", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for chunk in (65536, 4096, 1):
            try:
                while True:
                    os.write(fd, b"x" * chunk)
            except OSError:
                pass
    finally:
        os.close(fd)


def whole_records(path):
    """Every record of the file, read by a stock msgpack reader that must
    consume it to the last byte."""
    data = open(path, "rb").read()
    up = msgpack.Unpacker(raw=False, strict_map_key=False)
    up.feed(data)
    recs = list(up)
    assert up.tell() == len(data), f"{len(data) - up.tell()} bytes of an unfinished record at the end"
    return recs


# ---- 4. a short write does not poison the trace ----

def test_full_disk_leaves_whole_records_and_counts_the_loss(small_fs):
    d = small_fs("512k")
    p = run_shim([prog("flight_loop"), str(FLOOD), "none", "50"], d, options="buffer_kb=8192:flush_ms=100")
    assert "peak_kb" in p.stdout                # the program ran to its end
    (path,) = traces(d)
    recs = whole_records(path)
    assert recs[0]["type"] == "header"
    end = recs[-1]
    assert end["type"] == "end" and end["reason"] == "exit", end
    assert end["lost_bytes"] > 1 << 20 and end["lost_records"] > 0, end
    r = subprocess.run([TOOL, "report", "--json", path], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stderr == "", r.stderr
    tr = json.loads(r.stdout)["traces"][0]
    assert tr["lost_bytes"] == end["lost_bytes"]


def test_full_disk_at_start_leaves_no_empty_trace(small_fs):
    d = small_fs("256k")
    fill(d)
    p = run_shim([prog("errno_check")], d)   # the program is unaffected
    assert "cannot create" in p.stderr
    left = [f for f in os.listdir(d) if f != "filler"]
    assert left == [], "an empty or headerless trace (or a temporary file) was left: %s" % left


def test_trace_appears_with_its_header(tmp_path):
    # the name shows up only once the header is in: watch the directory from
    # a start far earlier than the shim can write anything
    proc = subprocess.Popen([prog("forever_loop")], cwd=tmp_path, env=shim_env(), stdout=subprocess.PIPE)
    try:
        seen = None
        deadline = time.time() + 10
        while seen is None and time.time() < deadline:
            names = [f for f in os.listdir(tmp_path) if f.startswith("asyncshim.")]
            if names:
                seen = os.path.getsize(tmp_path / names[0])
        assert seen and seen > 0
        assert proc.stdout.readline().strip() == b"ready"
    finally:
        proc.kill()
        proc.wait()
    (path,) = traces(tmp_path)
    st = os.stat(path)
    assert st.st_mode & 0o777 == 0o600
    assert records(path)[0]["type"] == "header"


def test_recover_after_a_kill_mid_write_cuts_the_unfinished_record(tmp_path):
    proc = subprocess.Popen([prog("forever_loop")], cwd=tmp_path, env=shim_env(), stdout=subprocess.PIPE)
    assert proc.stdout.readline().strip() == b"ready"
    time.sleep(1.5)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    (path,) = traces(tmp_path)
    size = os.path.getsize(path)
    whole = len(msgpack.packb(records(path)[0]))
    assert size > whole + 8
    # what a kill in the middle of a write leaves: half of the last record
    os.truncate(path, size - 3)
    r = subprocess.run([TOOL, "report", "--json", path], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    (warning,) = r.stderr.strip().splitlines()
    assert "truncated" in warning and path in warning
    assert not json.loads(r.stdout)["traces"][0]["complete"]
    r = subprocess.run([TOOL, "recover", path], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    recs = whole_records(path)
    assert recs[-1]["type"] == "end" and recs[-1]["reason"] == "killed"
    r = subprocess.run([TOOL, "report", "--json", path], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stderr == "", r.stderr
    assert json.loads(r.stdout)["traces"][0]["complete"]


# ---- 5. the tools' output files: written aside, renamed on success ----

@pytest.fixture(scope="module")
def loop_trace(tmp_path_factory):
    d = tmp_path_factory.mktemp("loop")
    run_shim([os.path.join(os.path.dirname(prog("x")), "..", "examples", "loop")], d)
    (path,) = traces(d)
    return path


def corrupt_trace(d, good):
    bad = d / "bad.msgpack"
    bad.write_bytes(msgpack.packb(records(good)[0]) +
                    msgpack.packb({"type": "iters", "tid": 1, "t0": 0, "d": [5]}))
    return str(bad)


def test_export_error_keeps_a_device_node_and_an_existing_file(tmp_path, loop_trace):
    bad = corrupt_trace(tmp_path, loop_trace)
    dev = tmp_path / "null"
    os.mknod(dev, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    old = tmp_path / "old.json"
    old.write_text("keep me")
    for out in (dev, old):
        p = subprocess.run([TOOL, "export", "--format", "chrome", "-o", str(out), bad],
                           capture_output=True, text=True, timeout=60)
        assert p.returncode == 2 and "corrupt" in p.stderr, p.stderr
    assert stat.S_ISCHR(os.lstat(dev).st_mode), "export removed a device node it did not create"
    assert old.read_text() == "keep me"
    assert sorted(os.listdir(tmp_path)) == ["bad.msgpack", "null", "old.json"]   # no temporary left
    # and a good run replaces the file whole, keeping its mode
    os.chmod(old, 0o640)
    p = subprocess.run([TOOL, "export", "--format", "chrome", "-o", str(old), loop_trace],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert json.loads(old.read_text())["traceEvents"] and os.stat(old).st_mode & 0o777 == 0o640
    p = subprocess.run([TOOL, "export", "--format", "folded", "-o", str(dev), loop_trace],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0 and stat.S_ISCHR(os.lstat(dev).st_mode), p.stderr


def test_outputs_on_a_full_disk_fail_and_keep_what_was_there(small_fs, loop_trace):
    d = small_fs("128k")
    old = d / "old.html"
    old.write_text("keep me")
    fill(d)
    runs = [(["report", "--html", str(d / "new.html")], "new.html"),
            (["report", "--html", str(old)], None),
            (["export", "--format", "chrome", "-o", str(d / "new.json")], "new.json"),
            (["check", "--junit", str(d / "j.xml")], "j.xml")]
    for args, name in runs:
        p = subprocess.run([TOOL, *args, loop_trace], capture_output=True, text=True, timeout=60)
        assert p.returncode == 2, (args, p.returncode, p.stderr)
        assert "No space left" in p.stderr or "write" in p.stderr, p.stderr
        assert len(p.stderr.strip().splitlines()) == 1, p.stderr
    assert old.read_text() == "keep me"
    assert sorted(os.listdir(d)) == ["filler", "old.html"]


# ---- 6. deaths by any default-fatal signal ----

def shm_files(pid):
    return [f for f in os.listdir("/dev/shm") if f.startswith(f"asyncshim.{pid}.")]


@pytest.mark.parametrize("sig", [signal.SIGALRM, signal.SIGUSR1, signal.SIGXCPU, signal.SIGRTMIN + 2])
def test_death_by_a_default_fatal_signal_writes_the_end(tmp_path, sig):
    p = subprocess.Popen([prog("forever_loop")], cwd=tmp_path, env=shim_env(), stdout=subprocess.PIPE)
    assert p.stdout.readline().strip() == b"ready"
    time.sleep(0.3)
    os.kill(p.pid, sig)
    assert p.wait(timeout=10) == -sig      # the same death
    recs = whole_records(traces(tmp_path)[0])
    name = "SIGRTMIN+2" if sig == signal.SIGRTMIN + 2 else signal.Signals(sig).name
    assert recs[-1]["type"] == "end" and recs[-1]["reason"] == name, recs[-1]
    assert shm_files(p.pid) == []


def test_sigpipe_of_yes_head_writes_the_end(tmp_path):
    # keep_empty=1: yes runs no loop and records nothing
    yes = subprocess.Popen(["yes"], cwd=tmp_path, env=shim_env("keep_empty=1"), stdout=subprocess.PIPE)
    assert yes.stdout.readline() == b"y\n"
    yes.stdout.close()
    assert yes.wait(timeout=10) == -signal.SIGPIPE
    recs = whole_records(traces(tmp_path)[0])
    assert recs[-1]["type"] == "end" and recs[-1]["reason"] == "SIGPIPE", recs[-1]
    assert shm_files(yes.pid) == []


def test_signals_the_program_waits_for_still_reach_it(tmp_path):
    p = subprocess.Popen([prog("sigwait_loop")], cwd=tmp_path, env=shim_env(), stdout=subprocess.PIPE,
                         text=True)
    assert p.stdout.readline().strip() == "usr1=default alrm=default"
    assert p.stdout.readline().strip() == "ready"
    os.kill(p.pid, signal.SIGUSR1)
    assert p.stdout.readline().strip() == "got %d" % signal.SIGUSR1
    assert p.wait(timeout=10) == 0
    assert records(traces(tmp_path)[0])[-1]["reason"] == "exit"


# ---- 7. flight mode: bounded memory, and the lead-up stays in the window ----

def test_flight_keeps_half_the_window_for_the_lead_up(tmp_path):
    # a second of busy loop after the trigger: several times flight_mb
    p = run_shim([prog("flight_loop"), "1000000", "block", "1500"], tmp_path,
                 options="buffer_kb=8192:mode=flight:flight_mb=1:trigger_ms=100:flight_after_ms=1000",
                 timeout=120)
    (path,) = traces(tmp_path)
    recs = whole_records(path)
    (b,) = [r for r in recs if r["type"] == "block"]
    iters = [r for r in recs if r["type"] == "iters"]
    lead = sum(len(msgpack.packb(r)) for r in iters if r["t0"] < b["t"])
    follow = sum(len(msgpack.packb(r)) for r in iters if r["t0"] >= b["t"])
    assert lead >= 0.3 * (1 << 20), (lead, follow)   # half the window, less what the measure misplaces
    assert follow > 0 and follow <= 0.6 * (1 << 20), (lead, follow)
    (fl,) = [r for r in recs if r["type"] == "flight"]
    assert fl["kept_bytes"] <= 1 << 20 and fl["dropped_bytes"] > 1 << 20
    assert "peak_kb" in p.stdout


# ---- 8. threads that cannot get a ring are counted ----

def test_threads_without_a_ring_are_counted_as_dropped(tmp_path):
    import resource

    def limit_memory():
        # 1 GiB of address space: room for the program's 50 threads, none for a 2 GiB ring
        resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))

    p = run_shim([prog("thread_churn"), "50"], tmp_path, options="buffer_kb=2097152",
                 preexec_fn=limit_memory)
    assert "rss_end_kb" in p.stdout
    (path,) = traces(tmp_path)
    end = records(path)[-1]
    assert end["type"] == "end" and end["ringless_threads"] == 50, end
    assert end["ringless_events"] == 100, end           # two waits each
    tr = report(path)["traces"][0]
    assert tr["ringless_threads"] == 50 and tr["dropped_events"] == 100
    text = subprocess.run([TOOL, "report", path], capture_output=True, text=True, timeout=60).stdout
    assert "threads without a buffer: 50" in text
