"""`asyncshim export --format chrome`: Chrome trace-event JSON of real runs,
checked slice by slice; and the progress line on long reads."""
import json
import os
import pty
import resource
import subprocess
import tempfile

import msgpack
import pytest

from conftest import ASAN_TOOL, EXAMPLES, TOOL, one_trace, prog, records, run_shim, shim_env
import gen_trace

LOOP = os.path.join(EXAMPLES, "loop")


@pytest.fixture(scope="module")
def loop_run(tmp_path_factory):
    d = tmp_path_factory.mktemp("loop")
    p = run_shim([LOOP], d)
    waits = int(p.stdout.strip().split("=")[1])
    return waits, one_trace(d)


def export(*paths, tool=TOOL):
    p = subprocess.run([tool, "export", "--format", "chrome", *paths], capture_output=True, text=True,
                       timeout=120)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


def slices(doc, cat):
    return [e for e in doc["traceEvents"] if e["ph"] == "X" and e.get("cat") == cat]


def test_example_loop_slices(loop_run):
    waits, path = loop_run
    pid = records(path)[0]["pid"]
    doc = export(path, tool=ASAN_TOOL)
    iters = slices(doc, "loop")
    assert len(iters) == waits - 1
    assert {(e["pid"], e["tid"]) for e in iters} == {(pid, pid)}   # the main thread runs the loop
    blocks = sorted(slices(doc, "blocking"), key=lambda e: e["ts"])
    assert [e["name"] for e in blocks] == ["usleep", "read"]
    sleep, read = blocks
    assert all(e["pid"] == pid and e["tid"] == pid for e in blocks)
    assert sleep["dur"] >= 140_000 and sleep["args"]["fd"] is None      # µs
    assert read["dur"] >= 100_000 and read["args"]["fd_kind"] == "pipe" and read["args"]["fd"] >= 0
    # symbolized stacks in args, innermost first, without the shim's own frames
    assert sleep["args"]["stack"][0].startswith("slow_sleep ")
    assert read["args"]["stack"][0].startswith("wait_for_helper ")
    for b in blocks:
        assert any(f.startswith("run_loop ") for f in b["args"]["stack"])
        assert not any("libasyncshim" in f for f in b["args"]["stack"])
    # each blocking call sits inside the iteration that made it, so the
    # viewers nest it under that slice on the thread's track
    for b in blocks:
        outer = [i for i in iters if i["ts"] <= b["ts"] and b["ts"] + b["dur"] <= i["ts"] + i["dur"]]
        assert len(outer) == 1, b
        assert outer[0]["dur"] >= b["dur"]


def test_example_loop_matches_the_trace_exactly(loop_run):
    _, path = loop_run
    recs = records(path)
    durs = [d for r in recs if r["type"] == "iters" for d in r["d"][1::2]]
    doc = export(path)
    iters = sorted(slices(doc, "loop"), key=lambda e: e["ts"])
    assert [round(e["dur"] * 1000) for e in iters] == durs
    assert [e["args"]["iteration"] for e in iters] == list(range(len(durs)))
    counters = [e for e in doc["traceEvents"] if e["ph"] == "C" and e["name"].startswith("lag")]
    assert len(counters) == len(durs)
    assert max(c["args"]["lag_ms"] for c in counters) == pytest.approx(max(durs) / 1e6)


def test_example_loop_stall_slice(loop_run):
    _, path = loop_run
    pid = records(path)[0]["pid"]
    doc = export(path)
    (stall,) = slices(doc, "stall")
    # the 80 ms of CPU on tick 15, inside the iteration that burned it
    assert stall["tid"] == pid and stall["dur"] >= 60_000
    assert stall["args"]["blocked_ms"] == 0 and stall["args"]["stack_ids"]
    assert stall["args"]["stack"][0].startswith("burn_cpu")
    outer = [i for i in slices(doc, "loop") if i["ts"] <= stall["ts"] and stall["ts"] + stall["dur"] <= i["ts"] + i["dur"]]
    assert len(outer) == 1


