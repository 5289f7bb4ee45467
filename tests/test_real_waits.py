"""Real servers whose loops wait where users do not look: nginx writing its
access log to a slow FIFO (a hooked write), gevent's greenlet stacks."""
import http.client
import os
import shutil
import signal
import subprocess
import threading
import time

import pytest

from conftest import Server, free_port, loop_threads, nginx_conf, one_trace, report, run_shim, traces



def slow_reader(path, stop, pause):
    """Reads the FIFO a pipe-full at a time, then pauses: a log shipper
    that falls behind."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    os.set_blocking(fd, True)
    try:
        while not stop.is_set():
            time.sleep(pause)
            os.set_blocking(fd, False)
            try:
                while os.read(fd, 1 << 16):
                    pass
            except BlockingIOError:
                pass
            os.set_blocking(fd, True)
    finally:
        os.close(fd)


@pytest.mark.skipif(not os.path.exists("/usr/sbin/nginx"), reason="nginx not installed")
def test_nginx_access_log_on_a_slow_fifo_blocks_its_loop_in_write(tmp_path, servers):
    port = free_port()
    fifo = tmp_path / "access.fifo"
    os.mkfifo(fifo)
    stop = threading.Event()
    reader = threading.Thread(target=slow_reader, args=(str(fifo), stop, 0.3), daemon=True)
    reader.start()
    time.sleep(0.1)                        # the reader is there before nginx opens the FIFO
    conf = tmp_path / "nginx.conf"
    conf.write_text(nginx_conf(tmp_path, port, workers=0, access_log=fifo))
    s = Server(["/usr/sbin/nginx", "-c", str(conf), "-p", str(tmp_path)], tmp_path, port=port)
    servers.append(s)
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        for _ in range(3000):              # ~100 bytes of log each: several pipe-fulls
            conn.request("GET", "/")
            assert conn.getresponse().read() == b"ok\n"
        conn.close()
        assert s.stop(signal.SIGQUIT) == 0
    finally:
        stop.set()
    tr = report(one_trace(tmp_path))["traces"][0]
    assert loop_threads(tr)
    waits = [b for b in tr["blocking"] if b["call"] in ("write", "writev")]
    assert waits, tr["blocking"]
    for b in waits:
        assert b["seen_by"] == "hook" and b["fd_kind"] == "pipe", b
        assert 10 <= b["duration_ms"] <= 2000, b
    # the reader pauses 300 ms: at least one write waited for most of that
    assert max(b["duration_ms"] for b in waits) >= 50, waits


GEVENT_APP = """
import gevent, gevent.monkey
gevent.monkey.patch_all()
import time

def worker(n):
    for _ in range(3):
        gevent.sleep(0.01)
        t = time.monotonic()
        while time.monotonic() - t < 0.05:   # CPU in a greenlet: a stall sampled on its stack
            pass

gevent.joinall([gevent.spawn(worker, i) for i in range(4)])
"""


@pytest.mark.skipif(subprocess.run(["/usr/bin/python3", "-c", "import gevent"],
                                   capture_output=True).returncode != 0, reason="python3-gevent not installed")
def test_gevent_stacks_end_at_the_greenlet_without_a_junk_frame(tmp_path):
    app = tmp_path / "app.py"
    app.write_text(GEVENT_APP)
    run_shim(["/usr/bin/python3", str(app)], tmp_path, options="stall_ms=20", timeout=60)
    (tr,) = [t for t in report(*traces(tmp_path))["traces"] if loop_threads(t)]
    stacks = [s.get("stack") or [] for s in tr["stalls"]] + [b.get("stack") or [] for b in tr["blocking"]]
    assert any(stacks), tr["stalls"]
    for st in stacks:
        for f in st:
            # the frame "below" a greenlet's stack is whatever its memory
            # held: no module maps it (the reader used to show it as
            # "[unknown]+0x8fb4e0dba8cdc000")
            assert f.get("module") != "[unknown]", st
            assert "libasyncshim" not in (f.get("module") or ""), st
