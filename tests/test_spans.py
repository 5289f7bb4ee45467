"""Named spans and requests (include/asyncshim.h, python/asyncshim.py): the
tree, metadata, cumulative spans, each request's blocking calls, nesting per
thread, per coroutine and per asyncio task, and programs that run unchanged
without the shim."""
import json
import os
import subprocess

import msgpack

from conftest import ASAN_TOOL, ROOT, TOOL, one_trace, prog, records, report, run_shim

PY = "/usr/bin/python3"


def span_roots(tr, name):
    return [s for s in tr["spans"] if s["name"] == name]


def walk(nodes):
    for n in nodes:
        yield n
        yield from walk(n["children"])


def ends(n):
    return n["at_ms"] + n["duration_ms"]


def slack(at_ms):
    """Records packed in different drains are converted from TSC ticks with
    the collector's estimate of the tick rate at the time, which it refines
    as the run goes on: allow 0.1 % of the time since start."""
    return 0.01 + 0.001 * at_ms


def check_nested(parent):
    """Children begin after their parent and end before it."""
    for c in parent["children"]:
        assert c["at_ms"] >= parent["at_ms"] - slack(c["at_ms"]), (parent["name"], c["name"])
        if not c.get("cumulative"):
            assert ends(c) <= ends(parent) + slack(ends(c)), (parent["name"], c["name"])
        check_nested(c)


def test_c_program_spans_requests_cumulative(tmp_path):
    bare = subprocess.run([prog("spans")], capture_output=True, text=True, timeout=60)
    assert bare.returncode == 0, bare.stderr
    p = run_shim([prog("spans")], tmp_path)
    assert p.stdout == bare.stdout                 # same output with and without the shim
    assert p.stdout.count("handled req-") == 20
    path = one_trace(tmp_path)
    tr = report(path)["traces"][0]
    loop = [t for t in tr["threads"] if t["loop"]]
    assert len(loop) == 1
    loop_tid = loop[0]["tid"]

    # 20 requests, each with its span tree, metadata and its own blocking calls
    reqs = {r["id"]: r for r in tr["requests"]}
    assert sorted(reqs) == sorted("req-%d" % n for n in range(20))
    for n in range(20):
        r = reqs["req-%d" % n]
        assert r["tid"] == loop_tid
        assert [s["name"] for s in r["spans"]] == ["parse", "query", "render"]
        parse, query, render = r["spans"]
        assert parse["metadata"] == {"bytes": 100 + n, "method": "POST" if n % 2 else "GET"}
        assert [c["name"] for c in parse["children"]] == ["tokenize"]
        assert parse["children"][0]["duration_ms"] >= 0.05          # it burns 50 us
        assert render["duration_ms"] >= 0.05
        check_nested({"children": r["spans"], "at_ms": r["at_ms"], "duration_ms": r["duration_ms"],
                      "name": r["id"]})
        assert r["duration_ms"] >= sum(s["duration_ms"] for s in r["spans"]) - slack(ends(r))
        # handled inside one iteration: the loop was held at least that long
        assert r["lag_ms"] >= r["duration_ms"] - slack(ends(r))
        if n % 5 == 0:
            assert len(r["blocking"]) == 1, r
            b = r["blocking"][0]
            assert b["call"] == "usleep" and b["duration_ms"] >= 15
            assert b["span"] == "query" and b["request"] == "req-%d" % n
            assert query["duration_ms"] >= b["duration_ms"]
            assert query["at_ms"] <= b["at_ms"] + slack(b["at_ms"]) and ends(b) <= ends(query) + slack(ends(b))
        else:
            assert r["blocking"] == []
            assert query["duration_ms"] < 15
    # the trace-wide list carries the same attribution
    assert sorted((b["span"], b["request"]) for b in tr["blocking"]) == \
        sorted(("query", "req-%d" % n) for n in (0, 5, 10, 15))

    # spans outside requests: the worker thread's own tree, the batch with
    # its cumulative span, the long name cut to 63 bytes
    bg = span_roots(tr, "bg")
    assert len(bg) == 5
    for s in bg:
        assert s["tid"] != loop_tid
        assert [c["name"] for c in s["children"]] == ["bg-step"]
        assert s["children"][0]["tid"] == s["tid"]
        assert s["children"][0]["duration_ms"] >= 2          # usleep(2000)
        check_nested(s)
    (batch,) = span_roots(tr, "batch")
    (item,) = batch["children"]
    assert item["name"] == "item" and item["cumulative"] is True
    assert item["count"] == 10000
    assert 0 < item["min_ms"] <= item["avg_ms"] <= item["max_ms"] <= batch["duration_ms"]
    assert item["total_ms"] <= batch["duration_ms"]
    assert abs(item["avg_ms"] * 10000 - item["total_ms"]) <= 0.01 * item["total_ms"] + 0.01
    longname = "a-span-name-that-is-much-longer-than-the-sixty-three-bytes-the-shim-keeps-of-it"[:63]
    assert len(span_roots(tr, longname)) == 1
    # spans never cross threads or requests
    names_in_requests = {s["name"] for r in tr["requests"] for s in walk(r["spans"])}
    assert names_in_requests == {"parse", "tokenize", "query", "render"}

    by_name = {s["name"]: s for s in tr["spans_by_name"]}
    for name, count in (("parse", 20), ("tokenize", 20), ("query", 20), ("render", 20), ("bg", 5),
                        ("bg-step", 5), ("batch", 1)):
        assert by_name[name]["count"] == count, name
    q = by_name["query"]
    assert q["p50_ms"] < 15 <= q["max_ms"] and q["p95_ms"] <= q["max_ms"]
    (cum,) = tr["cumulative"]
    assert (cum["name"], cum["parent"], cum["entries"], cum["count"]) == ("item", "batch", 1, 10000)

    # the shim's estimate of its own cost
    ov = tr["overhead"]
    assert ov["calls"] >= 20 and ov["records"] > 100 and ov["estimated_ms"] > 0
    assert 0 < ov["loop_busy_pct"] < 100

    text = subprocess.run([TOOL, "report", path], capture_output=True, text=True, timeout=60)
    assert text.returncode == 0, text.stderr
    out = text.stdout
    assert "requests: 20, 20 ended" in out
    assert "query" in out and "[blocking usleep" in out
    assert "{bytes=1" in out and "method=" in out
    assert "item  cumulative: 10000 x avg" in out
    assert "shim overhead (estimated):" in out and "% of loop busy time" in out