def test_tasks_are_async_events_with_parents_and_run_slices(tmp_path):
    run_shim([prog("coro_tasks"), "tree"], tmp_path)
    path = one_trace(tmp_path)
    doc = export(path, tool=ASAN_TOOL)
    ev = doc["traceEvents"]
    begins = {e["args"]["task"]: e for e in ev if e["ph"] == "b" and e["cat"] == "task"}
    ends = {e["args"]["task"]: e for e in ev if e["ph"] == "e" and e["cat"] == "task"}
    assert len(begins) == 14 and set(ends) == set(begins)
    for tid, b in begins.items():
        assert ends[tid]["id"] == b["id"] and ends[tid]["name"] == b["name"]
        assert ends[tid]["args"]["status"] == "completed" and ends[tid]["ts"] >= b["ts"]
    # the tree: level1 roots, each parent of two level2, each parent of two level3
    level = {"coro_level1": 1, "coro_level2": 2, "coro_level3": 3}
    for b in begins.values():
        parent = b["args"]["parent"]
        if level[b["name"]] == 1:
            assert parent is None
        else:
            assert level[begins[parent]["name"]] == level[b["name"]] - 1
    assert sorted(sum(1 for b in begins.values() if b["args"]["parent"] == p) for p in begins
                  if level[begins[p]["name"]] < 3) == [2] * 6
    # every coroutine ran twice (one suspension), as named slices on its thread
    runs = [e for e in ev if e["ph"] == "X" and e["cat"] == "task"]
    assert len(runs) == 28
    assert {e["name"] for e in runs} == set(level)
    assert sorted(e["args"]["then"] for e in runs) == ["finished"] * 14 + ["suspended"] * 14


def test_cancelled_task_and_pool_threads(tmp_path):
    subprocess.run([prog("uv_tasks"), "cancel"], cwd=tmp_path, env=shim_env(extra={"UV_THREADPOOL_SIZE": "4"}),
                   check=True, capture_output=True, timeout=60)
    path = one_trace(tmp_path)
    pid = records(path)[0]["pid"]
    ev = export(path)["traceEvents"]
    ends = {e["args"]["task"]: e["args"]["status"] for e in ev if e["ph"] == "e"}
    assert sorted(ends.values()) == ["cancelled"] + ["completed"] * 7
    cancelled = [t for t, s in ends.items() if s == "cancelled"]
    runs = [e for e in ev if e["ph"] == "X" and e["cat"] == "task"]
    assert len(runs) == 7 and all(e["args"]["task"] not in cancelled for e in runs)
    # the work ran on the pool threads, each a named track of its own
    pool = {e["tid"] for e in runs}
    assert pid not in pool
    named = {e["tid"] for e in ev if e["ph"] == "M" and e["name"] == "thread_name"}
    assert pool <= named


def test_shim_overhead_counter(loop_run):
    _, path = loop_run
    pid = records(path)[0]["pid"]
    recs = [r for r in records(path) if r["type"] == "overhead"]
    counters = [e for e in export(path)["traceEvents"] if e["ph"] == "C" and e["name"] == "shim overhead"]
    assert len(counters) == len(recs) >= 1
    assert counters[-1]["pid"] == pid
    assert counters[-1]["args"]["on_loops_ms"] == pytest.approx(recs[-1]["loop_ns"] / 1e6)


def test_process_and_thread_names(loop_run):
    _, path = loop_run
    pid = records(path)[0]["pid"]
    meta = [e for e in export(path)["traceEvents"] if e["ph"] == "M"]
    names = {e["name"]: e for e in meta if e["name"] == "process_name"}
    assert names["process_name"]["pid"] == pid and names["process_name"]["args"]["name"] == "loop"
    threads = {e["tid"]: e["args"]["name"] for e in meta if e["name"] == "thread_name"}
    assert threads[pid].startswith("loop")


