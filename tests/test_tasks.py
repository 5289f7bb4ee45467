"""Tasks and slow callbacks from coroutine-library entry points: ucontext
coroutines, libuv work and loop callbacks, libevent callbacks, memcached."""
import json
import os
import re
import socket
import subprocess
import time

import msgpack
import pytest

from conftest import (ASAN_TOOL, TOOL, Server, free_port, loop_threads, one_trace, prog, records,
                      report, run_shim, shim_env)


def trace_of(tmp_path, cmd, options=None, env=None):
    p = subprocess.run(cmd, cwd=tmp_path, env=shim_env(options, env), capture_output=True, text=True,
                       timeout=60)
    assert p.returncode == 0, p.stderr
    path = one_trace(tmp_path)
    return p.stdout, path, report(path)["traces"][0]


def assert_counts_add_up(tasks):
    assert tasks["created"] == (tasks["completed"] + tasks["cancelled"] + tasks["failed"]
                                + tasks["running_at_exit"])


def walk(nodes):
    for n in nodes:
        yield n
        yield from walk(n["children"])


def runs_by_task(path):
    """{task id: [(start, dur, finished)]} from the raw task_runs records."""
    runs = {}
    for r in records(path):
        if r["type"] != "task_runs":
            continue
        start = r["t0"]
        d = r["d"]
        for i in range(0, len(d), 4):
            start += d[i + 1]
            runs.setdefault(d[i], []).append((start, d[i + 2], d[i + 3]))
    for v in runs.values():
        v.sort()
    return runs


# ---- ucontext ----

@pytest.fixture(scope="module")
def round_robin(tmp_path_factory):
    d = tmp_path_factory.mktemp("rr")
    out, path, tr = trace_of(d, [prog("coro_tasks"), "rr"])
    waited = {int(i): int(ns) for _, i, ns in (line.split() for line in out.splitlines())}
    return waited, path, tr


def test_round_robin_coroutines_are_40_completed_tasks(round_robin):
    _, _, tr = round_robin
    tasks = tr["tasks"]
    assert (tasks["created"], tasks["completed"], tasks["cancelled"], tasks["failed"],
            tasks["running_at_exit"]) == (40, 40, 0, 0, 0)
    assert_counts_add_up(tasks)
    assert len(tasks["roots"]) == 40
    for t in tasks["roots"]:
        assert t["name"] == "coro_worker" and t["kind"] == "ucontext" and t["parent"] is None
        assert t["status"] == "completed" and t["children"] == []
        assert t["suspensions"] == 3 and t["runs"] == 4
        assert 3.9 <= t["run_ms"]                   # 4 runs of 1 ms of CPU
    (await_point,) = tasks["await_points"]
    assert await_point["function"] == "coro_worker"
    assert (await_point["tasks"], await_point["suspensions"], await_point["resumed"]) == (40, 120, 120)


def test_round_robin_runs_follow_the_schedule(round_robin):
    """Between a coroutine's suspension and its resumption every other
    coroutine ran exactly once, and the wait is those 39 runs plus the
    scheduler's few microseconds per switch."""
    _, path, tr = round_robin
    runs = runs_by_task(path)
    ids = sorted(int(t["id"]) for t in tr["tasks"]["roots"])
    assert sorted(runs) == ids
    every = sorted((s, d, tid) for tid, v in runs.items() for s, d, _ in v)
    for tid in ids:
        mine = runs[tid]
        assert [f for _, _, f in mine] == [0, 0, 0, 1]   # 3 await points, then finished
        for (s0, d0, _), (s1, _, _) in zip(mine, mine[1:]):
            # runs are sequential on one thread: anything that started after
            # this run's start and before its next one ran in between (its
            # start may round to a nanosecond before s0 + d0)
            between = [(s, d, o) for s, d, o in every if s0 < s < s1]
            assert sorted(o for _, _, o in between) == sorted(set(ids) - {tid})
            others = sum(d for _, d, _ in between)
            wait = s1 - (s0 + d0)
            # the slack is the scheduler's own time, and preemption on a busy
            # machine; each run's start and duration are rounded to ns apart
            assert others - 1000 * len(between) <= wait <= others + 200_000_000, (tid, wait, others)


