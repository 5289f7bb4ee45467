"""Each trace file is read once per command (issue 21, point 2): `report`
(text, --json, --html), `check`, `diff`, `export` (chrome, folded) and `dump`
open each trace they are given once.  The passes that must stream a trace
again to stay in bounded memory (chrome's emit pass, the HTML timeline, the
lag of each request) read the file already open, up to where the first,
validating pass stopped, so they see the very file it validated even if the
path is replaced meanwhile.

tests/libs/open_count.c, preloaded into the tool, counts the opens of each
.msgpack path and can rename another file over the first trace right after
its first open."""
import os
import shutil
import subprocess

import pytest

from conftest import BUILD, TOOL, one_trace, prog, run_shim

COUNTER = os.path.join(BUILD, "tests", "libopen_count.so")


@pytest.fixture(scope="module")
def two_traces(tmp_path_factory):
    """spans' trace (requests: their lag takes a second pass) and its stall run's"""
    d = tmp_path_factory.mktemp("read_once")
    out = []
    for name, args in (("spans", []), ("stall", ["stall"])):
        sub = d / name
        sub.mkdir()
        run_shim([prog("spans"), *args], sub)
        out.append(one_trace(sub))
    return out


def counted(args, tmp_path, env=None):
    """Run the tool with the counter; return (CompletedProcess, {path: opens})."""
    counts = tmp_path / "counts"
    if counts.exists():
        counts.unlink()
    full = dict(os.environ, LD_PRELOAD=COUNTER, OPEN_COUNT_FILE=str(counts), **(env or {}))
    p = subprocess.run([TOOL, *args], env=full, capture_output=True, text=True, timeout=120)
    opened = {}
    if counts.exists():
        for line in counts.read_text().splitlines():
            n, path = line.split(" ", 1)
            opened[path] = int(n)
    return p, opened


def test_each_command_opens_each_trace_once(two_traces, tmp_path):
    a, b = two_traces
    html = str(tmp_path / "page.html")
    commands = [
        (["report", a, b], 0),
        (["report", "--json", a, b], 0),
        (["report", "--html", html, a, b], 0),
        (["check", a, b], None),
        (["check", "--max-block-ms", "1", a, b], 1),
        (["diff", a, b], None),
        (["diff", "--json", a, b], None),
        (["export", "--format", "chrome", "-o", str(tmp_path / "c.json"), a, b], 0),
        (["export", "--format", "folded", a, b], 0),
        (["dump", a], 0),
    ]
    wrong = []
    for args, code in commands:
        p, opened = counted(args, tmp_path)
        assert code is None or p.returncode == code, (args, p.stderr)
        want = {path: 1 for path in args if path in (a, b)}
        if opened != want:
            wrong.append(f"{' '.join(args[:2])}: {opened}")
    assert not wrong, "traces opened more than once:\n" + "\n".join(wrong)


def replaced_output(cmd, trace, other, tmp_path, replace):
    """stdout (or the page) of CMD on a copy of TRACE; with REPLACE, OTHER is
    renamed over the copy right after the tool first opened it."""
    path = str(tmp_path / "t.msgpack")
    shutil.copy(trace, path)
    page = tmp_path / "page.html"
    env = {}
    if replace:
        shutil.copy(other, str(tmp_path / "other"))
        env["OPEN_REPLACE_WITH"] = str(tmp_path / "other")
    args = [a.replace("PAGE", str(page)) for a in cmd] + [path]
    p, _ = counted(args, tmp_path, env)
    assert p.returncode == 0, (cmd, p.stderr)
    return page.read_text() if "PAGE" in cmd else p.stdout


@pytest.mark.parametrize("cmd", [
    ["export", "--format", "chrome"],      # the emit pass
    ["report", "--json"],                  # the lag of each request
    ["report", "--html", "PAGE"],          # the timeline
], ids=["chrome", "request-lag", "html"])
def test_later_passes_read_the_file_the_first_pass_validated(two_traces, tmp_path, cmd):
    trace, other = two_traces
    want = replaced_output(cmd, trace, other, tmp_path, replace=False)
    got = replaced_output(cmd, trace, other, tmp_path, replace=True)
    assert got == want


def test_a_pipe_is_read_once_and_a_second_pass_says_so(two_traces):
    trace, _ = two_traces
    data = open(trace, "rb").read()
    # one pass: a pipe is read as it comes
    p = subprocess.run([TOOL, "dump", "/dev/stdin"], input=data, capture_output=True, timeout=60)
    assert p.returncode == 0 and p.stdout.count(b"\n") > 10, p.stderr
    # the lag of each request takes a second pass, which a pipe cannot give
    p = subprocess.run([TOOL, "report", "/dev/stdin"], input=data, capture_output=True, text=False,
                       timeout=60)
    err = p.stderr.decode()
    assert p.returncode == 2 and len(err.strip().splitlines()) == 1, err
    assert "/dev/stdin" in err and "pipe" in err and "give it a file" in err


def test_more_traces_than_the_fd_limit(two_traces, tmp_path):
    """A command done with a trace's file closes it: report and check (one
    pass each, then the model) and folded read more traces than the process
    may hold open at once."""
    trace, _ = two_traces
    paths = []
    for i in range(40):
        paths.append(str(tmp_path / f"t{i}.msgpack"))
        shutil.copy(trace, paths[-1])

    def few_fds():
        import resource
        resource.setrlimit(resource.RLIMIT_NOFILE, (20, 20))

    for args in (["report"], ["report", "--json"], ["check"], ["export", "--format", "folded"]):
        p = subprocess.run([TOOL, *args, *paths], capture_output=True, text=True, timeout=120,
                           preexec_fn=few_fds)
        # check: 1 (spans blocks for longer than the default limits), not 2
        assert p.returncode in (0, 1) and "cannot open" not in p.stderr, (args, p.stderr[-300:])
