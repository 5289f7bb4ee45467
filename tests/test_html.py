"""`asyncshim report --html FILE`: the page is opened in Debian's headless
Chromium (tests/browser.py) and checked by what its script draws and builds,
not by text in the file; and it must not ask for anything from anywhere."""
import json
import os
import re
import subprocess
import time

import pytest

from browser import Browser
from conftest import ASAN_TOOL, EXAMPLES, TOOL, loop_threads, one_trace, prog, records, report, run_shim, shim_env
import gen_trace

LOOP = os.path.join(EXAMPLES, "loop")
CARD = "Object.fromEntries([...document.querySelectorAll('#cards .card')].map(c => [c.dataset.key, c.querySelector('.v').textContent]))"
TIMELINE = "Object.assign({}, document.getElementById('timeline').dataset)"
SITES = """[...document.querySelectorAll('#sites-table tbody tr')].map(r => ({
  call: r.querySelector('.call').textContent, fd_kind: r.querySelector('.fd-kind').textContent,
  count: r.querySelector('.count').textContent, total: r.querySelector('.total').textContent}))"""


def ms_of(text):
    """'150.2 ms' / '7.57 µs' / '1.2 s' -> milliseconds"""
    v, unit = text.replace(",", "").split()
    return float(v) * {"ns": 1e-6, "µs": 1e-3, "ms": 1, "s": 1e3}[unit]


def write_html(trace, out, *extra, tool=TOOL):
    p = subprocess.run([tool, "report", *extra, "--html", str(out), trace], capture_output=True, text=True,
                       timeout=120)
    assert p.returncode == 0, p.stderr
    return p


@pytest.fixture(scope="module")
def loop_page(tmp_path_factory):
    d = tmp_path_factory.mktemp("loop")
    p = run_shim([LOOP], d)
    waits = int(p.stdout.strip().split("=")[1])
    trace = one_trace(d)
    out = d / "report.html"
    text = write_html(trace, out, tool=ASAN_TOOL)
    assert "loop threads: 1" in text.stdout      # the text report still goes to stdout
    return waits, trace, out, report(trace)["traces"][0]


@pytest.fixture
def browser(tmp_path):
    with Browser(tmp_path) as b:
        yield b


def test_html_alongside_json(loop_page, tmp_path):
    _, trace, _, _ = loop_page
    out = tmp_path / "r.html"
    p = write_html(trace, out, "--json")
    assert json.loads(p.stdout)["traces"][0]["blocking"]
    assert out.stat().st_size > 1000


def test_page_is_self_contained(loop_page):
    _, _, out, _ = loop_page
    html = out.read_text()
    csp = re.search(r'<meta http-equiv="Content-Security-Policy" content="([^"]+)"', html)
    assert csp and "default-src 'none'" in csp.group(1)
    assert "connect-src" not in csp.group(1)
    assert not re.search(r"https?://", html)
    assert not re.search(r"<(link|iframe|object|embed|img)\b", html, re.I)
    assert not re.search(r"\s(src|href)\s*=", html, re.I)
    assert not re.search(r"@import|url\(", html)


