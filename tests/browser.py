"""Drive Debian's headless Chromium over the DevTools protocol (CDP) from the
tests: open a page, evaluate script in it, see every request it makes, take
a screenshot.  Uses only Debian packages (chromium, python3-websocket).

    with Browser(tmp_path) as b:
        b.open("file:///.../report.html")
        b.eval("document.title")
        b.requests        # every URL the page asked for, the page's own included
"""
import base64
import itertools
import json
import os
import re
import shutil
import subprocess
import time

import websocket

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-extensions", "--disable-default-apps", "--mute-audio", "--hide-scrollbars"]


class BrowserError(AssertionError):
    pass


class Browser:
    def __init__(self, tmpdir, width=1400, height=1000, timeout=60):
        self.timeout = timeout
        self.profile = os.path.join(str(tmpdir), "chromium-profile")
        os.makedirs(self.profile, exist_ok=True)
        self.proc = subprocess.Popen(
            [CHROMIUM, *FLAGS, f"--user-data-dir={self.profile}", f"--window-size={width},{height}",
             "--remote-debugging-port=0", "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        url = self._devtools_url()
        self.ws = websocket.create_connection(url, timeout=timeout, suppress_origin=True)
        self.ids = itertools.count(1)
        self.events = []
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        for domain in ("Page", "Runtime", "Network", "Log"):
            self.call(f"{domain}.enable", session=True)
        self.call("Emulation.setDeviceMetricsOverride", session=True, width=width, height=height,
                  deviceScaleFactor=1, mobile=False)

    def _devtools_url(self):
        deadline = time.time() + self.timeout
        seen = b""
        while time.time() < deadline:
            line = self.proc.stderr.readline()
            if not line:
                break
            seen += line
            m = re.search(rb"DevTools listening on (ws://\S+)", line)
            if m:
                return m.group(1).decode()
        self.close()
        raise BrowserError(f"chromium did not start: {seen.decode(errors='replace')[-2000:]}")

    def call(self, method, session=False, **params):
        msg = {"id": next(self.ids), "method": method, "params": params}
        if session:
            msg["sessionId"] = self.session
        self.ws.send(json.dumps(msg))
        deadline = time.time() + self.timeout
        while time.time() < deadline:
            reply = json.loads(self.ws.recv())
            if reply.get("id") == msg["id"]:
                if "error" in reply:
                    raise BrowserError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)
        raise BrowserError(f"{method}: no answer in {self.timeout} s")

    def wait_event(self, method, since=0):
        deadline = time.time() + self.timeout
        while time.time() < deadline:
            for e in self.events[since:]:
                if e.get("method") == method:
                    return e
            since = len(self.events)
            self.events.append(json.loads(self.ws.recv()))
        raise BrowserError(f"no {method} in {self.timeout} s")

    def open(self, url):
        """Navigate and wait for the load event; returns seconds from navigation to load."""
        mark = len(self.events)
        t0 = time.monotonic()
        self.call("Page.navigate", session=True, url=url)
        self.wait_event("Page.loadEventFired", since=mark)
        return time.monotonic() - t0

    def eval(self, expression):
        r = self.call("Runtime.evaluate", session=True, expression=expression, returnByValue=True,
                      awaitPromise=True)
        if "exceptionDetails" in r:
            raise BrowserError(f"{expression}: {r['exceptionDetails']}")
        return r["result"].get("value")

    @property
    def requests(self):
        return [e["params"]["request"]["url"] for e in self.events
                if e.get("method") == "Network.requestWillBeSent"]

    @property
    def errors(self):
        """Uncaught exceptions and console errors of the page."""
        out = []
        for e in self.events:
            if e.get("method") == "Runtime.exceptionThrown":
                out.append(e["params"]["exceptionDetails"].get("text", "exception"))
            elif e.get("method") == "Runtime.consoleAPICalled" and e["params"]["type"] == "error":
                out.append(" ".join(str(a.get("value")) for a in e["params"]["args"]))
            elif e.get("method") == "Log.entryAdded" and e["params"]["entry"]["level"] == "error":
                out.append(e["params"]["entry"]["text"])
        return out

    def screenshot(self, path):
        data = self.call("Page.captureScreenshot", session=True, format="png", captureBeyondViewport=True)
        with open(path, "wb") as f:
            f.write(base64.b64decode(data["data"]))

    def close(self):
        try:
            if getattr(self, "ws", None):
                try:
                    self.ws.send(json.dumps({"id": 0, "method": "Browser.close"}))
                except Exception:
                    pass
                self.ws.close()
        finally:
            if self.proc.poll() is None:
                try:
                    self.proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
