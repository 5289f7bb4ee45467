"""Security of the rings in /dev/shm and of `asyncshim recover` (issue 18):
rings stay their first owner's; recover uses only the trace owner's files
in /dev/shm; the header holds argv[0] only; rings of killed processes do
not stay behind for good.  The second user is `nobody` (uid 65534)."""
import os
import signal
import subprocess
import time

import msgpack
import pytest

from conftest import ASAN_TOOL, TOOL, loop_threads, one_trace, prog, records, report, run_shim, shim_env

NOBODY = 65534

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to act as a second user")


def shm_files(pid):
    return sorted(f for f in os.listdir("/dev/shm") if f.startswith(f"asyncshim.{pid}."))


def as_nobody(code, data=None):
    """Run python CODE as uid/gid 65534; its CompletedProcess."""
    return subprocess.run(["/usr/bin/python3", "-c", code], user=NOBODY, group=NOBODY, input=data,
                          capture_output=True, timeout=60)


def recover(path, tool=TOOL):
    return subprocess.run([tool, "recover", path], capture_output=True, text=True, timeout=60)


def killed_run(tmp_path):
    """A program killed with every event still in its ring: (pid, trace)."""
    p = subprocess.Popen([prog("crash"), "kill"], cwd=tmp_path, env=shim_env("drain_ms=3600000"),
                         stdout=subprocess.PIPE)
    assert p.stdout.readline().strip() == b"ready"
    p.kill()
    p.wait()
    return p.pid, one_trace(tmp_path)


def end_record(path):
    return [r for r in records(path) if r["type"] == "end"][-1]


# ---- 1. seteuid does not hand the rings to the other user ----

