"""The core pipeline on real programs: example loop, errno, trace decoding,
options, termination, fork, `asyncshim run`."""
import json
import os
import signal
import subprocess
import time

import pytest

from conftest import (EXAMPLES, LIB, TOOL, loop_threads, one_trace, prog, records, report,
                      run_shim, shim_env, traces)

LOOP = os.path.join(EXAMPLES, "loop")


@pytest.fixture(scope="module")
def loop_run(tmp_path_factory):
    d = tmp_path_factory.mktemp("loop")
    p = run_shim([LOOP], d)
    waits = int(p.stdout.strip().split("=")[1])
    path = one_trace(d)
    return waits, path, report(path)["traces"][0]


def test_example_loop_has_exactly_one_loop_thread(loop_run):
    waits, path, tr = loop_run
    loops = loop_threads(tr)
    assert len(loops) == 1
    assert loops[0]["tid"] == tr["pid"]
    # iterations: from each wait's return to the next wait; the last wait's
    # return starts an iteration the loop never finishes
    assert loops[0]["iterations"] == waits - 1
    assert loops[0]["lag_ms"]["max"] >= 140


def test_example_loop_reports_the_two_blocking_calls(loop_run):
    _, _, tr = loop_run
    blocks = sorted(tr["blocking"], key=lambda b: b["at_ms"])
    assert [b["call"] for b in blocks] == ["usleep", "read"]
    sleep, read = blocks
    assert sleep["duration_ms"] >= 140 and sleep["fd"] is None
    assert read["duration_ms"] >= 100 and read["fd_kind"] == "pipe" and read["fd"] >= 0
    # nothing for the worker (nanosleep 200 ms) or the helper thread
    assert all(b["tid"] == tr["pid"] for b in blocks)