def test_two_processes_on_one_timeline(tmp_path):
    for sub in ("a", "b"):
        (tmp_path / sub).mkdir()
        run_shim([LOOP], tmp_path / sub)
    paths = [one_trace(tmp_path / "a"), one_trace(tmp_path / "b")]
    heads = [records(p)[0] for p in paths]
    doc = export(*paths)
    by_pid = {h["pid"]: [e for e in slices(doc, "loop") if e["pid"] == h["pid"]] for h in heads}
    assert all(len(v) > 5 for v in by_pid.values())
    # the later process starts later on the shared time axis, by the wall-clock gap
    first, second = sorted(heads, key=lambda h: h["start_unix_ns"])
    gap_us = (second["start_unix_ns"] - first["start_unix_ns"]) / 1000
    assert min(e["ts"] for e in by_pid[second["pid"]]) >= gap_us
    assert doc["otherData"]["origin_unix_ns"] == first["start_unix_ns"]


def test_output_file_and_unknown_records(tmp_path, loop_run):
    _, path = loop_run
    data = open(path, "rb").read()
    head = msgpack.packb(records(path)[0])
    # a newer shim's record type in the middle: skipped, the rest exported
    newer = head + msgpack.packb({"type": "from_the_future", "x": [1, 2]}) + data[len(head):]
    src = tmp_path / "newer.msgpack"
    src.write_bytes(newer)
    out = tmp_path / "out.json"
    p = subprocess.run([ASAN_TOOL, "export", "--format", "chrome", "-o", str(out), str(src)],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0 and p.stdout == "" and p.stderr == "", p.stderr
    assert len(slices(json.loads(out.read_text()), "blocking")) == 2


@pytest.mark.parametrize("args,word", [
    (["--format", "svg"], "unknown format"),
    (["--format"], "usage"),
    ([], "usage"),
])
def test_usage_errors(tmp_path, loop_run, args, word):
    _, path = loop_run
    p = subprocess.run([ASAN_TOOL, "export", *args, path], capture_output=True, text=True, timeout=60)
    assert p.returncode == 2 and word in p.stderr and len(p.stderr.strip().splitlines()) == 1


def test_corrupt_trace_writes_nothing(tmp_path, loop_run):
    _, path = loop_run
    data = open(path, "rb").read()
    bad = tmp_path / "bad.msgpack"
    header = msgpack.packb(records(path)[0])
    bad.write_bytes(header + msgpack.packb({"type": "iters", "tid": 1, "t0": 0, "d": [5]}))
    out = tmp_path / "out.json"
    for src, word in ((bad, "corrupt 'iters'"), (tmp_path / "missing", "cannot open")):
        p = subprocess.run([ASAN_TOOL, "export", "--format", "chrome", "-o", str(out), str(src)],
                           capture_output=True, text=True, timeout=60)
        assert p.returncode == 2 and word in p.stderr and str(src) in p.stderr, p.stderr
        assert len(p.stderr.strip().splitlines()) == 1
        assert not out.exists()
    trunc = tmp_path / "trunc.msgpack"
    trunc.write_bytes(data[:40])   # inside the header: nothing to read
    p = subprocess.run([ASAN_TOOL, "export", "--format", "chrome", str(trunc)], capture_output=True,
                       text=True, timeout=60)
    assert p.returncode == 2 and "truncated" in p.stderr and p.stdout == ""


@pytest.fixture(scope="module")
def big_trace(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("big") / "big.msgpack")
    return path, gen_trace.generate(path, events=1_000_000)


def test_large_trace_exports_every_event(tmp_path):
    path = str(tmp_path / "t.msgpack")
    want = gen_trace.generate(path, events=100_000, loops=3, blocks=2_000, seed=7)
    iters, blocks, names = {}, 0, {}
    for e in export(path)["traceEvents"]:
        if e["ph"] == "X" and e["cat"] == "loop":
            iters[e["tid"]] = iters.get(e["tid"], 0) + 1
        elif e["ph"] == "X" and e["cat"] == "blocking":
            blocks += 1
        elif e["ph"] == "M" and e["name"] == "thread_name":
            names[e["tid"]] = e["args"]["name"]
    assert iters == want["iterations"] and blocks == want["blocks"]
    # a thread named only by the trace's last records still gets its name
    assert names[want["pid"] + 100] == "worker"


def limit_address_space():
    # 32 MiB of address space in all: far less than the events would take
    resource.setrlimit(resource.RLIMIT_AS, (32 << 20, 32 << 20))


def test_one_million_events_stream_in_bounded_memory(big_trace, tmp_path):
    path, want = big_trace
    out = tmp_path / "big.json"
    p = subprocess.run([TOOL, "export", "--format", "chrome", "-o", str(out), path], capture_output=True,
                       text=True, timeout=120, preexec_fn=limit_address_space)
    assert p.returncode == 0, p.stderr
    # 2 million events, more than 200 MB of JSON
    assert out.stat().st_size > 200_000_000
    with open(out) as f:
        lines = sum(1 for line in f if '"cat":"loop"' in line and '"ph":"X"' in line)
    assert lines == sum(want["iterations"].values())


def run_on_a_terminal(cmd, stdout_too=False):
    """Run cmd with stderr (and stdout, if asked) on a pseudo-terminal; return (rc, stdout, terminal text)."""
    master, slave = pty.openpty()
    out = tempfile.TemporaryFile()
    p = subprocess.Popen(cmd, stdout=slave if stdout_too else out, stderr=slave, stdin=subprocess.DEVNULL)
    os.close(slave)
    seen = []
    while True:
        try:
            chunk = os.read(master, 1 << 16)
        except OSError:        # EIO: the child closed the terminal
            break
        if not chunk:
            break
        seen.append(chunk)
    seen = b"".join(seen)
    p.wait(timeout=60)
    os.close(master)
    out.seek(0)
    return p.returncode, out.read(), seen.decode(errors="replace")


def test_progress_only_on_a_terminal_and_only_for_large_traces(big_trace, loop_run):
    path, _ = big_trace
    rc, out, tty = run_on_a_terminal([TOOL, "report", "--json", path])
    assert rc == 0 and json.loads(out)["traces"][0]["pid"] == 424242
    assert "reading" in tty and path[-40:] in tty and "%" in tty
    assert tty.endswith("\r\x1b[K"), repr(tty[-40:])   # the line is cleared before the report
    # small trace on a terminal, or large trace on a pipe: nothing
    rc, _, tty = run_on_a_terminal([TOOL, "report", loop_run[1]])
    assert rc == 0 and tty == ""
    p = subprocess.run([TOOL, "report", path], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0 and p.stderr == ""
    # dump writes records while it reads: on one terminal with them, no progress line
    rc, _, tty = run_on_a_terminal([TOOL, "dump", path], stdout_too=True)
    assert rc == 0 and '"type":"end"' in tty and "reading" not in tty


def test_bad_traces_are_rejected_under_asan(tmp_path, loop_run):
    from test_bad_input import assert_rejected, bad_files, run_tool
    good = open(loop_run[1], "rb").read()
    for name, (data, word) in bad_files(good).items():
        path = tmp_path / f"{name}.msgpack"
        path.write_bytes(data)
        out = tmp_path / f"{name}.json"
        p = run_tool("export", "--format", "chrome", "-o", str(out), str(path))
        assert_rejected(p, word)
        assert str(path) in p.stderr and not out.exists(), name
        html = tmp_path / f"{name}.html"
        assert_rejected(run_tool("report", "--html", str(html), str(path)), word)
        assert not html.exists(), name


def test_every_truncation_point_is_handled(tmp_path, loop_run):
    from test_bad_input import run_tool
    good = open(loop_run[1], "rb").read()
    path = tmp_path / "t.msgpack"
    step = max(1, len(good) // 25)
    for cut in range(1, len(good), step):
        path.write_bytes(good[:cut])
        for args in (["export", "--format", "chrome", str(path)],
                     ["report", "--html", str(tmp_path / "t.html"), str(path)]):
            p = run_tool(*args)
            assert p.returncode in (0, 2), (cut, p.stderr)
            assert "Sanitizer" not in p.stderr and "runtime error" not in p.stderr, p.stderr
            if p.returncode == 0 and args[0] == "export":
                json.loads(p.stdout)
