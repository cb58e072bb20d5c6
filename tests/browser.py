"""Debian's headless Chromium driven over the DevTools protocol, for tests that need a browser.

Nothing downloads a browser: :func:`tests.fixtures.require_binary` finds ``chromium`` (the
Debian package ``scripts/install-system-deps.sh`` installs). One :class:`Browser` is one
Chromium process with its own profile directory, in its own process group, stopped by pid;
it talks to one page over the page's DevTools websocket (``websocket-client``).

    with Browser(tmp_path) as browser:
        browser.navigate("http://127.0.0.1:8089/wirelab/")
        browser.wait_for("document.body.dataset.polls > 0")
        browser.screenshot(tmp_path / "view.png")
        assert not browser.console_errors
"""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path
from typing import Any

import httpx
import websocket

from tests.fixtures import require_binary
from wirelab.processes import ManagedProcess

__all__ = ["Browser", "BrowserError"]

#: Chromium's flags: headless, no sandbox (root in CI), and nothing that phones home.
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--no-first-run",
    "--hide-scrollbars",
    "--force-device-scale-factor=1",
    "--remote-debugging-port=0",
    "--remote-debugging-address=127.0.0.1",
)


class BrowserError(RuntimeError):
    """Chromium did not start, a command failed, or a wait ran out."""


class Browser:
    """One headless Chromium with one page; use as a context manager."""

    def __init__(self, tmp_path: Path, *, width: int = 1400, height: int = 1000) -> None:
        self.profile = tmp_path / "chromium-profile"
        self.width, self.height = width, height
        self.process = ManagedProcess(
            [
                require_binary("chromium"),
                *FLAGS,
                f"--user-data-dir={self.profile}",
                f"--window-size={width},{height}",
                "about:blank",
            ],
            name="chromium",
            log_path=tmp_path / "chromium.log",
        )
        self._socket: websocket.WebSocket | None = None
        self._next_id = 0
        #: ``Runtime.exceptionThrown``, ``console.error`` and error log entries, as text.
        self.console_errors: list[str] = []

    # -- life -----------------------------------------------------------------------------

    def __enter__(self) -> Browser:
        self.process.start()
        try:
            self._connect()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None
        self.process.stop(grace=5)

    def _connect(self, timeout: float = 30.0) -> None:
        port_file = self.profile / "DevToolsActivePort"
        self.process.wait_ready(port_file.is_file, timeout)
        port = int(port_file.read_text().splitlines()[0])
        pages: list[dict[str, Any]] = []

        def page_listed() -> bool:
            pages[:] = [
                target
                for target in httpx.get(f"http://127.0.0.1:{port}/json/list", timeout=2).json()
                if target.get("type") == "page"
            ]
            return bool(pages)

        self.process.wait_ready(page_listed, timeout)
        # No Origin header: Chromium refuses DevTools connections from unknown origins.
        self._socket = websocket.create_connection(
            pages[0]["webSocketDebuggerUrl"], timeout=timeout, suppress_origin=True
        )
        for domain in ("Page", "Runtime", "Log"):
            self.command(f"{domain}.enable")

    # -- the protocol ---------------------------------------------------------------------

    def command(self, method: str, timeout: float = 30.0, **params: Any) -> dict[str, Any]:
        """Send one command and return its result; events that arrive meanwhile are kept."""
        assert self._socket is not None, "the browser is not open"
        self._next_id += 1
        ident = self._next_id
        self._socket.send(json.dumps({"id": ident, "method": method, "params": params}))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._socket.settimeout(max(0.1, deadline - time.monotonic()))
            message = json.loads(self._socket.recv())
            if message.get("id") == ident:
                if "error" in message:
                    raise BrowserError(f"{method}: {message['error']}")
                return message.get("result", {})
            self._event(message)
        raise BrowserError(f"{method}: no answer in {timeout:g}s")

    def _event(self, message: dict[str, Any]) -> None:
        method, params = message.get("method"), message.get("params", {})
        if method == "Runtime.exceptionThrown":
            details = params.get("exceptionDetails", {})
            text = (details.get("exception") or {}).get("description") or details.get("text")
            self.console_errors.append(f"exception: {text}")
        elif method == "Runtime.consoleAPICalled" and params.get("type") == "error":
            args = [str(arg.get("value", arg.get("description", ""))) for arg in params["args"]]
            self.console_errors.append("console.error: " + " ".join(args))
        elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
            entry = params["entry"]
            self.console_errors.append(f"log: {entry.get('text')} {entry.get('url', '')}".strip())

    # -- what tests do ----------------------------------------------------------------------

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (awaited if it is a promise)."""
        result = self.command(
            "Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True
        )
        if "exceptionDetails" in result:
            raise BrowserError(f"{expression!r}: {result['exceptionDetails'].get('text')}")
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 30.0) -> Any:
        """Poll ``expression`` until it is truthy; its value."""
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            try:
                last = self.evaluate(expression)
            except BrowserError as exc:  # the page is between documents
                last = exc
            else:
                if last:
                    return last
            time.sleep(0.2)
        raise BrowserError(f"{expression!r} still {last!r} after {timeout:g}s")

    def navigate(self, url: str, timeout: float = 30.0) -> str:
        """Load ``url`` and wait until the document is complete; the URL it ended at."""
        self.command("Page.navigate", url=url)
        self.wait_for("document.readyState === 'complete' && location.href !== 'about:blank'",
                      timeout)  # fmt: skip
        return str(self.evaluate("location.href"))

    def screenshot(
        self, path: Path, *, full_page: bool = True, max_height: int | None = None
    ) -> Path:
        """A PNG of the page: the whole page (at most ``max_height`` pixels of it) by
        default, else just the window."""
        params: dict[str, Any] = {"format": "png"}
        if full_page:
            metrics = self.command("Page.getLayoutMetrics")
            size = metrics.get("cssContentSize") or metrics["contentSize"]
            height = int(size["height"])
            params["clip"] = {
                "x": 0,
                "y": 0,
                "width": max(self.width, int(size["width"])),
                "height": min(height, max_height) if max_height else height,
                "scale": 1,
            }
            params["captureBeyondViewport"] = True
        data = self.command("Page.captureScreenshot", **params)["data"]
        path.write_bytes(base64.b64decode(data))
        return path