def test_trace_decodes_with_python_msgpack(loop_run):
    waits, path, _ = loop_run
    recs = records(path)
    assert recs[0]["type"] == "header" and recs[0]["format"] == 1
    assert recs[-1]["type"] == "end" and recs[-1]["reason"] == "exit"
    types = {r["type"] for r in recs}
    assert {"header", "thread", "iters", "block", "end"} <= types
    n = sum(len(r["d"]) // 2 for r in recs if r["type"] == "iters")
    assert n == waits - 1


def test_percentiles_within_one_percent(loop_run):
    _, path, tr = loop_run
    durs = sorted(d for r in records(path) if r["type"] == "iters" for d in r["d"][1::2])
    lag = loop_threads(tr)[0]["lag_ms"]
    assert lag["min"] == pytest.approx(durs[0] / 1e6, abs=1e-6)
    assert lag["max"] == pytest.approx(durs[-1] / 1e6, abs=1e-6)
    for key, p in (("p50", 50), ("p95", 95), ("p99", 99)):
        rank = max(1, -(-p * len(durs) // 100))
        exact = durs[rank - 1] / 1e6
        assert lag[key] == pytest.approx(exact, rel=0.01), key


def test_return_values_and_errno_are_the_real_ones(tmp_path):
    bare = subprocess.run([prog("errno_check")], capture_output=True, text=True, timeout=30)
    # block_ms=1 drives every interrupted sleep through the slow path too
    shim = run_shim([prog("errno_check")], tmp_path, options="block_ms=1")
    assert shim.stdout == bare.stdout
    out = shim.stdout
    assert "read(bad fd) r=-1 errno=EBADF" in out
    assert "read(empty nonblocking pipe) r=-1 errno=EAGAIN" in out
    assert "nanosleep(interrupted) r=-1 errno=EINTR" in out
    assert "usleep(interrupted) r=-1 errno=EINTR" in out
    # calls the shim makes as its own syscalls (preload/raw.c)
    assert "read(bad buffer) r=-1 errno=EFAULT" in out
    assert "epoll_wait(interrupted) r=-1 errno=EINTR" in out
    assert "read(restarted) r=1 errno=-" in out
    assert "send(socket, peer gone) r=-1 errno=EPIPE" in out
    tr = report(one_trace(tmp_path))["traces"][0]
    assert {b["call"] for b in tr["blocking"]} == {"nanosleep", "usleep", "clock_nanosleep", "read"}


@pytest.mark.parametrize("options,named", [
    ("bogus=1", "bogus"),
    ("block_ms=abc", "abc"),
    ("block_ms=10:stacks", "stacks"),
    ("buffer_kb=-4", "buffer_kb"),
])
def test_bad_option_disables_the_shim_with_one_line(tmp_path, options, named):
    p = run_shim([LOOP], tmp_path, options=options)
    assert p.returncode == 0 and p.stdout.startswith("waits=")
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1, p.stderr
    assert named in lines[0] and "asyncshim" in lines[0]
    assert traces(tmp_path) == []


def test_enabled_0_records_nothing(tmp_path):
    p = run_shim([LOOP], tmp_path, options="enabled=0")
    assert p.stdout.startswith("waits=") and p.stderr == ""
    assert traces(tmp_path) == []


def test_relative_out_prefix(tmp_path):
    (tmp_path / "sub").mkdir()
    run_shim([prog("errno_check")], tmp_path, options="out=sub/trace")
    assert len(list((tmp_path / "sub").glob("trace.*.msgpack"))) == 1


def test_sigterm_writes_a_complete_trace_and_keeps_the_death(tmp_path):
    p = subprocess.Popen([prog("forever_loop")], cwd=tmp_path, env=shim_env(), stdout=subprocess.PIPE)
    assert p.stdout.readline().strip() == b"ready"
    time.sleep(0.3)
    p.send_signal(signal.SIGTERM)
    assert p.wait(timeout=10) == -signal.SIGTERM
    recs = records(one_trace(tmp_path))
    assert recs[-1]["type"] == "end" and recs[-1]["reason"] == "SIGTERM"
    tr = report(one_trace(tmp_path))["traces"][0]
    assert loop_threads(tr)[0]["iterations"] > 5


def test_program_sees_default_sigint_disposition(tmp_path):
    p = run_shim([prog("forever_loop"), "--show-sigint"], tmp_path)
    assert "sigint=default" in p.stdout


def test_fork_child_writes_its_own_trace(tmp_path):
    p = run_shim([prog("fork_loop")], tmp_path)
    paths = traces(tmp_path)
    assert len(paths) == 2, paths
    rep = report(*paths)["traces"]
    pids = {t["pid"] for t in rep}
    child = int(p.stdout.split("child=")[1].split()[0])
    assert child in pids
    for t in rep:
        assert len(loop_threads(t)) == 1
        # the parent also waits for the child: its waitpid hook times that
        want = ["usleep"] if t["pid"] == child else ["usleep", "waitpid"]
        assert [b["call"] for b in t["blocking"] if b["seen_by"] == "hook"] == want


def test_periodic_flush_survives_sigkill(tmp_path):
    p = subprocess.Popen([prog("forever_loop")], cwd=tmp_path, env=shim_env("flush_ms=100"),
                         stdout=subprocess.PIPE)
    assert p.stdout.readline().strip() == b"ready"
    time.sleep(0.6)
    p.kill()
    p.wait()
    tr = report(one_trace(tmp_path))["traces"][0]
    assert tr["complete"] is False
    assert loop_threads(tr)[0]["iterations"] >= 3


def test_asyncshim_run(tmp_path):
    p = subprocess.run([TOOL, "run", "--block-ms", "100", "-o", str(tmp_path / "r"), "--", LOOP],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0 and p.stdout.startswith("waits=")
    written = list(tmp_path.glob("r.*.msgpack"))
    assert len(written) == 1 and str(written[0]) in p.stderr
    tr = report(str(written[0]))["traces"][0]
    assert tr["block_ms"] == 100 and [b["call"] for b in tr["blocking"]] == ["usleep", "read"]


def test_asyncshim_run_returns_the_exit_status(tmp_path):
    p = subprocess.run([TOOL, "run", "-o", str(tmp_path / "r"), "--", "sh", "-c", "exit 7"],
                       capture_output=True, text=True, timeout=30)
    assert p.returncode == 7


def test_report_text(loop_run):
    _, path, _ = loop_run
    p = subprocess.run([TOOL, "report", path], capture_output=True, text=True, timeout=30)
    assert p.returncode == 0
    assert "loop threads: 1" in p.stdout
    assert "usleep" in p.stdout and "pipe" in p.stdout


def test_dump_is_one_json_object_per_record(loop_run):
    _, path, _ = loop_run
    p = subprocess.run([TOOL, "dump", path], capture_output=True, text=True, timeout=30)
    lines = p.stdout.splitlines()
    assert len(lines) == len(records(path))
    assert [json.loads(line)["type"] for line in lines] == [r["type"] for r in records(path)]
