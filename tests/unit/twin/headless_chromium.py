"""A page opened in real headless Chromium, driven over the DevTools protocol on a pipe.

The pipe (``--remote-debugging-pipe``: commands on fd 3, replies on fd 4, each message JSON ended
by a NUL byte) needs no port and no websocket library. The browser records every request the
page makes, so a test can prove a page is self-contained.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import select
import shutil
import subprocess
import time
from pathlib import Path
from types import TracebackType
from typing import Any

CHROMIUM_MISSING = (
    "the HTML report test needs headless Chromium: `make chromium` installs the Debian package "
    "(apt-get install chromium), or set JOULESCALE_CHROMIUM to a Chromium or Chrome binary"
)
FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--hide-scrollbars", "--window-size=1200,900", "--remote-debugging-pipe",
)
"""Without the background-networking flags, Chromium calls home at start, which a closed network
refuses and which would count as requests."""


def chromium_binary() -> str:
    binary = os.environ.get("JOULESCALE_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if binary is None:
        raise RuntimeError(CHROMIUM_MISSING)
    return binary


class HeadlessChromium:
    """One browser with one page; ``open(path)`` loads a file and waits for its load event."""

    def __init__(self, profile_dir: Path, timeout_s: float = 60.0) -> None:
        self._profile_dir = profile_dir
        self._timeout_s = timeout_s
        self._next_id = 0
        self._buffer = b""
        self._events: list[dict[str, Any]] = []
        self._session = ""

    def __enter__(self) -> HeadlessChromium:
        commands_r, self._commands_w = os.pipe()
        self._replies_r, replies_w = os.pipe()
        # Above any fd the child's dup2 targets, so dup2(x, 3) never lands on its own source.
        child_in = fcntl.fcntl(commands_r, fcntl.F_DUPFD_CLOEXEC, 10)
        child_out = fcntl.fcntl(replies_w, fcntl.F_DUPFD_CLOEXEC, 10)
        os.close(commands_r)
        os.close(replies_w)

        def wire_pipe() -> None:
            os.dup2(child_in, 3)
            os.dup2(child_out, 4)

        self._process = subprocess.Popen(
            [chromium_binary(), *FLAGS, f"--user-data-dir={self._profile_dir}", "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            close_fds=False, preexec_fn=wire_pipe)  # the child wires fds 3 and 4 before exec
        os.close(child_in)
        os.close(child_out)
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        self._session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Network.enable", "Page.enable", "Runtime.enable"):
            self.call(domain)
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        try:
            self._send("Browser.close", {}, session="")
            self._process.wait(timeout=10)
        except (OSError, TimeoutError, subprocess.TimeoutExpired):
            pass  # a browser that will not close is killed below
        if self._process.poll() is None:
            self._process.kill()
            self._process.wait()
        os.close(self._commands_w)
        os.close(self._replies_r)

    def _send(self, method: str, params: dict[str, Any], session: str | None = None) -> int:
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params}
        if (self._session if session is None else session):
            message["sessionId"] = self._session if session is None else session
        os.write(self._commands_w, json.dumps(message).encode() + b"\0")
        return self._next_id

    def _receive(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._replies_r], [], [], left)[0]:
                raise TimeoutError("Chromium did not answer in time")
            chunk = os.read(self._replies_r, 1 << 20)
            if not chunk:
                raise RuntimeError("Chromium closed its DevTools pipe")
            self._buffer += chunk
        raw, self._buffer = self._buffer.split(b"\0", 1)
        message: dict[str, Any] = json.loads(raw)
        return message

    def call(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """Send a command to the page (the browser before it exists) and return its result."""
        sent = self._send(method, params or {})
        deadline = time.monotonic() + self._timeout_s
        while True:
            message = self._receive(deadline)
            if message.get("id") == sent:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                result: dict[str, Any] = message["result"]
                return result
            if "method" in message:
                self._events.append(message)

    def open(self, path: Path) -> None:
        self.call("Page.navigate", {"url": path.resolve().as_uri()})
        deadline = time.monotonic() + self._timeout_s
        while not any(e["method"] == "Page.loadEventFired" for e in self._events):
            message = self._receive(deadline)
            if "method" in message:
                self._events.append(message)

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page, promises awaited."""
        result = self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True,
                                                "awaitPromise": True})
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def screenshot(self, clip: dict[str, float] | None = None) -> bytes:
        """PNG of the whole page (or of ``clip``, in page coordinates), beyond the viewport."""
        if clip is None:
            size = self.call("Page.getLayoutMetrics")["cssContentSize"]
            clip = {"x": 0, "y": 0, "width": size["width"], "height": size["height"]}
        data = self.call("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True,
                                                    "clip": {**clip, "scale": 1}})["data"]
        return base64.b64decode(data)

    def requested_urls(self) -> list[str]:
        """Every URL the page asked for since the browser started (the page's own file included)."""
        return [e["params"]["request"]["url"] for e in self._events if e["method"] == "Network.requestWillBeSent"]
