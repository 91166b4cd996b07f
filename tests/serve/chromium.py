"""Headless Chromium for the page tests: Debian's ``chromium`` (``scripts/install_chromium.sh``, run by ``make test``)
started on a page and driven over the Chrome DevTools Protocol with the ``websockets`` client."""

from __future__ import annotations

import contextlib
import itertools
import json
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from tests.serve.http_server import free_port

CHROMIUM = next((p for p in (shutil.which(n) for n in ("chromium", "chromium-browser")) if p), None)
#: Mark a test module with this: it is skipped where Chromium is not installed.
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="Debian chromium is not installed "
                                    "(scripts/install_chromium.sh installs it; make test runs it)")


def get(url: str, timeout: float = 2.0) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return bytes(r.read())


def wait(cond: Any, timeout: float, what: str, step: float = 0.25) -> Any:
    end = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < end:
        try:
            last = cond()
            if last:
                return last
        except OSError:
            pass
        time.sleep(step)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})")


def stop_process(proc: subprocess.Popen[Any]) -> None:
    """Terminate a process the test started, killing it if it has not gone after 10 s."""
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()


class Cdp:
    """The smallest Chrome DevTools Protocol client: Runtime.evaluate over one page's websocket."""

    def __init__(self, ws_url: str) -> None:
        from websockets.sync.client import connect

        self._stack = contextlib.ExitStack()
        self.ws = self._stack.enter_context(connect(ws_url, max_size=None, open_timeout=10))
        self.ids = itertools.count(1)

    def call(self, method: str, timeout: float = 30.0, **params: Any) -> dict[str, Any]:
        i = next(self.ids)
        self.ws.send(json.dumps({"id": i, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv(timeout=timeout))
            if msg.get("id") == i:
                if "error" in msg:
                    raise AssertionError(f"{method}: {msg['error']}")
                return dict(msg["result"])

    def eval(self, expression: str, timeout: float = 30.0) -> Any:
        r = self.call("Runtime.evaluate", timeout, expression=expression, awaitPromise=True, returnByValue=True)
        if "exceptionDetails" in r:
            raise AssertionError(f"{expression}: {r['exceptionDetails']}")
        return r["result"].get("value")

    def close(self) -> None:
        self._stack.close()


@contextlib.contextmanager
def chromium_page(url: str, profile: Path, ready: str, extra_args: Sequence[str] = ()) -> Iterator[Cdp]:
    """Headless Chromium showing ``url`` (its profile and log in ``profile``) until the JavaScript expression
    ``ready`` is true; yields the page's :class:`Cdp`; closes the browser after the block."""
    pytest.importorskip("websockets", reason="the websockets client drives Chromium (dev extras)")
    assert CHROMIUM is not None
    port = free_port()
    args = [CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
            "--no-default-browser-check", f"--user-data-dir={profile / 'profile'}", f"--remote-debugging-port={port}",
            "--autoplay-policy=no-user-gesture-required", *extra_args, url]
    log = open(profile / "chromium.log", "w+")  # noqa: SIM115
    proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
    cdp: Cdp | None = None
    origin = "/".join(url.split("/")[:3])
    try:
        def target() -> str | None:
            targets = json.loads(get(f"http://127.0.0.1:{port}/json/list"))
            return next((t["webSocketDebuggerUrl"] for t in targets
                         if t.get("type") == "page" and t.get("url", "").startswith(origin)), None)

        cdp = Cdp(wait(target, 30, "chromium's page target"))
        wait(lambda: cdp.eval(f"document.readyState === 'complete' && !!({ready})"), 20, f"the page at {url}")
        yield cdp
    finally:
        if cdp is not None:
            cdp.close()
        stop_process(proc)
        log.close()
