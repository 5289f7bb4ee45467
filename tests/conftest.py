"""Shared helpers: run programs under the shim and read what it wrote.

Every program that loads the shim runs in its own process with a timeout,
in a fresh temporary directory, so one crash or hang names itself."""
import glob
import json
import os
import socket
import subprocess
import time

import msgpack
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.path.join(ROOT, "build")
LIB = os.path.join(BUILD, "libasyncshim.so")
TOOL = os.path.join(BUILD, "asyncshim")
ASAN_TOOL = os.path.join(BUILD, "asan", "asyncshim")
PROGS = os.path.join(BUILD, "tests")
EXAMPLES = os.path.join(BUILD, "examples")


def prog(name):
    return os.path.join(PROGS, name)


def shim_env(options=None, extra=None):
    env = dict(os.environ)
    env["LD_PRELOAD"] = LIB
    if options is not None:
        env["ASYNCSHIM_OPTIONS"] = options
    else:
        env.pop("ASYNCSHIM_OPTIONS", None)
    env.update(extra or {})
    return env


def run_shim(cmd, cwd, options=None, timeout=60, check=True, **kw):
    """Run cmd under LD_PRELOAD in cwd; return the CompletedProcess."""
    p = subprocess.run(cmd, cwd=cwd, env=shim_env(options), capture_output=True,
                       text=True, timeout=timeout, **kw)
    if check and p.returncode != 0:
        raise AssertionError(f"{cmd} exited {p.returncode}: {p.stderr}")
    return p


def traces(d):
    return sorted(glob.glob(os.path.join(str(d), "asyncshim.*.msgpack")))


def one_trace(d):
    t = traces(d)
    assert len(t) == 1, f"expected one trace in {d}, found {t}"
    return t[0]


def records(path):
    with open(path, "rb") as f:
        return list(msgpack.Unpacker(f, raw=False, strict_map_key=False))


def report(*paths, tool=TOOL):
    p = subprocess.run([tool, "report", "--json", *paths], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


def loop_threads(tr):
    return [t for t in tr["threads"] if t["loop"]]


def nginx_conf(d, port, workers=2, access_log="off"):
    """An nginx config that keeps everything in D and serves "ok" on PORT:
    WORKERS prefork workers, or 0 for one process with no master."""
    procs = f"master_process on;\nworker_processes {workers};" if workers else "master_process off;"
    return f"""
daemon off;
{procs}
pid {d}/nginx.pid;
error_log {d}/error.log;
events {{ worker_connections 64; }}
http {{
    access_log {access_log};
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    server {{
        listen 127.0.0.1:{port};
        location / {{ return 200 "ok\\n"; }}
    }}
}}
"""


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, proc, timeout=10):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"server exited early with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"port {port} never opened")


class Server:
    """A server process started under the shim, always cleaned up by PID."""

    def __init__(self, cmd, cwd, options=None, port=None):
        self.proc = subprocess.Popen(cmd, cwd=cwd, env=shim_env(options),
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        if port:
            wait_port(port, self.proc)

    def stop(self, sig=15, timeout=15):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def _shm_rings():
    try:
        return {f for f in os.listdir("/dev/shm") if f.startswith("asyncshim.")}
    except OSError:
        return set()


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False


@pytest.fixture(autouse=True)
def shm_hygiene():
    """Rings a test's killed processes left in /dev/shm (servers killed at
    teardown, SIGKILL tests that do not recover) are removed, so runs do not
    fill the machine's memory."""
    before = _shm_rings()
    yield
    for f in _shm_rings() - before:
        if not _alive(int(f.split(".")[1])):
            try:
                os.unlink(os.path.join("/dev/shm", f))
            except OSError:
                pass


@pytest.fixture
def servers():
    started = []
    yield started
    for s in started:
        if s.proc.poll() is None:
            s.proc.kill()
            s.proc.wait()