def test_round_robin_wait_times_match_what_the_coroutines_measured(round_robin):
    waited, _, tr = round_robin
    by_id = sorted(tr["tasks"]["roots"], key=lambda t: int(t["id"]))
    for index, t in enumerate(by_id):           # tasks are numbered in creation order
        own = waited[index] / 1e6
        assert t["wait_ms"] == pytest.approx(own, abs=0.5), (t["id"], t["wait_ms"], own)
        assert own >= 3 * 39                       # 3 waits for 39 runs of 1 ms


def test_coroutines_creating_coroutines_give_the_tree(tmp_path):
    _, _, tr = trace_of(tmp_path, [prog("coro_tasks"), "tree"])
    tasks = tr["tasks"]
    assert (tasks["created"], tasks["completed"], tasks["running_at_exit"]) == (14, 14, 0)
    assert_counts_add_up(tasks)
    roots = tasks["roots"]
    assert [r["name"] for r in roots] == ["coro_level1", "coro_level1"]
    for root in roots:
        assert root["parent"] is None
        assert [c["name"] for c in root["children"]] == ["coro_level2", "coro_level2"]
        for mid in root["children"]:
            assert mid["parent"] == root["id"]
            assert [c["name"] for c in mid["children"]] == ["coro_level3", "coro_level3"]
            for leaf in mid["children"]:
                assert leaf["parent"] == mid["id"] and leaf["children"] == []
    assert len(list(walk(roots))) == 14


def test_stripped_program_tasks_are_named_by_module_and_offset(tmp_path):
    """Without symbols the entry functions are module+offset, still telling
    the three levels apart (coro_tasks itself is named offline from its
    symbol table, as the tests above show: it exports nothing)."""
    exe = tmp_path / "coro_stripped"
    subprocess.run(["strip", "-o", str(exe), prog("coro_tasks")], check=True)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    _, _, tr = trace_of(run_dir, [str(exe), "tree"])
    roots = tr["tasks"]["roots"]
    names = [{n["name"] for n in level} for level in
             (roots, [c for r in roots for c in r["children"]],
              [g for r in roots for c in r["children"] for g in c["children"]])]
    assert all(len(level) == 1 for level in names)
    flat = [next(iter(level)) for level in names]
    assert len(set(flat)) == 3
    assert all(re.fullmatch(r"coro_stripped\+0x[0-9a-f]+", n) for n in flat), flat


def test_disabled_shim_passes_coroutines_through(tmp_path):
    bare = subprocess.run([prog("coro_tasks"), "tree"], capture_output=True, text=True, timeout=60)
    shim = run_shim([prog("coro_tasks"), "tree"], tmp_path, options="enabled=0")
    assert len(shim.stdout.splitlines()) == len(bare.stdout.splitlines()) == 14
    assert not list(tmp_path.iterdir())


# ---- libuv ----

UV_ENV = {"UV_THREADPOOL_SIZE": "4"}


def test_uv_work_items_are_tasks_with_queue_delays(tmp_path):
    out, path, tr = trace_of(tmp_path, [prog("uv_tasks"), "work"], env=UV_ENV)
    assert out.strip() == "done 20"
    tasks = tr["tasks"]
    assert (tasks["created"], tasks["completed"], tasks["cancelled"], tasks["running_at_exit"]) == (20, 20, 0, 0)
    assert_counts_add_up(tasks)
    assert len(tasks["roots"]) == 20
    for t in tasks["roots"]:
        assert t["name"] == "sleepy_work" and t["kind"] == "uv_work"
        assert t["queue_delay_ms"] is not None and t["run_ms"] >= 9.5
        assert t["runs"] == 1 and t["suspensions"] == 0
    # 4 pool threads for 20 items of 10 ms: the last ones waited >= 40 ms
    delays = sorted(t["queue_delay_ms"] for t in tasks["roots"])
    assert delays[-1] >= 35
    assert tasks["top_by_queue_delay"][0]["queue_delay_ms"] == pytest.approx(delays[-1], abs=1e-3)
    # the sleeps ran on pool threads, which are not loop threads
    assert [b for b in tr["blocking"] if b["call"] == "usleep" or b["tid"] != tr["pid"]] == []
    loops = loop_threads(tr)
    assert [t["tid"] for t in loops] == [tr["pid"]]
    pool = {tid for r in records(path) if r["type"] == "task_runs" for tid in [r["tid"]]}
    assert pool and tr["pid"] not in pool
    assert all(not t["loop"] for t in tr["threads"] if t["tid"] in pool)


