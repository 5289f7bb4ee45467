"""What a newcomer ran into (issue 20, points 3, 8 and 2b): trace floods from
wrapper chains, small untruths in the report, and a Go-style exit_group."""
import os
import re
import shutil
import subprocess

import msgpack
import pytest

from conftest import (EXAMPLES, TOOL, Server, free_port, loop_threads, one_trace, prog, records, report,
                      run_shim, traces)

LOOP = os.path.join(EXAMPLES, "loop")


def run_tool(*args, timeout=60):
    return subprocess.run([TOOL, "run", *args], capture_output=True, text=True, timeout=timeout)


def shm_files(pid):
    return [f for f in os.listdir("/dev/shm") if f.startswith(f"asyncshim.{pid}.")]


# ---- point 3: trace floods ----

def test_wrapper_chain_under_run_leaves_one_trace_and_the_table_lists_it(tmp_path):
    """sh, env, true, a second sh and readlink never loop nor record: only
    the loop the chain ends in leaves a trace, and run's table lists it."""
    script = f'env true; /bin/sh -c "readlink /proc/self/exe"; exec {LOOP}'
    p = run_tool("-o", str(tmp_path / "r"), "--", "sh", "-c", script)
    assert p.returncode == 0, p.stderr
    assert p.stdout.splitlines()[-1] == "waits=30"
    written = sorted(tmp_path.glob("r.*.msgpack"))
    assert len(written) == 1, written
    tr = report(str(written[0]))["traces"][0]
    (loop,) = loop_threads(tr)
    assert loop["iterations"] >= 29
    assert "asyncshim: 1 trace written" in p.stderr
    (row,) = [line for line in p.stderr.splitlines() if line.endswith(str(written[0]))]
    assert row.split()[:5] == ["loop", "1", str(loop["iterations"]), str(len(tr["blocking"])),
                               str(len(tr["stalls"]))]
    assert "more of processes without" not in p.stderr


def test_run_table_counts_the_rest_in_one_line(tmp_path):
    opts = f"keep_empty=1:out={tmp_path / 'r'}"
    p = run_tool("-o", str(tmp_path / "r"), "--", "env", f"ASYNCSHIM_OPTIONS={opts}", "sh", "-c",
                 f"env true; exec {LOOP}")
    assert p.returncode == 0, p.stderr
    n = len(list(tmp_path.glob("r.*.msgpack")))
    assert n >= 3
    assert f"asyncshim: {n} traces written" in p.stderr
    assert f"and {n - 1} more of processes without a loop thread or findings" in p.stderr
    assert len([line for line in p.stderr.splitlines() if ".msgpack" in line]) == 1


def test_a_process_that_recorded_nothing_leaves_no_trace_unless_keep_empty(tmp_path):
    run_shim(["true"], tmp_path)
    assert traces(tmp_path) == []
    run_shim(["true"], tmp_path, options="keep_empty=1")
    recs = records(one_trace(tmp_path))
    assert recs[0]["type"] == "header" and recs[-1]["type"] == "end"


def test_fork_child_is_no_loop_until_it_waits_in_one(tmp_path):
    """The child of a fork made inside an iteration inherits nothing of the
    loop: its usleep is no blocking call, it has no loop thread, and (having
    recorded nothing) it leaves no trace."""
    p = run_shim([prog("fork_in_loop")], tmp_path)
    child = int(p.stdout.split("child=")[1].split()[0])
    (only,) = report(*traces(tmp_path))["traces"]
    assert only["pid"] != child
    assert loop_threads(only)[0]["iterations"] >= 5
    os.unlink(traces(tmp_path)[0])
    p = run_shim([prog("fork_in_loop")], tmp_path, options="keep_empty=1")
    child = int(p.stdout.split("child=")[1].split()[0])
    kid = [t for t in report(*traces(tmp_path))["traces"] if t["pid"] == child][0]
    assert loop_threads(kid) == [] and kid["blocking"] == []