def test_trace_records_are_plain_msgpack(tmp_path):
    run_shim([prog("spans")], tmp_path)
    recs = records(one_trace(tmp_path))
    begins = [r for r in recs if r["type"] == "span"]
    ends_ = {r["id"] for r in recs if r["type"] == "span_end"}
    assert len(begins) == 20 * 5 + 5 * 2 + 2          # requests + their spans, bg/bg-step, batch, long name
    assert {r["id"] for r in begins} == ends_
    assert len({r["id"] for r in begins}) == len(begins)
    meta = [r for r in recs if r["type"] == "span_meta"]
    assert len(meta) == 40 and {m["key"] for m in meta} == {"bytes", "method"}
    (cum,) = [r for r in recs if r["type"] == "span_cumulative"]
    assert cum["count"] == 10000 and cum["min"] <= cum["max"] <= cum["total"]
    assert [r["type"] for r in recs[-2:]] == ["overhead", "end"]


def test_spans_in_coroutines_stay_with_their_task(tmp_path):
    p = run_shim([prog("span_coro")], tmp_path)
    assert p.stdout == "coroutines done\n"
    bare = subprocess.run([prog("span_coro")], capture_output=True, text=True, timeout=60)
    assert bare.stdout == p.stdout
    tr = report(one_trace(tmp_path))["traces"][0]
    roots = {s["name"]: s for s in tr["spans"]}
    # "sched" stayed open on the thread all along, yet no coroutine span is under it
    assert roots["sched"]["children"] == []
    for i in range(3):
        co = roots["co-%d" % i]
        assert [c["name"] for c in co["children"]] == ["inner-%d" % i]
        assert co["children"][0]["metadata"] == {"coroutine": i}
        assert roots["tail-%d" % i]["children"] == []
    (b,) = tr["blocking"]
    assert b["call"] == "usleep" and b["span"] == "inner-1" and b["request"] is None


