"""Fuzz the trace reader with libFuzzer (ASan + UBSan) for a bounded time:
FUZZ_SECONDS (default 45 in `make test`; `make fuzz` runs longer)."""
import os
import re
import subprocess

import msgpack

from conftest import BUILD, EXAMPLES, one_trace, run_shim

FUZZER = os.path.join(BUILD, "fuzz", "fuzz_trace")


def seeds(d, tmp_path):
    run_shim([os.path.join(EXAMPLES, "loop")], tmp_path)
    good = open(one_trace(tmp_path), "rb").read()
    header = msgpack.packb({"type": "header", "format": 1, "pid": 1})
    items = {
        "good": good,
        "short": good[:200],
        "iters": header + msgpack.packb({"type": "iters", "tid": 1, "t0": 5, "d": [0, 10, 3, 4]}),
        "block": header + msgpack.packb({"type": "block", "tid": 1, "call": "read", "fd": 3,
                                          "fd_kind": "pipe", "t": 1, "dur": 20000000, "stack": 0}),
        "thread": header + msgpack.packb({"type": "thread", "tid": 1, "name": "x", "loop": True,
                                           "dropped": 0, "exited": False}),
        "spans": header + b"".join(msgpack.packb(r) for r in (
            {"type": "span", "tid": 1, "id": 7, "parent": None, "kind": "request", "name": "r1", "t": 1},
            {"type": "span", "tid": 1, "id": 8, "parent": 7, "kind": "span", "name": "q", "t": 2},
            {"type": "span_meta", "tid": 1, "id": 8, "key": "k", "value": "v"},
            {"type": "span_cumulative", "tid": 1, "parent": 8, "name": "c", "t": 3, "count": 2,
             "total": 4, "min": 1, "max": 3},
            {"type": "block", "tid": 1, "call": "read", "fd": None, "fd_kind": None, "t": 3,
             "dur": 20000000, "stack": 0, "span": 8, "request": 7},
            {"type": "span_end", "tid": 1, "id": 8, "t": 30000000},
            {"type": "iters", "tid": 1, "t0": 0, "d": [0, 40000000]},
            {"type": "overhead", "t": 5, "calls": 1, "records": 2, "loop_ns": 3, "call_ns": 1.0},
            {"type": "ctl", "cmd": "disable", "t": 6},
            {"type": "flight", "trigger": "block", "t": 3, "flight_mb": 1})),
    }
    for name, data in items.items():
        (d / name).write_bytes(data)


def test_fuzz_trace_reader(tmp_path):
    corpus = tmp_path / "corpus"
    seed = tmp_path / "seeds"
    corpus.mkdir()
    seed.mkdir()
    seeds(seed, tmp_path)
    secs = int(os.environ.get("FUZZ_SECONDS", "45"))
    # msgpack-c allocates a container's declared size up front: a 5-byte
    # header can ask for gigabytes.  Cap allocations the way a small machine
    # would (malloc returns NULL); the reader must then fail cleanly.
    env = dict(os.environ, ASAN_OPTIONS="allocator_may_return_null=1:max_allocation_size_mb=256")
    p = subprocess.run([FUZZER, f"-max_total_time={secs}", "-rss_limit_mb=2048", "-timeout=10",
                        "-print_final_stats=1", f"-artifact_prefix={tmp_path}/", "-max_len=65536",
                        str(corpus), str(seed)],
                       capture_output=True, text=True, errors="replace", timeout=secs + 120, cwd=tmp_path,
                       env=env)     # the target's messages may quote the input's bytes
    crashes = [f for f in os.listdir(tmp_path) if f.startswith(("crash-", "leak-", "timeout-", "oom-"))]
    assert p.returncode == 0 and not crashes, p.stderr[-3000:]
    runs = int(re.search(r"stat::number_of_executed_units:\s*(\d+)", p.stderr).group(1))
    print(f"fuzz: {runs} executions in {secs} s, 0 crashes")
    assert runs > 1000
