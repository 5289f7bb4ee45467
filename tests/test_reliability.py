"""The shim never breaks its host and never loses what it recorded:
fork, exec, daemons, thread churn, signal storms, early entry, crashes,
overload, file safety and privacy."""
import os
import shutil
import signal
import subprocess
import time
import urllib.request

import pytest

from conftest import (ASAN_TOOL, LIB, PROGS, TOOL, Server, free_port, loop_threads, nginx_conf, one_trace, prog,
                      records, report, run_shim, shim_env, traces)


def calls(tr):
    # the hooks' calls (a parent's waitpid is one of them)
    return [b["call"] for b in tr["blocking"] if b["seen_by"] == "hook"]


def end_reason(path):
    recs = records(path)
    ends = [r for r in recs if r["type"] == "end"]
    return ends[-1]["reason"] if ends else None


# ---- 1. fork ----

def test_fork_while_other_threads_record(tmp_path):
    p = run_shim([prog("fork_stress"), "100"], tmp_path, timeout=120)
    assert "forks=100 failed=0" in p.stdout
    paths = traces(tmp_path)
    assert len(paths) == 101
    rep = report(*paths)["traces"]
    assert all(t["complete"] for t in rep)
    assert sum(1 for t in rep if len(loop_threads(t)) == 1 and loop_threads(t)[0]["iterations"] == 2) >= 100
    # every process's shared rings (preload/shm.c) went with its clean end
    assert all(shm_files(t["pid"]) == [] for t in rep)




@pytest.mark.skipif(not shutil.which("nginx") and not os.path.exists("/usr/sbin/nginx"),
                    reason="nginx not installed")
def test_prefork_nginx_master_and_workers_each_write_a_trace(tmp_path, servers):
    port = free_port()
    conf = tmp_path / "nginx.conf"
    conf.write_text(nginx_conf(tmp_path, port))
    s = Server(["/usr/sbin/nginx", "-c", str(conf), "-p", str(tmp_path)], tmp_path, port=port)
    servers.append(s)
    for _ in range(50):
        assert urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5).read() == b"ok\n"
    assert s.stop(signal.SIGQUIT) == 0
    time.sleep(0.2)
    paths = traces(tmp_path)
    rep = report(*paths)["traces"]
    master = [t for t in rep if t["pid"] == s.proc.pid]
    workers = [t for t in rep if t["ppid"] == s.proc.pid and loop_threads(t)]
    # the master only waits for signals: no loop, nothing recorded, no trace
    assert len(master) == 0 and len(workers) == 2, [(t["pid"], t["ppid"]) for t in rep]
    assert all(t["complete"] for t in rep)
    # workers made their files as root and removed them as www-data
    assert all(shm_files(t["pid"]) == [] for t in rep) and shm_files(s.proc.pid) == []
    assert sum(loop_threads(w)[0]["iterations"] for w in workers) >= 50
    assert all(w["blocking"] == [] for w in workers)


# ---- 2. exec, posix_spawn, follow_exec ----

def test_exec_flushes_before_the_image_is_replaced(tmp_path):
    p = run_shim([prog("exec_chain"), "first"], tmp_path)
    assert "second" in p.stdout and "preload=shim" in p.stdout
    pid = int(p.stdout.split("first pid=")[1].split()[0])
    first, second = tmp_path / f"asyncshim.{pid}.msgpack", tmp_path / f"asyncshim.{pid}.1.msgpack"
    assert first.exists() and second.exists(), traces(tmp_path)
    # the failed exec in between: recording went on in the same file
    assert calls(report(str(first))["traces"][0]) == ["usleep", "usleep"]
    assert end_reason(str(first)) == "exec"
    assert [r["reason"] for r in records(str(first)) if r["type"] == "end"] == ["exec", "exec"]
    tr2 = report(str(second))["traces"][0]
    assert calls(tr2) == ["usleep"] and tr2["blocking"][0]["duration_ms"] >= 40
    assert end_reason(str(second)) == "exit"


def test_follow_exec_0_leaves_children_unshimmed(tmp_path):
    p = run_shim([prog("exec_chain"), "first"], tmp_path, options="follow_exec=0")
    assert "preload=none" in p.stdout
    assert len(traces(tmp_path)) == 1


def test_posix_spawn_child_is_shimmed(tmp_path):
    p = run_shim([prog("exec_chain"), "spawn"], tmp_path)
    child = int(p.stdout.split("second pid=")[1].split()[0])
    assert "preload=shim" in p.stdout
    tr = report(str(tmp_path / f"asyncshim.{child}.msgpack"))["traces"][0]
    assert calls(tr) == ["usleep"]


