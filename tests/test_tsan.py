"""The shim built with ThreadSanitizer (build/tsan/libasyncshim.so) under
real concurrency: producers recording while the collector drains, thread
churn with ring reclamation, signal handlers pushing records, fork, exec.

The shim is preloaded before the TSan runtime so that its own code runs
outside TSan's interceptors (otherwise TSan ignores the shim's locks)."""
import os
import subprocess

import pytest

from conftest import BUILD, EXAMPLES, PROGS

TSAN_LIB = os.path.join(BUILD, "tsan", "libasyncshim.so")
RUNTIME = "/usr/lib/x86_64-linux-gnu/libtsan.so.2"

# stacks=0: libunwind's per-thread cache destructor runs after TSan has torn
# down the exiting thread's state and crashes TSan; stack capture itself is
# thread-local, and test_stacks.py covers it.
CASES = [
    ([os.path.join(EXAMPLES, "loop")], "stacks=0"),
    ([os.path.join(PROGS, "signal_storm"), "20000"], "stacks=0:buffer_kb=16:block_ms=1000"),
    ([os.path.join(PROGS, "thread_churn"), "2000"], "stacks=0"),
    ([os.path.join(PROGS, "fork_stress"), "20"], "stacks=0"),
    ([os.path.join(PROGS, "exec_chain"), "first"], "stacks=0"),
]


@pytest.mark.skipif(not os.path.exists(RUNTIME), reason="no TSan runtime")
@pytest.mark.parametrize("cmd,options", CASES, ids=[os.path.basename(c[0][0]) for c in CASES])
def test_no_data_races(tmp_path, cmd, options):
    # the shim's own threads run until exit by design: no thread-leak reports;
    # reports go to files, so none made where stderr is out of reach is lost
    env = dict(os.environ, ASYNCSHIM_OPTIONS=options, LD_PRELOAD=f"{TSAN_LIB}:{RUNTIME}",
               TSAN_OPTIONS=f"report_thread_leaks=0 die_after_fork=0 exitcode=66 log_path={tmp_path}/tsan")
    p = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    races = [f.read_text() for f in tmp_path.glob("tsan.*")]
    races += [line for line in p.stderr.splitlines() if "ThreadSanitizer" in line]
    assert p.returncode == 0 and not races, (races[:1], p.stderr[-4000:])
    assert list(tmp_path.glob("asyncshim.*.msgpack")), "the TSan build wrote no trace"
