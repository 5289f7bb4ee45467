"""Bad input to the tools: one clear stderr line, exit 2, never a crash.
Runs the AddressSanitizer + UBSan build of the tools."""
import os
import subprocess

import msgpack
import pytest

from conftest import ASAN_TOOL, EXAMPLES, one_trace, run_shim


@pytest.fixture(scope="module")
def good_trace(tmp_path_factory):
    d = tmp_path_factory.mktemp("good")
    run_shim([os.path.join(EXAMPLES, "loop")], d)
    return open(one_trace(d), "rb").read()


def run_tool(*args):
    env = dict(os.environ, ASAN_OPTIONS="detect_leaks=1:abort_on_error=0",
               UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1")
    return subprocess.run([ASAN_TOOL, *args], capture_output=True, text=True, timeout=60, env=env)


def assert_rejected(p, word):
    assert p.returncode == 2, (p.returncode, p.stderr)
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1, p.stderr
    assert word in lines[0]


def bad_files(good):
    header = msgpack.packb({"type": "header", "format": 1, "pid": 1})
    return {
        "empty": (b"", "empty"),
        "text": (b"hello, this is not a trace\n", "not an asyncshim trace"),
        "json": (b'{"type": "header"}', "not an asyncshim trace"),
        "array": (msgpack.packb([1, 2, 3]), "not an asyncshim trace"),
        "format99": (msgpack.packb({"type": "header", "format": 99}), "unsupported trace format"),
        "truncated_early": (good[:40], "truncated"),
        # cut after the header: read up to the last whole record, with a
        # warning (tests/test_faults.py)
        "bad_iters": (header + msgpack.packb({"type": "iters", "tid": 1, "t0": 0, "d": [1]}), "corrupt"),
        "bad_iters_type": (header + msgpack.packb({"type": "iters", "tid": 1, "t0": 0, "d": ["x", 1]}),
                           "corrupt"),
        "bad_block": (header + msgpack.packb({"type": "block", "tid": "x"}), "corrupt"),
        "untyped": (header + msgpack.packb(7), "corrupt"),
        "garbage_after": (good + b"\xc1\xc1\xc1", "corrupt"),
    }


@pytest.mark.parametrize("cmd", ["report", "dump"])
def test_bad_traces_are_rejected(tmp_path, good_trace, cmd):
    for name, (data, word) in bad_files(good_trace).items():
        if cmd == "dump" and name.startswith("bad_"):
            continue  # dump shows records as they are; fields are judged by report
        path = tmp_path / f"{name}.msgpack"
        path.write_bytes(data)
        args = [cmd, str(path)] if cmd == "dump" else [cmd, "--json", str(path)]
        p = run_tool(*args)
        assert_rejected(p, word)
        assert str(path) in p.stderr, name


def test_every_truncation_point_is_handled(tmp_path, good_trace):
    path = tmp_path / "t.msgpack"
    step = max(1, len(good_trace) // 60)
    for cut in range(1, len(good_trace), step):
        path.write_bytes(good_trace[:cut])
        p = run_tool("report", str(path))
        assert p.returncode in (0, 2), (cut, p.stderr)
        assert "Sanitizer" not in p.stderr and "runtime error" not in p.stderr, p.stderr
        if p.returncode == 2:
            assert len(p.stderr.strip().splitlines()) == 1


def test_missing_file(tmp_path):
    assert_rejected(run_tool("report", str(tmp_path / "nope.msgpack")), "cannot open")


@pytest.mark.parametrize("args", [[], ["report"], ["report", "--bogus", "x"], ["dump"], ["frobnicate"],
                                  ["run"], ["run", "--block-ms", "x", "--", "true"]])
def test_usage_errors(args):
    p = run_tool(*args)
    assert p.returncode == 2
    assert p.stderr.strip(), "a usage error says why"


def test_good_trace_passes_under_asan(tmp_path, good_trace):
    path = tmp_path / "g.msgpack"
    path.write_bytes(good_trace)
    for args in (["report", str(path)], ["report", "--json", str(path)], ["dump", str(path)]):
        p = run_tool(*args)
        assert p.returncode == 0 and p.stderr == "", p.stderr