def test_vfork_child_execs_shimmed_and_parent_keeps_recording(tmp_path):
    p = run_shim([prog("exec_chain"), "vfork"], tmp_path)
    child = int(p.stdout.split("second pid=")[1].split()[0])
    parent = int(p.stdout.split("parent pid=")[1].split()[0])
    assert "preload=shim" in p.stdout
    # the forked child recorded nothing until its exec (its trace is
    # removed); the exec'd image takes the name
    assert calls(report(str(tmp_path / f"asyncshim.{child}.msgpack"))["traces"][0]) == ["usleep"]
    assert not (tmp_path / f"asyncshim.{child}.1.msgpack").exists()
    tr = report(str(tmp_path / f"asyncshim.{parent}.msgpack"))["traces"][0]
    # between its usleeps it waited for the child: the waitpid hook timed that
    assert tr["complete"] and calls(tr) == ["usleep", "waitpid", "usleep"]


# ---- 3. daemons ----

def test_daemon_that_closes_every_fd_still_gets_its_trace(tmp_path):
    (tmp_path / "out").mkdir()
    victim = tmp_path / "victim"
    p = run_shim([prog("daemon"), str(victim)], tmp_path, options="out=out/trace")
    written = list((tmp_path / "out").glob("trace.*.msgpack"))
    assert len(written) == 1
    tr = report(str(written[0]))["traces"][0]
    assert tr["complete"] and calls(tr) == ["usleep"]
    assert victim.read_bytes() == b"", "the shim wrote into the program's fd"


# ---- 4. threads ----

def test_ten_thousand_short_threads(tmp_path):
    p = run_shim([prog("thread_churn"), "10000"], tmp_path, timeout=180)
    kv = dict(line.split("=") for line in p.stdout.split())
    early, end = int(kv["rss_early_kb"]), int(kv["rss_end_kb"])
    assert end - early < 16 * 1024, f"resident memory grew from {early} to {end} KiB"
    tr = report(one_trace(tmp_path))["traces"][0]
    loops = [t for t in loop_threads(tr) if t["tid"] != tr["pid"]]
    assert len(loops) == 10000
    assert all(t["iterations"] == 1 for t in loops)
    assert tr["dropped_events"] == 0


# ---- 5. signals ----

def test_signal_storm_with_hooks_inside_handlers(tmp_path):
    p = run_shim([prog("signal_storm"), "100000"], tmp_path, options="block_ms=1000", timeout=120)
    kv = dict(x.split("=") for x in p.stdout.split())
    waits, handler_waits = int(kv["waits"]), int(kv["handler_waits"])
    assert handler_waits > 100  # a pending SIGUSR1 absorbs the ones sent meanwhile
    path = one_trace(tmp_path)
    tr = report(path)["traces"][0]
    main = [t for t in loop_threads(tr) if t["tid"] == tr["pid"]][0]
    # A wait made by a handler that interrupted the loop inside its own wait
    # ends no iteration (none was running); every other wait after the
    # first ends exactly one, recorded or dropped.
    counted = main["iterations"] + main["dropped_events"]
    assert waits - 1 - handler_waits <= counted <= waits - 1
    # no record was torn: iterations are ordered and end before the trace
    t = 0
    for r in records(path):
        if r["type"] == "iters" and r["tid"] == main["tid"]:
            d = r["d"]
            starts = [r["t0"]]
            for gap in d[2::2]:
                starts.append(starts[-1] + gap)
            # a handler's iteration may start a few us before the one it
            # interrupted is recorded (the writer clamps such steps inside a
            # record); a torn record would be off by far more
            assert starts[0] >= t - 1_000_000
            assert all(dur < tr["duration_ms"] * 1e6 for dur in d[1::2])
            t = starts[-1]


# ---- 6. early and odd entry ----

@pytest.mark.parametrize("order", ["shim-first", "shim-last"])
def test_hooks_in_other_libraries_constructors(tmp_path, order):
    early = os.path.join(PROGS, "libearly.so")
    pre = f"{LIB}:{early}" if order == "shim-first" else f"{early}:{LIB}"
    env = shim_env(extra={"LD_PRELOAD": pre})
    p = subprocess.run([prog("crash"), "none"], cwd=tmp_path, env=env, capture_output=True, text=True,
                       timeout=30)
    assert p.returncode == 0, p.stderr
    tr = report(one_trace(tmp_path))["traces"][0]
    assert tr["complete"] and "usleep" in calls(tr)