def test_summary_timeline_and_table_are_rendered(loop_page, browser):
    waits, trace, out, rep = loop_page
    url = out.as_uri()
    browser.open(url)
    assert browser.eval("document.body.dataset.rendered") == "1"
    assert browser.errors == []
    # nothing was asked for but the page itself
    assert browser.requests == [url]
    cards = browser.eval(CARD)
    loop = loop_threads(rep)[0]
    assert cards["loops"] == "1"
    assert cards["iterations"] == str(waits - 1)
    assert cards["blocking"] == "2"
    assert ms_of(cards["lag-max"]) == pytest.approx(loop["lag_ms"]["max"], rel=0.01)
    assert ms_of(cards["lag-p99"]) == pytest.approx(loop["lag_ms"]["p99"], rel=0.01)
    assert ms_of(cards["blocking-time"]) == pytest.approx(sum(b["duration_ms"] for b in rep["blocking"]),
                                                          rel=0.01)
    tl = browser.eval(TIMELINE)
    # one row (the loop thread), every iteration drawn one by one, both blocking calls
    assert tl["rows"] == "1"
    assert int(tl["drawnIterations"]) == waits - 1
    assert tl["drawnBlocks"] == "2"
    assert int(browser.eval("document.getElementById('lag-hist').dataset.bars")) > 1
    sites = {s["call"]: s for s in browser.eval(SITES)}
    assert set(sites) == {"usleep", "read"}
    assert sites["read"]["fd_kind"] == "pipe" and sites["read"]["count"] == "1"
    assert ms_of(sites["usleep"]["total"]) >= 140 and ms_of(sites["read"]["total"]) >= 100
    # call sites are named by their own frames; the whole stack opens on a click
    labels = browser.eval("[...document.querySelectorAll('#sites-table tbody tr')].map(r => r.querySelector('.label code').textContent)")
    assert any(label.startswith("slow_sleep loop.c:") for label in labels)
    assert any(label.startswith("wait_for_helper loop.c:") for label in labels)
    opened = browser.eval("""(() => { const d = document.querySelector('#sites-table details');
        const before = d.open; d.querySelector('summary').click();
        return [before, d.open, [...d.querySelectorAll('li')].map(li => li.textContent)]; })()""")
    assert opened[0] is False and opened[1] is True
    assert any(f.startswith("run_loop ") for f in opened[2])
    # the 80 ms CPU burn on tick 15 is a stall: a card, a span on the timeline, a row in its table
    assert cards["stalls"] == "1" and ms_of(cards["stall-time"]) >= 60
    assert tl["drawnStalls"] == "1"
    stalls = browser.eval("[...document.querySelectorAll('#stalls-table tbody tr')].map(r => r.querySelector('.max').textContent)")
    assert len(stalls) == 1 and ms_of(stalls[0]) >= 60
    assert browser.eval("document.querySelector('#stalls-table code').textContent").startswith("burn_cpu")
    # the shim's estimate of its own cost (the last overhead record) has its cards
    last = [r for r in records(trace) if r["type"] == "overhead"][-1]
    assert ms_of(cards["overhead"]) == pytest.approx(last["loop_ns"] / 1e6, rel=0.01, abs=1e-4)
    assert ms_of(cards["collector-cpu"]) == pytest.approx(last["collector_cpu_ns"] / 1e6, rel=0.01, abs=1e-4)
    label = browser.eval("document.querySelector('[data-key=overhead] .k').textContent")
    assert f"{100 * last['loop_ns'] / last['loop_busy_ns']:.2f}% of their busy time" in label
    threads = browser.eval("[...document.querySelectorAll('#threads-table tbody tr')].map(r => r.cells[1].textContent)")
    assert threads == [str(rep["pid"])]
    # all of it is the script's work: the file itself has none of these elements
    html = out.read_text()
    assert 'id="sites-table"' not in html and "data-key=" not in html and "data-drawn" not in html


def hover(browser, x, y):
    browser.call("Input.dispatchMouseEvent", session=True, type="mouseMoved", x=x, y=y)
    time.sleep(0.05)
    return browser.eval("document.getElementById('tooltip').style.display === 'block' ? "
                        "document.getElementById('tooltip').textContent : ''")


def test_timeline_zooms_pans_and_explains(loop_page, browser):
    _, _, out, rep = loop_page
    browser.open(out.as_uri())
    tl = browser.eval(TIMELINE)
    full = int(tl["viewEnd"]) - int(tl["viewStart"])
    browser.eval("document.getElementById('zoom-in').click()")
    browser.eval("new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")
    tl = browser.eval(TIMELINE)
    assert int(tl["viewEnd"]) - int(tl["viewStart"]) == pytest.approx(full / 2, rel=0.01)
    assert int(tl["draws"]) >= 2
    browser.eval("document.getElementById('zoom-reset').click()")
    browser.eval("new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")
    tl = browser.eval(TIMELINE)
    assert int(tl["viewStart"]) == 0 and int(tl["viewEnd"]) == full
    # hover the blocking lane where the usleep is: the tooltip names it
    sleep = min(rep["blocking"], key=lambda b: b["at_ms"])
    box = browser.eval("(() => { const r = document.getElementById('timeline').getBoundingClientRect();"
                       " return [r.left, r.top]; })()")
    k = int(tl["plotWidth"]) / full
    mid_ns = (sleep["at_ms"] + sleep["duration_ms"] / 2) * 1e6
    x = box[0] + int(tl["labelWidth"]) + mid_ns * k
    y = box[1] + int(tl["axisHeight"]) + int(tl["laneHeight"]) + 4
    text = hover(browser, x, y)
    assert "usleep" in text and "lasted" in text, text
    # and the iteration lane above it: the iteration that holds the call
    assert "lag" in hover(browser, x, y - 10)
    # the mouse wheel zooms in around the cursor
    browser.call("Input.dispatchMouseEvent", session=True, type="mouseWheel", x=x, y=y, deltaX=0, deltaY=-400)
    browser.eval("new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")
    tl = browser.eval(TIMELINE)
    assert int(tl["viewEnd"]) - int(tl["viewStart"]) < full * 0.9
    assert int(tl["viewStart"]) < mid_ns < int(tl["viewEnd"])


