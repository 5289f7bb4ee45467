"""Calls on fds that cannot block are not timed; every fd that can block
still is (preload/fds.c, hooks/fd.c): tests/progs/fd_modes.c under the shim."""
from conftest import loop_threads, one_trace, prog, report, run_shim


def test_calls_on_non_blocking_fds_are_not_timed(tmp_path):
    # 11,000 calls on non-blocking pipes, sockets, eventfd, timerfds, dups
    # and MSG_DONTWAIT; a shim that timed them would count them all
    run_shim([prog("fd_modes"), "fast"], tmp_path)
    tr = report(one_trace(tmp_path))["traces"][0]
    assert len(loop_threads(tr)) == 1
    assert tr["overhead"]["calls"] < 50, tr["overhead"]
    assert tr["blocking"] == []


def test_every_call_that_can_wait_is_still_timed(tmp_path):
    p = run_shim([prog("fd_modes"), "blocking"], tmp_path, options="block_ms=20")
    expected = [tuple(line.split()) for line in p.stdout.splitlines()]
    assert len(expected) == 7, p.stdout
    tr = report(one_trace(tmp_path))["traces"][0]
    seen = [(b["call"], str(b["fd"])) for b in sorted(tr["blocking"], key=lambda b: b["at_ms"])]
    assert seen == expected
    assert all(25 <= b["duration_ms"] < 1000 for b in tr["blocking"]), tr["blocking"]
