"""The host process sees no difference with the shim loaded (issue 17):
its signal dispositions, its fd table, its messages on stderr, its end
when its last thread returns, its privilege drops."""
import os
import subprocess
import threading

import pytest

from conftest import BUILD, EXAMPLES, LIB, one_trace, prog, records, run_shim


def run_bare(cmd, cwd, timeout=60):
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout)


# The shim owns SIGTERM (to write the trace when it kills the program) and
# a realtime signal (stall samples): every way to install a handler reports
# the disposition the program would have seen, SIG_DFL.
@pytest.mark.parametrize("fn", ["sigset", "sysv_signal", "__sysv_signal", "bsd_signal", "ssignal"])
@pytest.mark.parametrize("sig", ["15", "rtmax-4"])
def test_old_disposition_is_the_programs(tmp_path, fn, sig):
    cmd = [prog("host_signals"), fn, sig]
    assert run_bare(cmd, tmp_path).stdout == "dfl mine\n"
    assert run_shim(cmd, tmp_path).stdout == "dfl mine\n"


# A fork child of a thread other than main has that thread only; when it
# returns from its start function the child must end (status 0) as it does
# bare, not live on with the shim's threads (CPython's
# test_threading.test_3_join_in_forked_from_thread hung on it).
def test_fork_child_of_a_thread_ends_when_its_thread_returns(tmp_path):
    # keep_empty: neither process runs a loop; their end records are the point
    p = run_shim([prog("fork_thread_return")], tmp_path, options="keep_empty=1", timeout=90)
    assert p.stdout == "reaped 0\n"
    ends = []
    for path in tmp_path.glob("asyncshim.*.msgpack"):
        ends += [r["reason"] for r in records(path) if r.get("type") == "end"]
    assert ends == ["exit", "exit"]


# Nothing of the shim's lives in the program's fd table: select() on a
# closed fd past the table's end is EBADF-free as bare (fd 1000 is past a
# table the shim did not grow), the table has the same size, and no fd
# names a shim file (the trace used to sit at fd 512 there).
def test_fd_table_is_the_programs(tmp_path):
    bare = run_bare([prog("host_fds")], tmp_path).stdout.splitlines()
    shim = run_shim([prog("host_fds")], tmp_path).stdout.splitlines()
    assert bare[2] == "shim 0"
    assert shim[:3] == bare[:3]


def test_messages_never_go_to_the_programs_new_fd_2(tmp_path):
    """A daemon that put its journal at fd 2: a fork child that cannot
    create its trace says nothing there (its start stderr is out of reach)."""
    out = tmp_path / "d"
    out.mkdir()
    p = run_shim([prog("stderr_journal"), str(out), "fork"], tmp_path, options=f"out={out}/t")
    assert (tmp_path / "journal.log").read_text() == ""
    assert p.returncode == 0


def test_shim_thread_messages_go_to_the_start_stderr(tmp_path):
    """The collector, failing to create a flight dump after the program
    moved fd 2, says so on the stderr the process started with."""
    out = tmp_path / "d"
    out.mkdir()
    env = dict(os.environ, LD_PRELOAD=LIB, ASYNCSHIM_OPTIONS=f"mode=flight:out={out}/t")
    p = subprocess.Popen([prog("stderr_journal"), str(out), "dump"], cwd=tmp_path, env=env,
                         stdin=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    timer = threading.Timer(60, p.kill)
    timer.start()
    try:
        line = p.stderr.readline()
        p.stdin.close()
        p.wait()
    finally:
        timer.cancel()
    assert "asyncshim: cannot create" in line
    assert (tmp_path / "journal.log").read_text() == ""
    assert p.returncode == 0


root_only = pytest.mark.skipif(os.geteuid() != 0, reason="drops privileges: needs root")


# Capabilities and keep-caps are per thread, but glibc makes each set*id
# call on every thread and aborts when they disagree: the shim's threads
# follow the program's per-thread calls, so they neither fail where the
# program's thread succeeds nor keep what it gave up.
@root_only
def test_privilege_drop_keeping_capabilities(tmp_path):
    p = run_shim([prog("keepcaps")], tmp_path)
    assert p.stdout == "dropped\n0000000000000000 0000000000000000\n"


@root_only
@pytest.mark.skipif(not os.path.exists("/usr/bin/setpriv"), reason="no setpriv (util-linux)")
def test_setpriv_keeps_working(tmp_path):
    cmd = ["/usr/bin/setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "true"]
    p = run_shim(cmd, tmp_path, options="keep_empty=1", check=False)
    assert p.returncode == 0, p.stderr
    assert [r["reason"] for r in records(one_trace(tmp_path)) if r.get("type") == "end"] == ["exec"]


# The shim built with UBSan (every finding fatal) and TSan, on programs
# that exercise its threads: reports go to files (log_path), so one made
# on a shim thread, or after the program closed its stderr, is kept.
UBSAN_LIB = os.path.join(BUILD, "ubsan", "libasyncshim.so")
TSAN_LIB = os.path.join(BUILD, "tsan", "libasyncshim.so")
TSAN_RUNTIME = "/usr/lib/x86_64-linux-gnu/libtsan.so.2"
SAN_CASES = [
    ([os.path.join(EXAMPLES, "loop")], ""),
    ([prog("signal_storm"), "20000"], "buffer_kb=16:block_ms=1000"),
    ([prog("thread_churn"), "2000"], ""),
    ([prog("fork_stress"), "20"], ""),
    ([prog("exec_chain"), "first"], ""),
    ([prog("ctl_toggle"), "300"], ""),   # recording off and on again, and on while on
]
SAN_IDS = [os.path.basename(c[0][0]) for c in SAN_CASES]


def sanitizer_reports(d, prefix):
    return [f.read_text() for f in sorted(d.glob(prefix + ".*"))]


@pytest.mark.skipif(not os.path.exists(UBSAN_LIB), reason="make build/ubsan/libasyncshim.so")
@pytest.mark.parametrize("cmd,options", SAN_CASES, ids=SAN_IDS)
def test_ubsan_finds_nothing(tmp_path, cmd, options):
    env = dict(os.environ, LD_PRELOAD=UBSAN_LIB, ASYNCSHIM_OPTIONS=options,
               UBSAN_OPTIONS=f"log_path={tmp_path}/ubsan:print_stacktrace=1")
    p = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    reports = sanitizer_reports(tmp_path, "ubsan")
    assert not reports, reports[0][-4000:]
    assert p.returncode == 0, p.stderr[-4000:]


# The collector zeroed the loop thread's iter_start when recording was
# enabled again, racing with the thread (which owns it).
@pytest.mark.skipif(not os.path.exists(TSAN_LIB) or not os.path.exists(TSAN_RUNTIME), reason="no TSan build")
def test_tsan_enable_while_looping(tmp_path):
    env = dict(os.environ, LD_PRELOAD=f"{TSAN_LIB}:{TSAN_RUNTIME}", ASYNCSHIM_OPTIONS="stacks=0",
               TSAN_OPTIONS=f"report_thread_leaks=0 die_after_fork=0 exitcode=66 log_path={tmp_path}/tsan")
    p = subprocess.run([prog("ctl_toggle"), "300"], cwd=tmp_path, env=env, capture_output=True, text=True,
                       timeout=120)
    reports = sanitizer_reports(tmp_path, "tsan")
    assert not reports, reports[0][-4000:]
    assert p.returncode == 0, p.stderr[-4000:]
