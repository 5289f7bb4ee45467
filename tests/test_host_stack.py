"""What stack capture takes from its host (issue 17 points 2, 9 and 4): no
fd of the program's is read, written or closed and no fd is added to its
table or its children's (libunwind's validation pipe), and the slow paths
run on the shim's own stack, not on a small coroutine stack."""
import json
import os
import re
import subprocess

import pytest

from conftest import one_trace, prog, report, run_shim, shim_env


def blocking_stacks(path):
    tr = report(path)["traces"][0]
    return [[f["function"] for f in b["stack"]] for b in tr["blocking"]]


# ---- point 2: a daemon that closes every fd and reuses the numbers ----

def test_captures_leave_reused_fds_alone(tmp_path):
    """fd_reuse closes every fd from 3 up after a first capture, reuses 3, 4
    and 5 for its epoll fd and a socketpair, then makes captured blocking
    calls: its fds must keep their contents (the unfixed shim read fd 4,
    wrote into it and closed 3 and 4), and every other fd must be the
    shim's, high and close-on-exec."""
    p = run_shim([prog("fd_reuse")], tmp_path, options="block_ms=5", check=False)
    assert p.returncode == 0 and p.stdout == "ok\n", p.stdout + p.stderr
    stacks = blocking_stacks(one_trace(tmp_path))
    assert len(stacks) == 5
    assert all(st[0] == "block" and "main" in st for st in stacks), stacks


# ---- point 9: a child gets the fds it was given and no more ----

PARENT = r"""
import asyncio, fcntl, json, os, subprocess, sys, time

CHILD = '''
import json, os
fds = {}
for f in os.listdir("/proc/self/fd"):
    try:
        fds[f] = os.readlink("/proc/self/fd/" + f)
    except OSError:
        pass                    # the listing's own fd, closed by now
print(json.dumps(fds))
'''

async def handler():
    time.sleep(0.05)            # a blocking call: its stack is captured

async def main():
    await asyncio.sleep(0.01)
    await handler()
    await asyncio.sleep(0.01)

asyncio.run(main())
fd = os.open("/dev/null", os.O_RDONLY)
if fd != 5:
    os.dup2(fd, 5)
    os.close(fd)
out = {"parent": {}}
bare = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}
for name, env in (("shim", dict(os.environ)), ("bare", bare)):
    p = subprocess.run([sys.executable, "-c", CHILD], pass_fds=(5,), env=env,
                       capture_output=True, text=True, check=True)
    out[name] = json.loads(p.stdout)
for f in os.listdir("/proc/self/fd"):
    try:
        cloexec = bool(fcntl.fcntl(int(f), fcntl.F_GETFD) & fcntl.FD_CLOEXEC)
        out["parent"][f] = [os.readlink("/proc/self/fd/" + f), cloexec]
    except OSError:
        pass
print(json.dumps(out))
"""

TRACE_FILE = re.compile(r"/asyncshim\.[0-9.]+msgpack$")


def test_subprocess_child_gets_only_pass_fds(tmp_path):
    """CPython's subprocess with pass_fds=(5,), after a captured blocking
    call: the child, under the shim or not, has 0, 1, 2 and 5 (and, under
    the shim, its own trace file); the unfixed shim gave it libunwind's
    pipe at 3 and 4.  Every fd of the parent's that the program did not
    open is the shim's and close-on-exec."""
    script = tmp_path / "parent.py"
    script.write_text(PARENT)
    p = run_shim(["/usr/bin/python3", str(script)], tmp_path, options="block_ms=10")
    out = json.loads(p.stdout)
    assert sorted(out["bare"], key=int) == ["0", "1", "2", "5"], out["bare"]
    child = {fd: path for fd, path in out["shim"].items() if not TRACE_FILE.search(path)}
    assert sorted(child, key=int) == ["0", "1", "2", "5"], out["shim"]
    for fd, (path, cloexec) in out["parent"].items():
        if fd not in ("0", "1", "2", "5"):
            assert TRACE_FILE.search(path) and cloexec and int(fd) >= 64, (fd, path, cloexec)
    traces = [t for t in report(*sorted(tmp_path.glob("asyncshim.*.msgpack")))["traces"] if t["blocking"]]
    assert any(b["call"] in ("clock_nanosleep", "nanosleep", "select") and b["stack"]
               for t in traces for b in t["blocking"])


# ---- point 4: slow paths on a 4 KiB coroutine stack ----

def coro(args, tmp_path, options=None, shim=True):
    cmd = [prog("coro_stack")] + [str(a) for a in args]
    env = shim_env(options) if shim else {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}
    p = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, f"{cmd} {'under the shim' if shim else 'bare'}: exit {p.returncode} {p.stderr}"
    return int(re.fullmatch(r"used (\d+)\n", p.stdout).group(1))


@pytest.mark.parametrize("size", [4096, 6144])
def test_blocking_call_on_small_coroutine_stack(tmp_path, size):
    """A coroutine using 3.2 KiB of a 4 or 6 KiB stack makes a blocking call
    over block_ms: fine bare, and under the shim (the unfixed slow path took
    3.3 KiB of it and died of SIGSEGV).  The shim takes at most 1 KiB of the
    coroutine's stack, and the stack it captures (from its own stack)
    still walks into the coroutine's."""
    args = [size, 3200, "block", 30]
    bare = coro(args, tmp_path, shim=False)
    used = coro(args, tmp_path, options="block_ms=5")
    print(f"coroutine stack {size}: bare {bare} bytes, under the shim {used}")
    assert used - bare <= 1024
    [st] = blocking_stacks(one_trace(tmp_path))
    assert st[:2] == ["deep_work", "coro"], st


def test_stall_sample_on_small_coroutine_stack(tmp_path):
    """The stall sample handler runs on the interrupted coroutine's stack (the
    program's sigaltstack is not ours to take): beyond what a signal with an
    empty handler of the program's takes (the kernel's signal frame), it
    takes at most 1 KiB; the unfixed handler unwound there and overflowed
    this 7 KiB stack."""
    args = [7168, 1024]
    bare = coro(args + ["timer", 200], tmp_path, shim=False)
    used = coro(args + ["spin", 200], tmp_path, options="stall_ms=5")
    print(f"stall samples: empty handler {bare} bytes, under the shim {used}")
    assert used - bare <= 1024
    [stall] = report(one_trace(tmp_path))["traces"][0]["stalls"]
    assert stall["samples"] >= 1
    assert [f["function"] for f in stall["stack"]][:3] == ["spin", "deep_work", "coro"]
