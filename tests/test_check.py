"""CI gating: `asyncshim check` (thresholds, suppressions, JUnit), the
in-process gate (gate=1:exitcode=N:suppress=FILE) and `asyncshim diff`.

Tests marked `needs_stacks` depend on call stacks in the trace (the stacks
support): they name call sites by function, which only a stack can do."""
import json
import os
import subprocess
import xml.etree.ElementTree as ET

import pytest

from conftest import ASAN_TOOL, EXAMPLES, TOOL, one_trace, prog, report, run_shim, shim_env

LOOP = os.path.join(EXAMPLES, "loop")
BLOCKER = prog("blocker")


def tool(*args, asan=False):
    env = dict(os.environ, ASAN_OPTIONS="detect_leaks=1:abort_on_error=0",
               UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1")
    return subprocess.run([ASAN_TOOL if asan else TOOL, *args], capture_output=True, text=True,
                          timeout=120, env=env)


def has_stacks(path):
    return any(b["stack"] for b in report(path)["traces"][0]["blocking"])


def needs_stacks(path):
    if not has_stacks(path):
        pytest.skip("needs call stacks in the trace (stacks support, issue 4): blocking calls have no stack")


@pytest.fixture(scope="module")
def loop_trace(tmp_path_factory):
    d = tmp_path_factory.mktemp("loop")
    run_shim([LOOP], d)
    return one_trace(d)


def blocker_trace(d, *args, options=None):
    d.mkdir(parents=True, exist_ok=True)
    run_shim([BLOCKER, *args], d, options=options)
    return one_trace(d)


# ---- check: thresholds ----

def test_max_block_100_fails_and_lists_both_blocking_calls(loop_trace):
    p = tool("check", "--max-block-ms", "100", loop_trace, asan=True)
    assert p.returncode == 1, p.stdout + p.stderr
    out = p.stdout
    assert "FAIL max-block-ms 100: 2 blocking calls longer than 100 ms" in out
    usleep = next(line for line in out.splitlines() if line.strip().startswith("usleep "))
    read = next(line for line in out.splitlines() if line.strip().startswith("read "))
    # call, duration, thread, count of repeats
    assert "thread loop (tid" in usleep and usleep.endswith("1 time")
    assert float(usleep.split()[1]) >= 140
    assert "fd 3 pipe" in read or " pipe" in read
    assert p.stderr == ""


def test_max_block_100_names_both_call_sites(loop_trace):
    needs_stacks(loop_trace)
    p = tool("check", "--max-block-ms", "100", loop_trace)
    assert p.returncode == 1
    lines = p.stdout.splitlines()
    # each violation is followed by the project's first frames: function file:line
    at = {lines[i].split()[0]: lines[i + 1] for i in range(len(lines) - 1)
          if lines[i + 1].strip().startswith("at ")}
    assert "slow_sleep loop.c:" in at["usleep"]
    assert "wait_for_helper loop.c:" in at["read"]


def test_max_block_1000_passes(loop_trace):
    p = tool("check", "--max-block-ms", "1000", loop_trace, asan=True)
    assert p.returncode == 0, p.stdout
    assert "ok   max-block-ms 1000" in p.stdout and "asyncshim check: pass" in p.stdout


def test_no_threshold_means_no_blocking_call_at_all(loop_trace, tmp_path):
    assert tool("check", loop_trace).returncode == 1
    clean = blocker_trace(tmp_path / "clean")
    p = tool("check", clean)
    assert p.returncode == 0, p.stdout
    assert "ok   max-blocking 0: 0 blocking calls" in p.stdout


def test_lag_p99(loop_trace):
    # the example loop's slowest iterations hold a 150 ms sleep
    fail = tool("check", "--max-lag-p99-ms", "100", loop_trace)
    assert fail.returncode == 1
    assert "FAIL max-lag-p99-ms 100: 1 loop thread with p99 lag over 100 ms" in fail.stdout
    assert tool("check", "--max-lag-p99-ms", "5000", loop_trace).returncode == 0


def test_stalls(loop_trace, tmp_path):
    # the example loop burns 80 ms of CPU in burn_cpu on tick 15
    p = tool("check", "--max-stall-ms", "50", loop_trace, asan=True)
    assert p.returncode == 1, p.stdout
    assert "FAIL max-stall-ms 50: 1 stall longer than 50 ms" in p.stdout
    assert tool("check", "--max-stall-ms", "5000", loop_trace).returncode == 0
    needs_stacks(loop_trace)
    assert "at burn_cpu" in p.stdout
    # burn_cpu may be compiled as a clone (burn_cpu.isra.0): the source name matches it
    supp = tmp_path / "stall.supp"
    supp.write_text("fun:burn_cpu\n")
    p = tool("check", "--max-stall-ms", "50", "--suppress", str(supp), loop_trace)
    assert p.returncode == 0, p.stdout
    assert "1 suppressed" in p.stdout
    # a rule restricted to a call never matches a stall
    supp.write_text("call:* fun:burn_cpu\n")
    assert tool("check", "--max-stall-ms", "50", "--suppress", str(supp), loop_trace).returncode == 1


def test_several_traces_are_judged_together(tmp_path):
    a = blocker_trace(tmp_path / "a", "--block-ms", "30")
    b = blocker_trace(tmp_path / "b", "--block-ms", "30")
    # one blocking call each: fine alone, too many together
    assert tool("check", "--max-blocking", "1", a).returncode == 0
    p = tool("check", "--max-blocking", "1", a, b)
    assert p.returncode == 1
    assert "2 traces" in p.stdout and "FAIL max-blocking 1: 2 blocking calls, at most 1 allowed" in p.stdout


# ---- suppressions ----

def test_suppressing_both_functions_passes_and_counts(loop_trace, tmp_path):
    needs_stacks(loop_trace)
    supp = tmp_path / "loop.supp"
    supp.write_text("# the example's deliberate mistakes\n"
                    "fun:slow_sleep\n"
                    "\n"
                    "call:read fun:wait_for_*   # only the pipe read\n")
    p = tool("check", "--max-block-ms", "100", "--suppress", str(supp), loop_trace, asan=True)
    assert p.returncode == 0, p.stdout
    lines = p.stdout.splitlines()
    assert any(f"{supp}:2" in line and "fun:slow_sleep" in line and line.endswith("1 suppressed")
               for line in lines), p.stdout
    assert any(f"{supp}:4" in line and "call:read fun:wait_for_*" in line and line.endswith("1 suppressed")
               for line in lines), p.stdout
    assert "2 suppressed" in lines[0]
    assert p.stderr == ""


def test_rule_restricted_to_another_call_does_not_suppress(loop_trace, tmp_path):
    needs_stacks(loop_trace)
    supp = tmp_path / "s.supp"
    supp.write_text("call:write fun:slow_sleep\n")
    p = tool("check", "--max-block-ms", "100", "--suppress", str(supp), loop_trace)
    assert p.returncode == 1
    assert "matched nothing" in p.stderr


def test_rule_matching_nothing_is_warned_about(loop_trace, tmp_path):
    supp = tmp_path / "none.supp"
    supp.write_text("fun:no_such_function_anywhere\nmod:libnothing.so*\n")
    p = tool("check", "--max-block-ms", "1000", "--suppress", str(supp), loop_trace, asan=True)
    assert p.returncode == 0
    warnings = p.stderr.strip().splitlines()
    assert len(warnings) == 2, p.stderr
    assert f"warning: {supp}:1: suppression 'fun:no_such_function_anywhere' matched nothing" in warnings[0]
    assert f"{supp}:2" in warnings[1] and "mod:libnothing.so*" in warnings[1]
    assert "0 suppressed" in p.stdout


# ---- JUnit ----

def test_junit_has_one_testcase_per_check_and_the_failures(loop_trace, tmp_path):
    xml = tmp_path / "check.xml"
    p = tool("check", "--max-block-ms", "100", "--max-lag-p99-ms", "5000", "--max-blocking", "5",
             "--junit", str(xml), loop_trace, asan=True)
    assert p.returncode == 1
    root = ET.parse(xml).getroot()
    suite = root if root.tag == "testsuite" else root.find("testsuite")
    assert suite.get("tests") == "3" and suite.get("failures") == "1"
    cases = {c.get("name"): c for c in suite.findall("testcase")}
    assert set(cases) == {"max-block-ms 100", "max-lag-p99-ms 5000", "max-blocking 5"}
    assert all(c.get("classname") == "asyncshim.check" for c in cases.values())
    failure = cases["max-block-ms 100"].find("failure")
    assert failure is not None and failure.get("message") == "2 blocking calls longer than 100 ms"
    assert "usleep" in failure.text and "read" in failure.text and loop_trace in failure.text
    assert cases["max-lag-p99-ms 5000"].find("failure") is None
    assert cases["max-blocking 5"].find("failure") is None
    if has_stacks(loop_trace):      # the call site and its stack
        assert "slow_sleep" in failure.text and "wait_for_helper" in failure.text
        assert "#0 " in failure.text and "run_loop" in failure.text


def test_junit_of_a_passing_run(loop_trace, tmp_path):
    xml = tmp_path / "ok.xml"
    assert tool("check", "--max-block-ms", "1000", "--junit", str(xml), loop_trace).returncode == 0
    suite = ET.parse(xml).getroot().find("testsuite")
    assert suite.get("failures") == "0"
    assert [c.get("name") for c in suite.findall("testcase")] == ["max-block-ms 1000"]


# ---- the in-process gate ----

def gate_run(tmp_path, args, options):
    tmp_path.mkdir(parents=True, exist_ok=True)
    return subprocess.run([BLOCKER, *args], cwd=tmp_path, env=shim_env(options), capture_output=True,
                          text=True, timeout=60)


def test_gate_fails_a_blocking_program_with_the_exit_code(tmp_path):
    p = gate_run(tmp_path, ["--block-ms", "50"], "gate=1:exitcode=42")
    assert p.returncode == 42, p.stderr
    assert p.stdout == "ticks=20\n"            # the program's stdio is flushed first
    assert "asyncshim gate: 1 blocking call on loop threads (>= 10 ms)" in p.stderr
    assert "usleep" in p.stderr
    # the trace was written before the gate exited
    assert report(one_trace(tmp_path))["traces"][0]["blocking"][0]["call"] == "usleep"


def test_gate_passes_a_program_that_does_not_block(tmp_path):
    p = gate_run(tmp_path, [], "gate=1:exitcode=42")
    assert p.returncode == 0 and p.stderr == ""


def test_gate_default_exit_code_and_block_ms(tmp_path):
    assert gate_run(tmp_path / "a", ["--block-ms", "30"], "gate=1").returncode == 66
    # 30 ms is under block_ms=100: not a blocking call
    assert gate_run(tmp_path / "b", ["--block-ms", "30"], "gate=1:block_ms=100").returncode == 0


@pytest.mark.parametrize("how", ["--exit", "--return"])
def test_gate_keeps_the_programs_own_failure(tmp_path, how):
    p = gate_run(tmp_path, ["--block-ms", "50", how, "3"], "gate=1:exitcode=42")
    assert p.returncode == 3
    assert "asyncshim gate" not in p.stderr


def test_gate_judges_exit_status_as_the_shell_sees_it(tmp_path):
    # exit(256) ends with status 0: a passing program, so the gate applies
    assert gate_run(tmp_path, ["--block-ms", "50", "--exit", "256"], "gate=1:exitcode=42").returncode == 42


def test_gate_suppressions(tmp_path):
    probe = gate_run(tmp_path / "probe", ["--block-ms", "50"], None)
    assert probe.returncode == 0
    needs_stacks(one_trace(tmp_path / "probe"))
    supp = tmp_path / "gate.supp"
    supp.write_text("fun:steady_block\n")
    p = gate_run(tmp_path / "s", ["--block-ms", "50"], f"gate=1:exitcode=42:suppress={supp}")
    assert p.returncode == 0, p.stderr
    # a suppression of another function leaves the finding, and the report names the site
    supp.write_text("fun:extra_block\n")
    p = gate_run(tmp_path / "t", ["--block-ms", "50"], f"gate=1:exitcode=42:suppress={supp}")
    assert p.returncode == 42
    assert "steady_block blocker.c:" in p.stderr
    assert "'fun:extra_block': 0 suppressed" in p.stderr


def test_gate_with_a_bad_suppression_file_disables_the_shim(tmp_path):
    p = gate_run(tmp_path, ["--block-ms", "50"], "gate=1:suppress=/nonexistent/x.supp")
    assert p.returncode == 0
    assert p.stderr.count("\n") == 1 and "cannot read suppressions" in p.stderr and "disabled" in p.stderr
    bad = tmp_path / "bad.supp"
    bad.write_text("fun:ok\nfrob:x\n")
    p = gate_run(tmp_path, ["--block-ms", "50"], f"gate=1:suppress={bad}")
    assert p.returncode == 0 and f"{bad}:2" in p.stderr


@pytest.mark.parametrize("opt", ["gate=2", "exitcode=0", "exitcode=256", "exitcode=x", "suppress="])
def test_gate_bad_option_values(tmp_path, opt):
    p = gate_run(tmp_path, ["--block-ms", "50"], f"gate=1:{opt}")
    assert p.returncode == 0 and p.stdout == "ticks=20\n"
    assert p.stderr.count("\n") == 1 and opt.split("=")[0] in p.stderr


# ---- diff ----

@pytest.fixture(scope="module")
def diff_traces(tmp_path_factory):
    d = tmp_path_factory.mktemp("diff")
    base = blocker_trace(d / "base", "--block-ms", "100")
    same = blocker_trace(d / "same", "--block-ms", "100")
    more = blocker_trace(d / "more", "--block-ms", "100", "--extra-ms", "50")
    return base, same, more


def test_diff_of_two_runs_of_the_same_program_passes(diff_traces):
    base, same, _ = diff_traces
    p = tool("diff", base, same, asan=True)
    assert p.returncode == 0, p.stdout
    assert "asyncshim diff: no regression" in p.stdout


def test_diff_flags_the_added_blocking_call(diff_traces):
    base, _, more = diff_traces
    p = tool("diff", base, more, asan=True)
    assert p.returncode == 1, p.stdout
    assert "REGRESSION" in p.stdout
    j = tool("diff", "--json", base, more)
    assert j.returncode == 1
    d = json.loads(j.stdout)
    assert d["regressions"] >= 1 and d["tolerance_pct"] == 25
    flagged = [s for s in d["sites"] if s["regression"]]
    assert flagged and all(s["call"] == "usleep" for s in flagged)
    assert sum(s["new"]["count"] - s["base"]["count"] for s in d["sites"]) == 1


def test_diff_names_the_new_site(diff_traces):
    base, _, more = diff_traces
    needs_stacks(more)
    p = tool("diff", base, more)
    assert p.returncode == 1
    lines = p.stdout.splitlines()
    i = next(i for i, line in enumerate(lines) if "REGRESSION (new site)" in line)
    assert "extra_block blocker.c:" in lines[i + 1]
    d = json.loads(tool("diff", "--json", base, more).stdout)
    new = [s for s in d["sites"] if s["reason"] == "new site"]
    assert len(new) == 1 and new[0]["frames"][0]["function"] == "extra_block"
    assert new[0]["new"]["count"] == 1 and new[0]["new"]["total_ms"] >= 45
    steady = [s for s in d["sites"] if "steady_block" in s["site"]]
    assert len(steady) == 1 and not steady[0]["regression"]


def test_diff_new_site_whatever_the_tolerance(diff_traces):
    base, _, more = diff_traces
    needs_stacks(more)
    assert tool("diff", "--tolerance", "1000", "--floor-ms", "1000", base, more).returncode == 1
    # reversed: the extra call went away, which is no regression
    assert tool("diff", more, base).returncode == 0


def test_diff_tolerance_and_floor(diff_traces):
    base, _, more = diff_traces
    # a generous tolerance and floor hide the lag and time the extra 50 ms add
    # (only a new call site, which needs stacks to be told apart, would remain)
    p = tool("diff", "--json", "--tolerance", "1000", "--floor-ms", "1000", base, more)
    d = json.loads(p.stdout)
    assert all(not lp["regressions"] for lp in d["loops"])
    assert all(s["regression"] == (s["reason"] == "new site") for s in d["sites"])
    assert d["floor_ms"] == 1000 and d["tolerance_pct"] == 1000


# ---- bad input: one clear line, exit 2 (AddressSanitizer build) ----

def assert_rejected(p, *words):
    assert p.returncode == 2, (p.returncode, p.stdout, p.stderr)
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1, p.stderr
    for w in words:
        assert w in lines[0], (w, lines[0])
    assert "Sanitizer" not in p.stderr and "runtime error" not in p.stderr


@pytest.fixture(scope="module")
def truncated(loop_trace, tmp_path_factory):
    path = tmp_path_factory.mktemp("bad") / "truncated.msgpack"
    path.write_bytes(open(loop_trace, "rb").read()[:40])   # inside the header: nothing to read
    return str(path)


def test_check_bad_input(loop_trace, truncated, tmp_path):
    missing = str(tmp_path / "missing.msgpack")
    assert_rejected(tool("check", missing, asan=True), missing, "cannot open")
    assert_rejected(tool("check", loop_trace, truncated, asan=True), truncated, "truncated")
    for flag, value in [("--max-block-ms", "abc"), ("--max-block-ms", "-5"), ("--max-blocking", "1.5"),
                        ("--max-lag-p99-ms", ""), ("--max-stall-ms", "inf")]:
        assert_rejected(tool("check", flag, value, loop_trace, asan=True), flag, "bad value")
    assert_rejected(tool("check", "--max-block-ms", asan=True), "usage")
    assert_rejected(tool("check", "--frobnicate", loop_trace, asan=True), "--frobnicate")
    assert_rejected(tool("check", asan=True), "usage")
    assert_rejected(tool("check", "--suppress", missing, loop_trace, asan=True), missing, "cannot read")
    bad = tmp_path / "bad.supp"
    for text, word in [("fun:ok\nblah\n", ":2:"), ("call:read\n", "needs fun:"), ("fun:\n", "empty"),
                       ("fun:a fun:b\n", "twice"), ("x" * 5000 + "\n", "too long")]:
        bad.write_text(text)
        assert_rejected(tool("check", "--suppress", str(bad), loop_trace, asan=True), str(bad), word)
    unwritable = str(tmp_path / "no" / "such" / "dir" / "j.xml")
    assert_rejected(tool("check", "--junit", unwritable, loop_trace, asan=True), "JUnit", unwritable)


def test_diff_bad_input(loop_trace, truncated, tmp_path):
    missing = str(tmp_path / "missing.msgpack")
    assert_rejected(tool("diff", missing, loop_trace, asan=True), missing, "cannot open")
    assert_rejected(tool("diff", loop_trace, missing, asan=True), missing, "cannot open")
    assert_rejected(tool("diff", loop_trace, truncated, asan=True), truncated, "truncated")
    for value in ["abc", "-1", "", "nan"]:
        assert_rejected(tool("diff", "--tolerance", value, loop_trace, loop_trace, asan=True),
                        "--tolerance", "bad value")
    assert_rejected(tool("diff", "--floor-ms", "x", loop_trace, loop_trace, asan=True), "--floor-ms")
    assert_rejected(tool("diff", loop_trace, asan=True), "usage")
    assert_rejected(tool("diff", loop_trace, loop_trace, loop_trace, asan=True), "usage")
    assert_rejected(tool("diff", "--bogus", loop_trace, loop_trace, asan=True), "--bogus")


def test_good_input_is_clean_under_asan(loop_trace, tmp_path):
    supp = tmp_path / "s.supp"
    supp.write_text("fun:slow_sleep\n")
    for args in (["check", "--max-block-ms", "100", "--max-lag-p99-ms", "1", "--max-stall-ms", "1",
                  "--max-blocking", "0", "--suppress", str(supp), "--junit", str(tmp_path / "j.xml"), loop_trace],
                 ["diff", loop_trace, loop_trace], ["diff", "--json", loop_trace, loop_trace]):
        p = tool(*args, asan=True)
        assert p.returncode in (0, 1)
        assert "Sanitizer" not in p.stderr and "runtime error" not in p.stderr, p.stderr