def test_uv_slow_timer_callback_is_a_blocking_call_and_a_named_slow_callback(tmp_path):
    _, _, tr = trace_of(tmp_path, [prog("uv_tasks"), "timer"], env=UV_ENV)
    (block,) = [b for b in tr["blocking"] if b["call"] == "usleep"]
    assert block["tid"] == tr["pid"] and block["duration_ms"] >= 59
    (cb,) = tr["slow_callbacks"]
    assert cb["function"] == "slow_timer_cb" and cb["source"] == "uv_timer"
    assert cb["count"] == 1 and cb["max_ms"] >= 59
    assert tr["tasks"]["created"] == 0


def test_uv_cancel_on_a_queued_item_counts_as_cancelled(tmp_path):
    out, _, tr = trace_of(tmp_path, [prog("uv_tasks"), "cancel"], env=UV_ENV)
    assert out.splitlines() == ["cancel 0", "completed 7 cancelled 1"]
    tasks = tr["tasks"]
    assert (tasks["created"], tasks["completed"], tasks["cancelled"], tasks["failed"]) == (8, 7, 1, 0)
    assert_counts_add_up(tasks)
    cancelled = [t for t in tasks["roots"] if t["status"] == "cancelled"]
    assert [t["id"] for t in cancelled] == ["8"]                  # the last one queued
    assert cancelled[0]["queue_delay_ms"] is None and cancelled[0]["runs"] == 0


# ---- libevent ----

def test_libevent_slow_callbacks_are_named(tmp_path):
    out, _, tr = trace_of(tmp_path, [prog("event_slow")])
    assert out.splitlines() == ["readback ok", "self ok", "ticks 10"]
    cbs = {c["function"]: c for c in tr["slow_callbacks"]}
    assert set(cbs) == {"slow_event_cb", "slow_once_cb"}     # never libevent's own event_once_cb
    assert cbs["slow_event_cb"]["source"] == "event" and cbs["slow_event_cb"]["count"] == 1
    assert cbs["slow_event_cb"]["max_ms"] >= 59
    assert cbs["slow_once_cb"]["source"] == "event_once" and cbs["slow_once_cb"]["max_ms"] >= 29
    assert tr["blocking"] == []                               # CPU, no blocking call
    assert [t["tid"] for t in loop_threads(tr)] == [tr["pid"]]


def test_libevent_program_unchanged_when_disabled(tmp_path):
    p = run_shim([prog("event_slow")], tmp_path, options="enabled=0")
    assert p.stdout.splitlines() == ["readback ok", "self ok", "ticks 10"]


def memcached_load(port, n=200):
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        f = s.makefile("rwb")
        for i in range(n):
            v = b"v" * (i % 50 + 1)
            f.write(b"set key%d 0 0 %d\r\n%s\r\n" % (i, len(v), v))
            f.flush()
            assert f.readline() == b"STORED\r\n"
        for i in range(n):
            f.write(b"get key%d\r\n" % i)
            f.flush()
            assert f.readline().startswith(b"VALUE key%d " % i)
            f.readline()
            assert f.readline() == b"END\r\n"


def test_memcached_workers_are_loop_threads_without_false_blocking_calls(tmp_path, servers):
    """A false blocking call would be a wait taken for a call: the workers'
    idle epoll waits, their notify-pipe reads, the listener's clock timer.
    Those last as long as the pauses between rounds (200 ms) and the idle
    time before SIGTERM; block_ms=50 catches them all while a real call
    preempted by a busy test machine (a few ms) is not mistaken for one."""
    port = free_port()
    cmd = ["/usr/bin/memcached", "-p", str(port), "-U", "0", "-l", "127.0.0.1", "-t", "4", "-m", "64"]
    if os.geteuid() == 0:
        cmd += ["-u", "root"]
    srv = Server(cmd, tmp_path, options="block_ms=50", port=port)
    servers.append(srv)
    for _ in range(3):
        memcached_load(port)
        time.sleep(0.2)
    assert srv.stop() in (0, -15)
    tr = report(one_trace(tmp_path))["traces"][0]
    loops = loop_threads(tr)
    workers = [t for t in loops if t["name"] == "mc-worker"]
    assert len(workers) == 4
    assert any(t["tid"] == tr["pid"] for t in loops)           # the listener's event_base_loop
    assert sum(t["iterations"] for t in workers) > 0
    assert tr["blocking"] == []


