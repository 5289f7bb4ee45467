"""The host process sees no difference with the shim loaded (issue 17):
its signal dispositions, its fd table, its messages on stderr, its end
when its last thread returns, its privilege drops."""
import os
import subprocess

import pytest

from conftest import LIB, one_trace, prog, records, run_shim


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
    p = run_shim([prog("fork_thread_return")], tmp_path, timeout=90)
    assert p.stdout == "reaped 0\n"
    ends = []
    for path in tmp_path.glob("asyncshim.*.msgpack"):
        ends += [r["reason"] for r in records(path) if r.get("type") == "end"]
    assert ends == ["exit", "exit"]
