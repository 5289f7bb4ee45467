"""The runtime never calls its own hooks (issue 21 point 3).

preload/ and collector/ make their own system calls (preload/sys.h), so
none of the shim's own work passes through a hook; the include graph of
hooks/, preload/ and collector/ has no cycle, and hooks/ see only the hook
API (preload/shim.h), not the runtime's internals (preload/runtime.h).
"""
import os
import re
import subprocess

from conftest import BUILD, LIB, ROOT, one_trace, prog, records

RUNTIME_DIRS = ("preload", "collector")
LAYERS = ("hooks", "preload", "collector")


def _sources(d):
    return sorted(f for f in os.listdir(os.path.join(ROOT, d)) if f.endswith(".c"))


def _nm(args, path):
    out = subprocess.run(["nm"] + args + [path], capture_output=True, text=True, check=True).stdout
    return {line.split()[-1].split("@")[0] for line in out.splitlines() if line.split()}


def _hooks():
    """What the library exports, less what the runtime defines itself (the
    span API) and the linker's section bounds: the interposed functions."""
    exported = _nm(["-D", "--defined-only"], LIB)
    own = set()
    for d in RUNTIME_DIRS:
        for c in _sources(d):
            own |= _nm(["--defined-only"], os.path.join(BUILD, d, c[:-2] + ".o"))
    return {s for s in exported - own if not s.startswith(("__start_", "__stop_"))}


def test_runtime_calls_no_hooked_function():
    hooks = _hooks()
    assert {"open", "read", "write", "close", "fcntl", "ioctl", "sigaction"} <= hooks
    found = {}
    for d in RUNTIME_DIRS:
        for c in _sources(d):
            obj = os.path.join(BUILD, d, c[:-2] + ".o")
            assert os.path.getmtime(obj) >= os.path.getmtime(os.path.join(ROOT, d, c)), obj + ": stale, run make"
            bad = _nm(["-u"], obj) & hooks
            if bad:
                found[f"{d}/{c}"] = sorted(bad)
    assert not found, f"the runtime calls hooked functions: {found}"


INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)


def _include_graph():
    """file -> the project files it includes (quoted includes, resolved as
    the compiler does: next to the file, then -Ipreload, -Iinclude)."""
    graph = {}
    for d in LAYERS:
        for f in sorted(os.listdir(os.path.join(ROOT, d))):
            if not f.endswith((".c", ".h")):
                continue
            path = os.path.join(d, f)
            with open(os.path.join(ROOT, path)) as fh:
                names = INCLUDE.findall(fh.read())
            deps = set()
            for n in names:
                for base in (d, "preload", "include"):
                    cand = os.path.normpath(os.path.join(base, n))
                    if os.path.exists(os.path.join(ROOT, cand)):
                        deps.add(cand)
                        break
                else:
                    raise AssertionError(f"{path}: cannot resolve #include \"{n}\"")
            graph[path] = deps
    return graph


def _cycle(graph):
    """One cycle of GRAPH as a list of nodes, or None."""
    state = {}

    def visit(n, stack):
        state[n] = 1
        stack.append(n)
        for m in sorted(graph.get(n, ())):
            if state.get(m) == 1:
                return stack[stack.index(m):] + [m]
            if not state.get(m):
                c = visit(m, stack)
                if c:
                    return c
        stack.pop()
        state[n] = 2
        return None

    for n in sorted(graph):
        if not state.get(n):
            c = visit(n, [])
            if c:
                return c
    return None


def test_include_graph_has_no_cycle():
    files = _include_graph()
    assert _cycle(files) is None, _cycle(files)
    layer = lambda p: p.split("/")[0]
    dirs = {}
    for f, deps in files.items():
        for g in deps:
            if layer(g) in LAYERS and layer(g) != layer(f):
                dirs.setdefault(layer(f), set()).add(layer(g))
    assert _cycle(dirs) is None, f"folders include each other: {_cycle(dirs)} ({dirs})"


def test_hooks_see_only_the_hook_api():
    files = _include_graph()

    def reach(f, seen):
        for g in files.get(f, ()):
            if g not in seen:
                seen.add(g)
                reach(g, seen)
        return seen

    internals = re.compile(r"struct as_config \{|\bas_(collector_lock|trace_create|shm_init|gate_init|registry_lock)\(")
    for f in files:
        if f.startswith("hooks/"):
            inside = reach(f, set())
            assert "preload/runtime.h" not in inside, f + " includes the runtime's internals"
            assert not any(g.startswith("collector/") for g in inside), f
            for h in inside:
                with open(os.path.join(ROOT, h)) as fh:
                    m = internals.search(fh.read())
                assert not m, f"{f}: {h} declares the runtime's {m.group(0)}"


def test_runtime_work_passes_through_no_hook(tmp_path):
    # a library after the shim sees the calls the shim makes, itself or
    # through its hooks (tests/libs/spy_io.c): the program makes none, so
    # its registration, the blocking call's stack, the stall sample and the
    # trace must all be done without them
    env = dict(os.environ, LD_PRELOAD=LIB + ":" + os.path.join(BUILD, "tests", "libspy_io.so"))
    env.pop("ASYNCSHIM_OPTIONS", None)
    p = subprocess.run([prog("quiet_loop")], cwd=tmp_path, env=env, capture_output=True, text=True,
                       timeout=60, check=True)
    assert "spy_io:" not in p.stderr, p.stderr
    recs = records(one_trace(tmp_path))
    assert [r["call"] for r in recs if r["type"] == "block"] == ["usleep"]