def test_request_check_can_fail(tmp_path, browser):
    # control: a page that does load something is seen doing it
    page = tmp_path / "leaky.html"
    (tmp_path / "x.css").write_text("body{}")
    page.write_text('<!DOCTYPE html><link rel="stylesheet" href="x.css"><p>hi</p>')
    browser.open(page.as_uri())
    assert (tmp_path / "x.css").as_uri() in browser.requests


def test_bad_input(tmp_path, loop_page):
    _, trace, _, _ = loop_page
    bad = tmp_path / "bad.msgpack"
    bad.write_bytes(b"not a trace")
    out = tmp_path / "r.html"
    p = subprocess.run([ASAN_TOOL, "report", "--html", str(out), str(bad)], capture_output=True, text=True,
                       timeout=60)
    assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1 and not out.exists()
    p = subprocess.run([ASAN_TOOL, "report", "--html", str(tmp_path / "no" / "dir.html"), trace],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 2 and "cannot write" in p.stderr and len(p.stderr.strip().splitlines()) == 1
    p = subprocess.run([ASAN_TOOL, "report", "--html"], capture_output=True, text=True, timeout=60)
    assert p.returncode == 2


def test_one_million_events(tmp_path, browser):
    trace = str(tmp_path / "big.msgpack")
    want = gen_trace.generate(trace, events=1_000_000, tasks=20_000)
    out = tmp_path / "big.html"
    t0 = time.monotonic()
    write_html(trace, out)
    generate_s = time.monotonic() - t0
    # the page does not grow with the events: buckets, not iterations
    assert out.stat().st_size < 8_000_000
    load_s = browser.open(out.as_uri())
    assert browser.eval("document.body.dataset.rendered") == "1" and browser.errors == []
    render_ms = int(browser.eval("document.body.dataset.renderMs"))
    cards = browser.eval(CARD)
    assert cards["iterations"] == f"{sum(want['iterations'].values()):,}"
    assert cards["blocking"] == f"{want['blocks']:,}" and cards["loops"] == "4"
    assert cards["stalls"] == f"{want['stalls']:,}" and cards["tasks"] == "20,000"
    assert ms_of(cards["lag-max"]) == pytest.approx(want["max_lag_ns"] / 1e6, rel=0.01)
    tl = browser.eval(TIMELINE)
    assert tl["rows"] == "4"      # the loop threads; the idle worker has nothing to draw
    assert int(tl["drawnColumns"]) > 1000 and int(tl["drawnBlocks"]) > 1000
    assert int(tl["drawnStalls"]) > 100 and int(tl["drawnTasks"]) > 100
    notes = browser.eval("document.getElementById('timeline-note').textContent")
    assert "16,384 time buckets" in notes
    assert all(f"ran {n:,} iterations" in notes for n in want["iterations"].values())
    sites = {s["call"]: int(s["count"].replace(",", "")) for s in browser.eval(SITES)}
    assert sites == want["block_calls"]
    # zooming in far enough shows single iterations again
    draws = []
    for _ in range(14):
        browser.eval("document.getElementById('zoom-in').click()")
        browser.eval("new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")
        draws.append(float(browser.eval(TIMELINE)["lastDrawMs"]))
    assert int(browser.eval(TIMELINE)["drawnIterations"]) > 0
    print(f"\n1M events: report --html {generate_s:.2f} s, {out.stat().st_size / 1e6:.1f} MB page, "
          f"load {load_s:.2f} s, rendered {render_ms} ms after opening, redraw max {max(draws):.0f} ms")


def test_tasks_tree_and_task_lane(tmp_path, browser):
    run_shim([prog("coro_tasks"), "tree"], tmp_path)
    trace = one_trace(tmp_path)
    out = tmp_path / "tasks.html"
    write_html(trace, out, tool=ASAN_TOOL)
    browser.open(out.as_uri())
    assert browser.errors == [] and browser.eval(CARD)["tasks"] == "14"
    tree = browser.eval("[...document.querySelectorAll('#task-tree li')].map(li => "
                        "li.querySelector('.task code').textContent)")
    assert sorted(tree) == sorted(["coro_level1"] * 2 + ["coro_level2"] * 4 + ["coro_level3"] * 8)
    # children sit under their parent
    nested = browser.eval("[...document.querySelectorAll('#task-tree > ul > li > details > ul > li')].length")
    assert nested == 4
    tl = browser.eval(TIMELINE)
    # 14 tasks ran twice each (one suspension): 28 runs and 14 waits in the task lane
    assert int(tl["drawnTasks"]) == 42
    awaits = browser.eval("[...document.querySelectorAll('#await-table tbody tr')].map(r => r.cells[0].textContent)")
    assert set(awaits) == {"coro_level1", "coro_level2", "coro_level3"}


def test_cancelled_task_is_shown(tmp_path, browser):
    subprocess.run([prog("uv_tasks"), "cancel"], cwd=tmp_path, env=shim_env(extra={"UV_THREADPOOL_SIZE": "4"}),
                   check=True, capture_output=True, timeout=60)
    out = tmp_path / "uv.html"
    write_html(one_trace(tmp_path), out)
    browser.open(out.as_uri())
    assert browser.errors == []
    states = browser.eval("[...document.querySelectorAll('#task-tree .state')].map(s => s.textContent)")
    assert sorted(states) == ["cancelled"] + ["completed"] * 7
    assert "1 cancelled" in browser.eval("document.querySelector('.task-counts').textContent")


def test_two_processes_in_one_page(tmp_path, browser):
    run_shim([prog("fork_loop")], tmp_path)
    paths = sorted(str(p) for p in tmp_path.glob("asyncshim.*.msgpack"))
    assert len(paths) == 2
    out = tmp_path / "both.html"
    p = subprocess.run([TOOL, "report", "--html", str(out), *paths], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    browser.open(out.as_uri())
    assert browser.errors == []
    reps = report(*paths)["traces"]
    cards = browser.eval(CARD)
    assert cards["loops"] == "2"
    assert cards["iterations"] == str(sum(t["iterations"] for r in reps for t in loop_threads(r)))
    # one usleep in each process (a loaded machine may add a preempted call:
    # the page must show what the traces hold)
    assert all("usleep" in [b["call"] for b in r["blocking"]] for r in reps)
    nblocks = sum(len(r["blocking"]) for r in reps)
    assert cards["blocking"] == str(nblocks)
    pids = browser.eval("[...document.querySelectorAll('#threads-table tbody tr')].map(r => +r.cells[0].textContent)")
    assert sorted(set(pids)) == sorted(r["pid"] for r in reps)
    assert browser.eval(TIMELINE)["rows"] == "2" and browser.eval(TIMELINE)["drawnBlocks"] == str(nblocks)


def test_many_loop_threads_share_the_page_budget(tmp_path, browser):
    trace = str(tmp_path / "many.msgpack")
    want = gen_trace.generate(trace, events=400_000, loops=50, blocks=1_000)
    out = tmp_path / "many.html"
    write_html(trace, out)
    # 200,000 iterations drawn one by one at most; the other threads share 65,536 buckets
    assert out.stat().st_size < 8_000_000
    browser.open(out.as_uri())
    assert browser.errors == []
    tl = browser.eval(TIMELINE)
    assert tl["rows"] == "50"
    notes = browser.eval("document.getElementById('timeline-note').textContent")
    per = next(iter(want["iterations"].values()))
    exact = 200_000 // per
    assert notes.count("time buckets of") == 50 - exact
    assert f"drawn from {65_536 // (50 - exact):,} time buckets" in notes
