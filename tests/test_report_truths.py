"""What the report says matches what the program did: the requests it
keeps, the shim's cost, the frames of its stacks, and what `diff` compares."""
import os
import shutil
import subprocess

from conftest import TOOL, one_trace, prog, report, run_shim


def test_report_keeps_the_slowest_and_the_recent_requests(tmp_path):
    run_shim([prog("many_requests")], tmp_path)
    path = one_trace(tmp_path)
    tr = report(path)["traces"][0]
    reqs = {r["id"]: r for r in tr["requests"]}
    # the three slow ones, late in the run, are held with their spans
    for n in (11000, 11001, 11002):
        r = reqs["req-%d" % n]
        assert r["duration_ms"] >= 15, r
        assert [s["name"] for s in r["spans"]] == ["work"]
    # and the last ones to end
    assert "req-11999" in reqs and reqs["req-11999"]["spans"][0]["name"] == "work"
    out = subprocess.run([TOOL, "report", path], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.split("requests: 12000, 12000 ended", 1)[1].splitlines()
    top = [ln.split()[0] for ln in lines[3:6]]
    assert sorted(top) == ["req-11000", "req-11001", "req-11002"], out.stdout
    # statistics count every request
    assert "max 15.0" in lines[0] or float(lines[0].rsplit("/", 1)[1]) >= 15, lines[0]
