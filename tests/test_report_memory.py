"""`asyncshim report` in memory that does not grow with the trace (issue 11):
every blocking call and stall counts in the totals and the per-site sums,
one by one only the N longest are listed (`--list N`, default 1000; `--all`
lists every one).  `check`, `diff` and `export --format folded` still count
every finding.

The traces: a real run of tests/progs/stack_repeat under the shim (its
module map and two interned stacks, nap_here and nap_there), grown with
generated blocking calls, stalls sampled at those stacks, and requests with
spans around them; and tests/gen_trace.py grown to 20 and 80 MiB by
bench/bigtrace."""
import json
import os
import random
import re
import subprocess
import sys
from collections import defaultdict

import msgpack
import pytest

from conftest import ASAN_TOOL, BUILD, TOOL, one_trace, prog, records, run_shim

sys.path.insert(0, os.path.dirname(__file__))
import gen_trace  # noqa: E402

BIGTRACE = os.path.join(BUILD, "bench", "bigtrace")
BLOCKS, STALLS, REQUESTS = 1500, 1200, 300


def ns(ms):
    return round(ms * 1e6)


@pytest.fixture(scope="module")
def grown(tmp_path_factory):
    """stack_repeat's trace plus BLOCKS blocking calls and STALLS stalls;
    returns (path, block records, stall records) in file order."""
    d = tmp_path_factory.mktemp("grown")
    run_shim([prog("stack_repeat")], d)
    recs = records(one_trace(d))
    end = recs.pop()
    assert end["type"] == "end"
    tid = recs[0]["pid"]
    stacks = sorted({r["stack"] for r in recs if r["type"] == "block"})
    assert len(stacks) == 2
    rnd = random.Random(11)
    t = end["duration_ns"]
    out = list(recs)
    for i in range(max(BLOCKS, STALLS)):
        t += rnd.randrange(1000, 2_000_000)
        req = span = None
        if i < REQUESTS:
            req, span = 1000 + 2 * i, 1001 + 2 * i
            out.append({"type": "span", "id": req, "tid": tid, "t": t, "name": f"req-{i}", "kind": "request",
                        "parent": None})
            out.append({"type": "span", "id": span, "tid": tid, "t": t + 1, "name": f"step{i % 5}", "kind": "span",
                        "parent": req})
        if i < BLOCKS:
            call, fd, kind = rnd.choice([("usleep", None, None), ("read", 5, "pipe"), ("fsync", 3, "file")])
            # ties on purpose: the order among equals is fixed (earlier first)
            dur = rnd.choice([20_000_000, rnd.randrange(10_000_000, 90_000_000)])
            out.append({"type": "block", "tid": tid, "call": call, "fd": fd, "fd_kind": kind, "t": t + 2, "dur": dur,
                        "stack": rnd.choice(stacks + [0]), "span": span, "request": req})
            t += dur
        if i < STALLS:
            dur = rnd.choice([15_000_000, rnd.randrange(10_000_000, 50_000_000)])
            samples = [rnd.choice(stacks + [99]) for _ in range(rnd.choice([0, 1, 3]))]
            out.append({"type": "stall", "span": span, "request": req, "tid": tid, "t": t + 3, "dur": dur,
                        "iteration": dur + 7, "blocked": 0, "sampled": len(samples), "sampling_ns": 10,
                        "samples": samples})
            t += dur
        if i < REQUESTS:
            out.append({"type": "span_end", "id": span, "t": t + 4})
            out.append({"type": "span_end", "id": req, "t": t + 5})
    end["duration_ns"] = t + 1000
    out.append(end)
    path = os.path.join(d, "grown.msgpack")
    with open(path, "wb") as f:
        for r in out:
            f.write(msgpack.packb(r))
    return path, [r for r in out if r["type"] == "block"], [r for r in out if r["type"] == "stall"]


def run(*args, tool=TOOL, code=0):
    p = subprocess.run([tool, *args], capture_output=True, text=True, timeout=120)
    assert p.returncode == code, p.stderr
    return p.stdout