def test_python_asyncio_spans_nest_per_task(tmp_path):
    script = os.path.join(ROOT, "tests", "py", "asyncio_spans.py")
    bare = subprocess.run([PY, script], capture_output=True, text=True, timeout=60)
    assert bare.returncode == 0 and bare.stdout == "done\n", bare.stderr
    p = run_shim([PY, script], tmp_path)
    assert p.stdout == "done\n"
    tr = report(one_trace(tmp_path))["traces"][0]
    reqs = {r["id"]: r for r in tr["requests"]}
    assert sorted(reqs) == ["task-0", "task-1", "task-2"]
    for n in range(3):
        r = reqs["task-%d" % n]
        # each task's spans, although all three were suspended inside
        # outer-N at the same time on one thread
        assert [s["name"] for s in r["spans"]] == ["outer-%d" % n, "step", "sync-helper"]
        outer = r["spans"][0]
        assert outer["metadata"] == {"n": n, "kind": "worker"}
        assert [c["name"] for c in outer["children"]] == ["inner-%d" % n]
        assert outer["duration_ms"] >= 10 * (3 - n) + 5
        assert outer["children"][0]["duration_ms"] >= 5
    # although another task entered "holder" just before and is suspended
    # in it while task 1 blocks
    blocking = [b for b in tr["blocking"] if b["duration_ms"] >= 25]
    assert len(blocking) == 1
    assert blocking[0]["span"] == "inner-1" and blocking[0]["request"] == "task-1"
    assert [b["call"] for b in reqs["task-1"]["blocking"] if b["duration_ms"] >= 25] == [blocking[0]["call"]]
    assert sorted(s["name"] for s in tr["spans"]) == ["after", "holder"]


