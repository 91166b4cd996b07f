"""The demo page against a server with API keys, in headless Chromium: without a key the page says it needs one;
with the key in its "API key" field (kept in sessionStorage) it starts a session and hangs it up.

The dev server (``python -m serve.webrtc``) runs with ``BACKSCORE_API_KEYS``; Chromium and the fake camera are
those of :mod:`tests.serve.test_demo_page`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest

from pipelines.access import hash_key, new_key
from tests.serve.chromium import Cdp, get, stop_process, wait
from tests.serve.http_server import free_port
from tests.serve.test_demo_page import ROOT, browser, fake_capture, pytestmark

__all__ = ["browser", "fake_capture", "pytestmark"]  # fixtures and the chromium skip, shared

KEY = new_key()


def _sessions(base: str, key: str | None) -> tuple[int, list[str]]:
    req = urllib.request.Request(base + "/v1/webrtc/sessions",
                                 headers={"Authorization": f"Bearer {key}"} if key else {})
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, [s["session_id"] for s in json.loads(r.read())["sessions"]]
    except urllib.error.HTTPError as exc:
        return exc.code, []


@pytest.fixture(scope="module")
def dev_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The dev server with one API key (the ``browser`` fixture opens the page on it)."""
    port = free_port()
    log = open(tmp_path_factory.mktemp("server") / "server.log", "w+")  # noqa: SIM115
    env = {**os.environ, "OMP_NUM_THREADS": "1", "BACKSCORE_API_KEYS": f"demo:{hash_key(KEY)}"}
    proc = subprocess.Popen([sys.executable, "-m", "serve.webrtc", "--port", str(port), "--no-faces"], cwd=ROOT,
                            env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        wait(lambda: proc.poll() is not None or get(base + "/"), 90, "the dev server")
        assert proc.poll() is None, "the dev server exited"
        yield base
    finally:
        stop_process(proc)
        log.close()


def test_the_page_sends_the_key_from_its_field(dev_server: str, browser: Cdp) -> None:
    assert _sessions(dev_server, None)[0] == 401
    # no key: refused, and the page says what to do
    started = browser.eval("window.backscore.start('camera').then(() => 'started', (e) => String(e.message))")
    assert "API key" in started and "paste your key" in started
    assert browser.eval("window.backscore.snapshot().state") == "idle"
    # the key typed into the field: kept for this tab, sent with the offer and the hang-up
    browser.eval(f"(() => {{ const f = document.getElementById('apikey'); f.value = {json.dumps(KEY)}; "
                 "f.dispatchEvent(new Event('change')); })()")
    assert browser.eval("sessionStorage.getItem('backscore.apiKey')") == KEY
    sid = browser.eval("window.backscore.start('camera')", timeout=30)
    assert isinstance(sid, str) and sid
    assert _sessions(dev_server, KEY) == (200, [sid])
    browser.eval("window.backscore.stop()")
    wait(lambda: _sessions(dev_server, KEY) == (200, []), 10, "the hang-up (with the key)")