# ---- point 2b: exit_group ----

def test_exit_group_from_a_thread_under_run_leaves_a_complete_trace(tmp_path):
    p = run_tool("-o", str(tmp_path / "r"), "--", prog("exit_group"))
    assert p.returncode == 3, p.stderr
    (path,) = tmp_path.glob("r.*.msgpack")
    pid = int(path.name.split(".")[1])
    end = records(str(path))[-1]
    assert end["type"] == "end" and end["reason"] == "exit_group" and end["exit_status"] == 3
    tr = report(str(path))["traces"][0]
    assert tr["complete"] and tr["end_reason"] == "exit_group" and tr["exit_status"] == 3
    assert loop_threads(tr)[0]["iterations"] >= 5
    assert [b["call"] for b in tr["blocking"]] == ["usleep"]
    assert shm_files(pid) == []
    text = subprocess.run([TOOL, "report", str(path)], capture_output=True, text=True, timeout=60).stdout
    assert "ended by a raw exit_group with status 3 (not the C library's exit" in text


# ---- point 8: small untruths ----

def test_threads_that_never_looped_are_counted(tmp_path):
    """examples/loop has a loop, a worker and a helper thread (both joined
    before the end): three threads, one of them a loop."""
    run_shim([LOOP], tmp_path)
    path = one_trace(tmp_path)
    tr = report(path)["traces"][0]
    assert len(loop_threads(tr)) == 1 and tr["threads_seen"] == 3
    text = subprocess.run([TOOL, "report", path], capture_output=True, text=True, timeout=60).stdout
    assert "loop threads: 1 of 3 threads seen" in text


@pytest.mark.skipif(not shutil.which("redis-server"), reason="redis-server not installed")
def test_redis_is_labelled_as_run_beside_the_file_that_ran(tmp_path, servers):
    exe = shutil.which("redis-server")
    real = os.path.realpath(exe)
    port = free_port()
    s = Server([exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                "--dir", str(tmp_path), "--logfile", str(tmp_path / "redis.log")], tmp_path, port=port)
    servers.append(s)
    assert s.stop() == 0
    path = one_trace(tmp_path)
    tr = report(path)["traces"][0]
    assert tr["exe"] == real and tr["argv0"] == exe
    first = subprocess.run([TOOL, "report", path], capture_output=True, text=True,
                           timeout=60).stdout.splitlines()[0]
    assert f"pid {tr['pid']} {exe} ({real})," in first


HEADER = {"type": "header", "format": 1, "pid": 7, "ppid": 1, "exe": "/x", "argv": ["x"],
          "options": {"block_ms": 10}}
LONG = "std::__detail::_Executor<char const*, std::allocator<std::__cxx11::sub_match>>::_M_dfs"


def test_long_callback_names_keep_the_columns_aligned(tmp_path):
    recs = [HEADER,
            {"type": "func", "addr": 4096, "name": "short_cb", "module": "/x", "offset": 4096},
            {"type": "func", "addr": 8192, "name": LONG, "module": "/x", "offset": 8192},
            {"type": "callback", "fn": 4096, "t": 100, "dur": 20_000_000, "source": "event"},
            {"type": "callback", "fn": 8192, "t": 200, "dur": 30_000_000,
             "source": "a_source_name_longer_than_its_column"},
            {"type": "end", "reason": "exit", "duration_ns": 100_000_000}]
    path = tmp_path / "cb.msgpack"
    path.write_bytes(b"".join(msgpack.packb(r) for r in recs))
    p = subprocess.run([TOOL, "report", str(path)], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("slow callbacks"))
    head, rows = lines[at + 1], lines[at + 2:at + 4]
    assert any(r.lstrip().startswith("std::__detail::_Executor") and "..." in r for r in rows)
    # every row ends its "count" column where the header does
    end = head.index("count") + len("count")
    for r in rows:
        assert re.match(r"\s*1$", r[end - 6:end]), (head, r)
    assert len({len(r) for r in rows}) == 1
