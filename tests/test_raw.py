"""Timed calls on loop threads make their syscall in the shim (preload/raw.c);
pthread_cancel must still end a thread waiting in one, as it does without the
shim: tests/progs/cancel.c."""
import os
import subprocess

import pytest

from conftest import LIB, PROGS, prog, run_shim, shim_env

# mode -> where the waiting thread's pc must be under the shim
MODES = {
    "read": "libasyncshim.so",
    "recv": "libasyncshim.so",
    "epoll": "libasyncshim.so",
    "poll": "libasyncshim.so",
    "masked": "libc.so.6",     # it blocks the shim's signal: no raw syscalls
    "inherit": "libc.so.6",    # ... from its creation on
    "early": None,             # cancelled before it waits
}


@pytest.mark.parametrize("mode", sorted(MODES))
def test_pthread_cancel_ends_a_thread_waiting_in_a_timed_call(tmp_path, mode):
    bare = subprocess.run([prog("cancel"), mode], capture_output=True, text=True, timeout=30)
    assert bare.returncode == 0 and bare.stdout.endswith("joined canceled\n"), bare
    p = run_shim([prog("cancel"), mode], tmp_path, check=False, timeout=30)
    assert p.returncode == 0, (p.returncode, p.stdout, p.stderr)
    lines = p.stdout.splitlines()
    assert lines[-1] == "joined canceled"
    if MODES[mode]:
        assert lines[0] == "in " + MODES[mode]


def test_pthread_cancel_with_stacks_0(tmp_path):
    # no watchdog thread, but the signal that kicks a thread out is there
    p = run_shim([prog("cancel"), "read"], tmp_path, options="stacks=0", check=False, timeout=30)
    assert p.returncode == 0 and p.stdout.splitlines() == ["in libasyncshim.so", "joined canceled"], p


def test_a_library_preloaded_after_the_shim_still_sees_the_calls(tmp_path):
    # it interposes read: the shim must call it rather than make the syscall
    wrap = os.path.join(PROGS, "libread_wrap.so")
    env = shim_env(None, {"LD_PRELOAD": f"{LIB}:{wrap}"})
    p = subprocess.run([prog("cancel"), "read"], cwd=tmp_path, env=env, capture_output=True, text=True,
                       timeout=30)
    assert p.returncode == 0, p
    assert p.stdout.splitlines() == ["in libc.so.6", "joined canceled"]
    assert int(p.stderr.split("read_wrap reads=")[1].split()[0]) >= 1