def test_python_binding_without_the_shim_is_a_no_op(tmp_path):
    code = ("import sys; sys.path.insert(0, %r); import asyncshim\n"
            "with asyncshim.request('r') as r:\n"
            "    with asyncshim.span('s') as s: s.set('k', 1)\n"
            "print(asyncshim.enabled())\n" % os.path.join(ROOT, "python"))
    p = subprocess.run([PY, "-c", code], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert p.returncode == 0 and p.stdout == "False\n", p.stderr
    assert os.listdir(tmp_path) == []


def test_spans_cost_nothing_to_record_when_disabled(tmp_path):
    """enabled=0: the API is there, records nothing, the program runs."""
    p = run_shim([prog("spans")], tmp_path, options="enabled=0")
    assert p.stdout.count("handled req-") == 20
    assert not [f for f in os.listdir(tmp_path) if f.endswith(".msgpack")]


def test_install_header_and_pkg_config(tmp_path):
    prefix = tmp_path / "prefix"
    p = subprocess.run(["make", "-s", "install", "PREFIX=%s" % prefix, "DESTDIR="], cwd=ROOT,
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    assert (prefix / "include" / "asyncshim.h").exists()
    env = dict(os.environ, PKG_CONFIG_PATH=str(prefix / "lib" / "pkgconfig"))
    flags = subprocess.run(["pkg-config", "--cflags", "--libs", "asyncshim"], env=env,
                           capture_output=True, text=True, timeout=30)
    assert flags.returncode == 0, flags.stderr
    assert "-I%s/include" % prefix in flags.stdout
    exe = tmp_path / "spans"
    cc = subprocess.run(["cc", "-std=gnu11", "-O2", "-Wall", "-Wextra", "-Werror", "-o", str(exe),
                         os.path.join(ROOT, "tests", "progs", "spans.c"), *flags.stdout.split(), "-lpthread"],
                        capture_output=True, text=True, timeout=120)
    assert cc.returncode == 0, cc.stderr
    run = run_shim([str(exe)], tmp_path)
    assert run.stdout.count("handled req-") == 20
    tr = report(one_trace(tmp_path))["traces"][0]
    assert len(tr["requests"]) == 20


def test_chrome_export_draws_spans(tmp_path):
    run_shim([prog("spans")], tmp_path)
    out = tmp_path / "chrome.json"
    p = subprocess.run([TOOL, "export", "--format", "chrome", "-o", str(out), one_trace(tmp_path)],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    ev = [e for e in json.loads(out.read_text())["traceEvents"] if e.get("cat") == "span"]
    begins = [e for e in ev if e["ph"] == "b"]
    assert len(begins) == len([e for e in ev if e["ph"] == "e"]) == 20 * 5 + 5 * 2 + 2 + 1
    # one async track per tree: a request and all its spans share its id
    tracks = {}
    for e in begins:
        tracks.setdefault(e["id"], []).append(e["name"])
    reqs = [names for names in tracks.values() if any(n.startswith("request req-") for n in names)]
    assert len(reqs) == 20
    for names in reqs:
        assert sorted(n for n in names if not n.startswith("request")) == ["parse", "query", "render", "tokenize"]
    (item,) = [e for e in begins if e["name"] == "item x10000"]
    assert item["args"]["count"] == 10000


def test_stall_carries_its_span_and_request(tmp_path):
    p = run_shim([prog("spans"), "stall"], tmp_path, options="stall_ms=20")
    assert p.stdout == "stalled\n"
    tr = report(one_trace(tmp_path))["traces"][0]
    (st,) = [s for s in tr["stalls"] if s["duration_ms"] >= 60]
    assert st["samples"] >= 1
    assert st["span"] == "crunch" and st["request"] == "req-cpu"
    (req,) = tr["requests"]
    assert req["id"] == "req-cpu" and req["lag_ms"] >= 80


def test_corrupt_span_records_are_refused(tmp_path):
    header = msgpack.packb({"type": "header", "format": 1, "pid": 1})
    for bad in ({"type": "span", "tid": 1, "kind": "span", "name": "x", "t": 1},          # no id
                {"type": "span", "tid": 1, "id": 0, "kind": "span", "name": "x", "t": 1},
                {"type": "span_end", "tid": 1, "id": "x", "t": 1},
                {"type": "span_meta", "tid": 1, "id": 1, "key": "k"},
                {"type": "span_cumulative", "tid": 1, "name": "c", "t": 1, "count": 0, "total": 1,
                 "min": 1, "max": 1},
                {"type": "overhead", "t": 1},
                {"type": "ctl", "t": 1},
                {"type": "flight", "t": 1}):
        path = tmp_path / "bad.msgpack"
        path.write_bytes(header + msgpack.packb(bad))
        for tool in (TOOL, ASAN_TOOL):
            p = subprocess.run([tool, "report", "--json", str(path)], capture_output=True, text=True, timeout=60)
            assert p.returncode == 2, (bad, p.stdout)
            assert p.stderr.count("\n") == 1 and "corrupt '%s' record" % bad["type"] in p.stderr, p.stderr
    # an end, metadata or cumulative entry whose span began before the trace: ignored
    ok = header + b"".join(msgpack.packb(r) for r in (
        {"type": "span_end", "tid": 1, "id": 5, "t": 9},
        {"type": "span_meta", "tid": 1, "id": 5, "key": "k", "value": 1},
        {"type": "span_cumulative", "tid": 1, "parent": 5, "name": "c", "t": 1, "count": 1, "total": 1,
         "min": 1, "max": 1},
        {"type": "span", "tid": 1, "id": 6, "parent": 5, "kind": "span", "name": "open", "t": 10}))
    path = tmp_path / "ok.msgpack"
    path.write_bytes(ok)
    tr = report(str(path), tool=ASAN_TOOL)["traces"][0]
    (s,) = tr["spans"]
    assert s["name"] == "open" and s["unfinished"] is True and tr["cumulative"] == []