def test_hooks_reentered_from_inside_dlsym(tmp_path):
    # an interposed dlsym (preloaded after the shim) calls the function it is
    # asked for: the shim's hook runs inside the dlsym resolving that hook
    wrap = os.path.join(PROGS, "libdlsym_wrap.so")
    env = shim_env("block_ms=20", {"LD_PRELOAD": f"{LIB}:{wrap}", "DLSYM_WRAP_REPORT": "1"})
    p = subprocess.run([prog("crash"), "none"], cwd=tmp_path, env=env, capture_output=True, text=True,
                       timeout=30)
    assert p.returncode == 0, p.stderr
    reentered = int(p.stderr.split("dlsym_wrap reentered=")[1].split()[0])
    assert reentered >= 5       # read, write, open, nanosleep, epoll_wait, usleep
    tr = report(one_trace(tmp_path))["traces"][0]
    # (the wrapper's own epoll_wait, inside dlsym, made the thread a loop earlier)
    assert tr["complete"] and calls(tr) == ["usleep"] and loop_threads(tr)[0]["iterations"] >= 3


def test_exit_via__exit(tmp_path):
    p = run_shim([prog("crash"), "_exit"], tmp_path, check=False)
    assert p.returncode == 4
    path = one_trace(tmp_path)
    assert end_reason(path) == "_exit" and calls(report(path)["traces"][0]) == ["usleep"]


def test_pthread_exit_from_main(tmp_path):
    p = run_shim([prog("crash"), "pthread_exit"], tmp_path, check=False)
    assert p.returncode == 0
    path = one_trace(tmp_path)
    tr = report(path)["traces"][0]
    assert tr["complete"] and calls(tr) == ["usleep"]
    assert loop_threads(tr)[0]["tid"] != tr["pid"]


# ---- 7. crashes ----

def wait_status(cmd, cwd, env):
    p = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _, status = os.waitpid(p.pid, 0)
    out = p.stdout.read().decode()
    p.stdout.close()
    p.stderr.close()
    return status, out


@pytest.mark.parametrize("mode,sig", [("segv", signal.SIGSEGV), ("abort", signal.SIGABRT)])
def test_crash_keeps_events_and_crash_behaviour(tmp_path, mode, sig):
    bare_dir = tmp_path / "bare"
    bare_dir.mkdir()
    bare_env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}
    bare_status, _ = wait_status([prog("crash"), mode], bare_dir, bare_env)
    status, _ = wait_status([prog("crash"), mode], tmp_path, shim_env())
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == sig
    assert status == bare_status, "same death, same core-dump flag as without the shim"
    path = one_trace(tmp_path)
    assert end_reason(path) == f"SIG{signal.Signals(sig).name[3:]}"
    assert calls(report(path)["traces"][0]) == ["usleep"]


def test_programs_own_crash_handler_still_runs(tmp_path):
    p = run_shim([prog("crash"), "handled"], tmp_path, check=False)
    assert p.returncode == 3 and "handled SIGSEGV" in p.stdout
    assert calls(report(one_trace(tmp_path))["traces"][0]) == ["usleep"]


def shm_files(pid):
    return sorted(f for f in os.listdir("/dev/shm") if f.startswith(f"asyncshim.{pid}."))


def recover(path, tool=TOOL):
    return subprocess.run([tool, "recover", path], capture_output=True, text=True, timeout=60)


def test_sigkill_recover_finishes_the_trace(tmp_path):
    # drain_ms: the collector never drains before the kill, so every event
    # is still in the ring in /dev/shm when SIGKILL arrives
    p = subprocess.Popen([prog("crash"), "kill"], cwd=tmp_path, env=shim_env("drain_ms=3600000"),
                         stdout=subprocess.PIPE)
    assert p.stdout.readline().strip() == b"ready"
    p.kill()
    p.wait()
    path = one_trace(tmp_path)
    files = shm_files(p.pid)
    assert len(files) == 2 and f"asyncshim.{p.pid}.{os.stat(path).st_ino}.proc" in files, files
    for f in files:
        assert os.stat(f"/dev/shm/{f}").st_mode & 0o777 == 0o600
    before = report(path)["traces"][0]
    assert not before["complete"] and calls(before) == [] and loop_threads(before) == []

    r = recover(path, ASAN_TOOL)
    assert r.returncode == 0 and "1 ring recovered" in r.stderr, r.stderr
    assert shm_files(p.pid) == []
    tr = report(path)["traces"][0]
    assert end_reason(path) == "killed"
    assert calls(tr) == ["usleep"] and tr["blocking"][0]["duration_ms"] >= 29
    assert tr["blocking"][0]["stack"][0]["function"] == "loop_with_one_block"
    (loop,) = loop_threads(tr)
    assert loop["iterations"] == 3 and loop["name"] == "crash"     # 4 waits
    # a second time: nothing left, and it says so
    r = recover(path)
    assert r.returncode == 0 and "nothing to recover" in r.stderr