def report_json(path, *opts, tool=TOOL):
    return json.loads(run("report", "--json", "--top", "100", *opts, path, tool=tool))["traces"][0]


@pytest.fixture(scope="module")
def reports(grown):
    """the grown trace's JSON report by the sanitized tool: listing 1000 (the
    default), 25 and every one"""
    return {opt: report_json(grown[0], *opt.split(), tool=ASAN_TOOL) for opt in ("", "--list 25", "--all")}


def longest(recs, n):
    """the n longest (longer, then earlier, then first in the file), in file order"""
    order = sorted(range(len(recs)), key=lambda i: (-recs[i]["dur"], recs[i]["t"], i))[:n]
    return [recs[i] for i in sorted(order)]


def same_entries(listed, recs):
    assert [(e["at_ms"], e["duration_ms"]) for e in listed] == [(r["t"] / 1e6, r["dur"] / 1e6) for r in recs]


def test_lists_the_longest_and_counts_every_one(grown, reports):
    path, blocks, stalls = grown
    tr = reports[""]
    assert tr["blocking_total"] == len(blocks) > 1000 and tr["blocking_listed"] == len(tr["blocking"]) == 1000
    assert tr["stalls_total"] == len(stalls) > 1000 and tr["stalls_listed"] == len(tr["stalls"]) == 1000
    same_entries(tr["blocking"], longest(blocks, 1000))
    same_entries(tr["stalls"], longest(stalls, 1000))
    assert [b["call"] for b in tr["blocking"]] == [r["call"] for r in longest(blocks, 1000)]
    assert ns(tr["blocking_total_ms"]) == sum(r["dur"] for r in blocks)
    assert ns(tr["stalls_total_ms"]) == sum(r["dur"] for r in stalls)

    small = reports["--list 25"]
    assert small["blocking_listed"] == len(small["blocking"]) == 25 and small["stalls_listed"] == 25
    same_entries(small["blocking"], longest(blocks, 25))
    same_entries(small["stalls"], longest(stalls, 25))
    # what is listed is the same entry as in the full list: stacks, spans, requests
    everything = reports["--all"]
    assert len(everything["blocking"]) == len(blocks) and len(everything["stalls"]) == len(stalls)
    same_entries(everything["blocking"], blocks)
    same_entries(everything["stalls"], stalls)
    by_at = {(e["at_ms"], e["duration_ms"]): e for e in everything["blocking"] + everything["stalls"]}
    for e in small["blocking"] + small["stalls"] + tr["blocking"]:
        assert e == by_at[(e["at_ms"], e["duration_ms"])]
    named = [e for e in small["blocking"] if e["request"]]
    assert named and all(e["span"].startswith("step") for e in named)
    # everything but the two lists is the same whatever is listed
    drop = {"blocking", "stalls", "blocking_listed", "stalls_listed"}
    assert {k: v for k, v in small.items() if k not in drop} == {k: v for k, v in everything.items() if k not in drop}


def test_sites_sum_every_call_and_sample(grown, reports):
    path, blocks, stalls = grown
    everything = reports["--all"]
    # the function each stack id names, from the full list (same order as the file)
    top = {}
    for e, r in zip(everything["blocking"], blocks):
        top[r["stack"]] = e["stack"][0]["function"] if e["stack"] else None
    assert sorted(f for f in top.values() if f) == ["nap_here", "nap_there"]
    want = defaultdict(lambda: [0, 0, 0])
    for r in blocks:
        w = want[(r["call"], top[r["stack"]])]
        w[0] += 1
        w[1] += r["dur"]
        w[2] = max(w[2], r["dur"])
    samples, in_stalls = defaultdict(int), defaultdict(int)
    for r in stalls:
        for f in {top.get(s) for s in r["samples"]} - {None}:
            in_stalls[f] += 1
        for s in r["samples"]:
            if top.get(s):
                samples[top[s]] += 1
    for tr in (reports["--list 25"], everything, report_json(path, "--list", "0")):
        got = {(s["call"], s["site"] and s["site"]["function"]): [s["count"], ns(s["total_ms"]), ns(s["max_ms"])]
               for s in tr["blocking_sites"]}
        assert got == want
        assert {s["site"]["function"]: (s["samples"], s["stalls"]) for s in tr["stall_sites"]} == \
            {f: (samples[f], in_stalls[f]) for f in samples}