# ---- the tools on task records ----

def pack(*recs):
    return b"".join(msgpack.packb(r) for r in recs)


HEADER = {"type": "header", "format": 1, "pid": 7, "ppid": 1, "exe": "/x", "options": {"block_ms": 10}}


def run_tool(tool, *args):
    env = dict(os.environ, ASAN_OPTIONS="detect_leaks=1:abort_on_error=0",
               UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1")
    return subprocess.run([tool, *args], capture_output=True, text=True, timeout=120, env=env)


@pytest.mark.parametrize("name,rec", [
    ("runs_not_quads", {"type": "task_runs", "tid": 1, "t0": 0, "d": [1, 0, 5]}),
    ("runs_bad_end", {"type": "task_runs", "tid": 1, "t0": 0, "d": [1, 0, 5, 7]}),
    ("runs_id_zero", {"type": "task_runs", "tid": 1, "t0": 0, "d": [0, 0, 5, 1]}),
    ("runs_overflow", {"type": "task_runs", "tid": 1, "t0": 2**64 - 2, "d": [1, 5, 5, 1]}),
    ("task_no_id", {"type": "task", "tid": 1, "fn": 4096, "t": 1}),
    ("end_bad_status", {"type": "task_end", "tid": 1, "id": 1, "t": 5, "status": "exploded"}),
    ("callback_no_fn", {"type": "callback", "tid": 1, "source": "event", "t": 1, "dur": 2}),
])
def test_corrupt_task_records_are_rejected(tmp_path, name, rec):
    path = tmp_path / f"{name}.msgpack"
    path.write_bytes(pack(HEADER, rec))
    p = run_tool(ASAN_TOOL, "report", "--json", str(path))
    assert p.returncode == 2, (p.returncode, p.stderr)
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and "corrupt" in lines[0], p.stderr


def test_task_records_in_any_order_and_a_deep_chain(tmp_path):
    """Runs and ends may be written before the task (other threads' rings);
    a 30000-deep chain of tasks must not overflow anything (the JSON tree
    stops at 100 levels: JSON readers limit nesting)."""
    n = 30000
    recs = [HEADER, {"type": "func", "addr": 4096, "name": "step", "module": "/x", "offset": 4096}]
    recs.append({"type": "task_runs", "tid": 2, "t0": 100,
                 "d": [x for k in range(1, n + 1) for x in (k, 0 if k == 1 else 20, 10, 1)]})
    recs += [{"type": "task_end", "tid": 1, "id": k, "t": 100 + 20 * k, "status": "completed"}
             for k in range(1, n)]
    recs += [{"type": "task", "tid": 1, "id": k, "parent": k - 1 if k > 1 else None, "kind": "uv_work",
              "fn": 4096, "t": 50 + k} for k in range(1, n + 1)]
    path = tmp_path / "chain.msgpack"
    path.write_bytes(pack(*recs))
    for tool in (TOOL, ASAN_TOOL):
        p = run_tool(tool, "report", "--json", str(path))
        assert p.returncode == 0, p.stderr
        tasks = json.loads(p.stdout)["traces"][0]["tasks"]
        assert (tasks["created"], tasks["completed"], tasks["running_at_exit"]) == (n, n - 1, 1)
        assert_counts_add_up(tasks)
        (root,) = tasks["roots"]
        assert root["name"] == "step" and root["id"] == "1"
        assert tasks["tree_omitted"] == n - 100
        assert len(list(walk(tasks["roots"]))) == 100
        text = run_tool(tool, "report", str(path))
        assert text.returncode == 0 and f"tasks: {n} created" in text.stdout
