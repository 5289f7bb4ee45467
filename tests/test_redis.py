"""An unmodified Debian redis-server under the shim."""
import shutil
import subprocess

import pytest

from conftest import Server, free_port, loop_threads, one_trace, report

pytestmark = pytest.mark.skipif(not shutil.which("redis-server"), reason="redis-server not installed")


def cli(port, *args, timeout=20):
    return subprocess.run(["redis-cli", "-h", "127.0.0.1", "-p", str(port), *args],
                          capture_output=True, text=True, timeout=timeout)


def start_redis(tmp_path, servers):
    port = free_port()
    cmd = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
           "--appendonly", "no", "--enable-debug-command", "yes", "--dir", str(tmp_path),
           "--daemonize", "no", "--logfile", str(tmp_path / "redis.log")]
    s = Server(cmd, tmp_path, port=port)
    servers.append(s)
    return s, port


def test_redis_debug_sleep_is_one_blocking_call_and_traffic_is_clean(tmp_path, servers):
    s, port = start_redis(tmp_path, servers)
    bench = subprocess.run(["redis-benchmark", "-h", "127.0.0.1", "-p", str(port), "-q",
                            "-n", "20000", "-c", "50", "-t", "get,set"],
                           capture_output=True, text=True, timeout=60)
    assert bench.returncode == 0, bench.stderr
    assert cli(port, "DEBUG", "SLEEP", "0.3").stdout.strip() == "OK"
    assert s.stop() == 0  # redis exits cleanly on SIGTERM
    tr = report(one_trace(tmp_path))["traces"][0]
    main = [t for t in loop_threads(tr) if t["tid"] == tr["pid"]]
    assert main, "redis main thread not seen as a loop"
    assert main[0]["iterations"] > 1000
    assert len(tr["blocking"]) == 1, tr["blocking"]
    b = tr["blocking"][0]
    assert b["tid"] == tr["pid"] and b["duration_ms"] >= 290
    assert b["call"] in ("nanosleep", "usleep", "clock_nanosleep")