@needs_root
def test_seteuid_leaves_the_rings_to_their_first_owner(tmp_path):
    p = subprocess.Popen([prog("uid_switch"), str(NOBODY)], cwd=tmp_path, env=shim_env(),
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert p.stdout.readline().strip() == b"ready"
        files = shm_files(p.pid)
        # the proc file and the main thread's ring; the thread that started
        # while the uid was lent has a private ring, not a file of nobody's
        assert len(files) == 2, files
        for f in files:
            st = os.stat(f"/dev/shm/{f}")
            assert (st.st_uid, st.st_mode & 0o7777) == (0, 0o600), (f, st.st_uid, oct(st.st_mode))
        # so the other user cannot write into the root process's memory
        for f in files:
            r = as_nobody(f"open('/dev/shm/{f}', 'r+b')")
            assert r.returncode != 0 and b"PermissionError" in r.stderr, (f, r.stderr)
        p.stdin.write(b"go\n")
        p.stdin.close()
        assert p.wait(timeout=30) == 0
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    path = one_trace(tmp_path)
    assert end_record(path)["private_rings"] == 1
    assert len(loop_threads(report(path)["traces"][0])) == 2
    assert shm_files(p.pid) == []


# ---- 2. recover trusts only the trace owner's files in /dev/shm ----

@needs_root
def test_recover_ignores_a_ring_planted_by_another_user(tmp_path):
    pid, path = killed_run(tmp_path)
    (ring,) = [f for f in shm_files(pid) if not f.endswith(".proc")]
    # another user plants a copy of the real ring as a second thread's
    planted = f"/dev/shm/{ring.rsplit('.', 1)[0]}.424242"
    data = open(f"/dev/shm/{ring}", "rb").read()
    r = as_nobody(f"import os,sys; fd = os.open('{planted}', os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600); "
                  "os.write(fd, sys.stdin.buffer.read())", data)
    assert r.returncode == 0, r.stderr
    try:
        r = recover(path, ASAN_TOOL)
        assert r.returncode == 0 and "1 ring recovered" in r.stderr, r.stderr
        assert "left alone" in r.stderr
        tr = report(path)["traces"][0]
        assert [t["tid"] for t in tr["threads"]] == [pid]
        assert os.path.exists(planted)          # not its to remove either
    finally:
        if os.path.exists(planted):
            os.unlink(planted)


def rewrite_rings(path, rings):
    recs = records(path)
    recs[0]["rings"] = rings
    with open(path, "wb") as f:
        for r in recs:
            f.write(msgpack.packb(r))


@needs_root
def test_recover_never_follows_a_rings_prefix_out_of_dev_shm(tmp_path):
    pid, path = killed_run(tmp_path)
    (proc,) = [f for f in shm_files(pid) if f.endswith(".proc")]
    victim = tmp_path / "victim"
    victim_proc = tmp_path / "victim.proc"
    victim_proc.write_bytes(open(f"/dev/shm/{proc}", "rb").read())
    os.chmod(victim_proc, 0o600)
    hop = f"/dev/shm/asyncshim.{pid}.hop"
    os.mkdir(hop)
    try:
        rewrite_rings(path, f"{hop}/../../..{victim}")  # /dev/shm, /dev, /
        before = open(path, "rb").read()
        r = recover(path, ASAN_TOOL)
        assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
        assert victim_proc.exists()             # neither read nor removed
        assert open(path, "rb").read() == before
    finally:
        os.rmdir(hop)
        for f in shm_files(pid):
            os.unlink(f"/dev/shm/{f}")


@needs_root
def test_recover_leaves_the_trace_as_it_was_when_it_fails(tmp_path):
    pid, path = killed_run(tmp_path)
    (proc,) = [f for f in shm_files(pid) if f.endswith(".proc")]
    os.chown(f"/dev/shm/{proc}", NOBODY, NOBODY)    # not the trace owner's: refused
    before = open(path, "rb").read()
    try:
        r = recover(path, ASAN_TOOL)
        assert r.returncode == 2, r.stderr
        assert open(path, "rb").read() == before
        assert sorted(os.listdir(tmp_path)) == [os.path.basename(path)]    # no copy left behind
    finally:
        for f in shm_files(pid):
            os.unlink(f"/dev/shm/{f}")


# ---- 3. argv ----

def header(path):
    return records(path)[0]


def test_header_records_argv0_only_unless_asked(tmp_path):
    secret = "--db-password=hunter2"
    run_shim([prog("crash"), "none", secret], tmp_path)
    path = one_trace(tmp_path)
    assert header(path)["argv"] == [prog("crash")]
    assert header(path)["exe"] == os.path.realpath(prog("crash"))
    assert b"hunter2" not in open(path, "rb").read()
    os.unlink(path)
    run_shim([prog("crash"), "none", secret], tmp_path, options="record_argv=1")
    assert header(one_trace(tmp_path))["argv"] == [prog("crash"), "none", secret]


# ---- 9. rings of killed processes do not stay for good ----

def test_next_shimmed_process_removes_rings_of_killed_ones(tmp_path):
    # a live shimmed process's files stay, and so do those of a pid that
    # is now another program's only if they are that program's
    live = subprocess.Popen([prog("forever_loop")], cwd=tmp_path, env=shim_env(), stdout=subprocess.PIPE)
    other = subprocess.Popen(["sleep", "60"])
    reused = []
    time.sleep(0.1)     # start times count 10 ms ticks: sleep's is then not the killed one's
    try:
        assert live.stdout.readline().strip() == b"ready"
        for _ in range(500):            # its ring comes with its first wait
            if len(shm_files(live.pid)) == 2:
                break
            time.sleep(0.01)
        live_files = shm_files(live.pid)
        assert len(live_files) == 2
        killed = tmp_path / "killed"
        killed.mkdir()
        pid, _ = killed_run(killed)
        assert len(shm_files(pid)) == 2
        # the killed process's files again under the pid `sleep` has:
        # the start time they record is not sleep's
        for f in shm_files(pid):
            new = f"/dev/shm/asyncshim.{other.pid}." + f.split(".", 2)[2]
            with open(new, "xb") as out:
                out.write(open(f"/dev/shm/{f}", "rb").read())
            os.chmod(new, 0o600)
            reused.append(new)
        second = tmp_path / "second"
        second.mkdir()
        p = run_shim([prog("crash"), "none"], second)
        assert shm_files(pid) == [] and shm_files(other.pid) == []
        assert end_record(one_trace(second))["removed_stale_rings"] == 2
        assert shm_files(live.pid) == live_files
    finally:
        for q in (live, other):
            q.kill()
            q.wait()
        for f in reused:
            if os.path.exists(f):
                os.unlink(f)
    for f in shm_files(live.pid):
        os.unlink(f"/dev/shm/{f}")


def test_sweep_leaves_a_live_fork_childs_rings_alone(tmp_path):
    p = subprocess.Popen([prog("fork_live")], cwd=tmp_path, env=shim_env(), stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE)
    try:
        line = p.stdout.readline().split()
        assert line[0] == b"ready"
        child = int(line[1])
        files = shm_files(child)
        assert len(files) == 2, files
        second = tmp_path / "second"
        second.mkdir()
        run_shim([prog("crash"), "none"], second)
        assert shm_files(child) == files
        p.stdin.close()
        assert p.wait(timeout=30) == 0
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert shm_files(child) == []


@needs_root
def test_sweep_leaves_another_users_files_alone(tmp_path):
    pid, _ = killed_run(tmp_path)
    files = shm_files(pid)
    for f in files:
        os.chown(f"/dev/shm/{f}", NOBODY, NOBODY)
    try:
        second = tmp_path / "second"
        second.mkdir()
        p = run_shim([prog("crash"), "none"], second)
        assert shm_files(pid) == files and "removed_stale_rings" not in end_record(one_trace(second))
    finally:
        for f in shm_files(pid):
            os.unlink(f"/dev/shm/{f}")