def test_sigkill_midstream_loses_nothing(tmp_path):
    # default drain period: the kill lands between two drains; what was
    # written plus what the rings held is everything the program did
    counts = tmp_path / "counts"
    p = subprocess.Popen([prog("kill_counter"), str(counts)], cwd=tmp_path,
                         env=shim_env("block_ms=10:stall_ms=3600000"), stdout=subprocess.PIPE)
    assert p.stdout.readline().strip() == b"ready"
    time.sleep(0.5)
    p.kill()
    p.wait()
    waits, blocks = (int.from_bytes(counts.read_bytes()[i:i + 8], "little") for i in (0, 8))
    path = one_trace(tmp_path)
    assert recover(path).returncode == 0
    assert shm_files(p.pid) == []
    tr = report(path)["traces"][0]
    (loop,) = loop_threads(tr)
    assert tr["dropped_events"] == 0
    # the kill may fall between a wait's return and the program's count of
    # it, or between a wait's entry (which records the iteration) and its return
    assert waits - 2 <= loop["iterations"] <= waits, (waits, loop["iterations"])
    assert blocks <= len(calls(tr)) <= blocks + 1 and set(calls(tr)) == {"usleep"}


def test_run_recovers_a_killed_program_by_itself(tmp_path):
    p = subprocess.Popen([TOOL, "run", "-o", str(tmp_path / "t"), "--", prog("crash"), "kill"], cwd=tmp_path,
                         env=shim_env("drain_ms=3600000", {"LD_PRELOAD": ""}), stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE)
    assert p.stdout.readline().strip() == b"ready"
    (path,) = [str(x) for x in tmp_path.glob("t.*.msgpack")]
    pid = int(os.path.basename(path).split(".")[1])
    os.kill(pid, signal.SIGKILL)
    _, err = p.communicate(timeout=30)
    assert p.returncode == 128 + signal.SIGKILL
    assert "1 ring recovered" in err.decode()
    assert end_reason(path) == "killed" and shm_files(pid) == []
    assert calls(report(path)["traces"][0]) == ["usleep"]


def test_recover_refuses_what_it_cannot_recover(tmp_path):
    p = subprocess.Popen([prog("crash"), "kill"], cwd=tmp_path, env=shim_env("drain_ms=3600000"),
                         stdout=subprocess.PIPE)
    try:
        assert p.stdout.readline().strip() == b"ready"
        r = recover(one_trace(tmp_path), ASAN_TOOL)
        assert r.returncode == 2 and "still running" in r.stderr
    finally:
        p.kill()
        p.wait()
    assert recover(one_trace(tmp_path)).returncode == 0
    # a complete trace, a file that is not a trace, a missing file
    done = tmp_path / "done"
    done.mkdir()
    run_shim([prog("crash"), "none"], done)
    r = recover(one_trace(done), ASAN_TOOL)
    assert r.returncode == 0 and "nothing to recover" in r.stderr
    (tmp_path / "junk").write_bytes(b"\x00not msgpack at all")
    for bad in (str(tmp_path / "junk"), str(tmp_path / "missing")):
        r = recover(bad, ASAN_TOOL)
        assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr


# ---- 8. overload ----

def test_full_buffers_drop_and_count_exactly(tmp_path):
    # a 4 KiB ring holds 128 records: the storm, and the 5,000 waits the
    # program makes at least, overflow it between drains.
    # Handlers do not wait here and stall sampling is off, so every wait after
    # the first ends exactly one iteration: recorded, or dropped and counted.
    p = run_shim([prog("signal_storm"), "20000", "nowait"], tmp_path,
                 options="block_ms=1000:buffer_kb=4:stall_ms=3600000", timeout=120)
    waits = int(dict(x.split("=") for x in p.stdout.split())["waits"])
    tr = report(one_trace(tmp_path))["traces"][0]
    main = [t for t in loop_threads(tr) if t["tid"] == tr["pid"]][0]
    assert main["dropped_events"] > 0
    assert tr["dropped_events"] == main["dropped_events"]
    assert main["iterations"] + main["dropped_events"] == waits - 1


# ---- 9. files and privacy ----

def test_trace_file_mode_and_no_symlink_following(tmp_path):
    target = tmp_path / "target"
    script = (f'ln -s {target} asyncshim.$$.msgpack; '
              f'LD_PRELOAD={LIB} exec {prog("crash")} none')
    env = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "ASYNCSHIM_OPTIONS")}
    p = subprocess.run(["sh", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True,
                       timeout=30)
    assert p.returncode == 0
    assert not target.exists(), "followed a symlink"
    assert "symlink" in p.stderr
    written = [x for x in tmp_path.glob("asyncshim.*.msgpack") if not x.is_symlink()]
    assert len(written) == 1
    assert (written[0].stat().st_mode & 0o777) == 0o600


def test_traces_hold_no_payloads_paths_or_host_names(tmp_path):
    run_shim([prog("secrets")], tmp_path, options="block_ms=1")
    data = open(one_trace(tmp_path), "rb").read()
    assert b"SECRET-PAYLOAD" not in data
    assert b"secret-host-7f3a9c" not in data
    assert b"secret-file-7f3a9c" not in data