def test_text_says_how_many_are_not_listed(grown):
    path, blocks, stalls = grown
    out = run("report", "--list", "10", path)
    assert re.search(rf"blocking calls on loop threads \(>= 10 ms\): {len(blocks)}, ", out)
    assert f"... {len(blocks) - 10} more blocking calls not listed" in out
    assert f"... {len(stalls) - 10} more stalls not listed" in out
    rows = re.findall(r"^ +[0-9.]+ +\d+ +stack_repeat +(usleep|read|fsync) ", out, re.M)
    assert len(rows) == 10
    full = run("report", "--all", path)
    assert "not listed" not in full
    assert len(re.findall(r"^ +[0-9.]+ +\d+ +stack_repeat +(usleep|read|fsync) ", full, re.M)) == len(blocks)
    assert run("report", "--list", "-1", path, code=2) == ""


def test_check_diff_and_folded_count_every_one(grown):
    path, blocks, stalls = grown
    n = len(blocks)
    run("check", "--max-blocking", str(n), path, code=0)
    out = run("check", "--max-blocking", str(n - 1), path, code=1)
    assert str(n) in out
    d = json.loads(run("diff", "--json", path, path))
    assert d["regressions"] == 0
    assert sum(s["base"]["count"] for s in d["sites"]) == sum(s["new"]["count"] for s in d["sites"]) == n
    assert sum(ns(s["new"]["total_ms"]) for s in d["sites"]) == sum(r["dur"] for r in blocks)
    assert d["stalls"]["new"]["count"] == len(stalls)
    assert ns(d["stalls"]["new"]["total_ms"]) == sum(r["dur"] for r in stalls)
    lines = run("export", "--format", "folded", path).splitlines()
    us = sum(int(line.rsplit(" ", 1)[1]) for line in lines)
    # every call's and stall's time, each line rounded to a microsecond
    assert abs(us - (sum(r["dur"] for r in blocks) + sum(r["dur"] for r in stalls)) / 1000) <= len(lines)


def max_rss_kb(*cmd):
    """peak resident KiB of CMD and its output (GNU time: CMD starts from time's
    own small image; a child of this Python would count Python's pages from
    before its exec)"""
    p = subprocess.run(["/usr/bin/time", "-f", "%M", *cmd], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    return int(p.stderr.split()[-1]), p.stdout


def test_memory_does_not_grow_with_the_trace(tmp_path):
    base = str(tmp_path / "base.msgpack")
    summary = gen_trace.generate(base, events=100_000, blocks=1000)     # 1% blocking calls, 0.2% stalls
    rss, copies = {}, {}
    for mb in (20, 80):
        big = str(tmp_path / f"big{mb}.msgpack")
        out = subprocess.run([BIGTRACE, base, big, str(mb)], capture_output=True, text=True, check=True).stdout
        copies[mb] = int(re.search(r"(\d+) copies", out).group(1))
        kb_json, out = max_rss_kb(TOOL, "report", "--json", big)
        kb_text, _ = max_rss_kb(TOOL, "report", big)
        rss[mb] = max(kb_json, kb_text)
        tr = json.loads(out)["traces"][0]
        assert tr["blocking_total"] == copies[mb] * summary["blocks"] and len(tr["blocking"]) == 1000
        assert tr["stalls_total"] == copies[mb] * summary["stalls"] and len(tr["stalls"]) == 1000
        os.unlink(big)
    print(f"report max RSS: {rss[20]} KiB at 20 MiB ({copies[20]} copies), "
          f"{rss[80]} KiB at 80 MiB ({copies[80]} copies)")
    # the 80 MiB trace has four times the blocking calls and stalls; keeping each
    # (about 100 bytes) would add some 10 MiB
    assert copies[80] >= 3.5 * copies[20]
    assert rss[80] <= rss[20] * 1.2
