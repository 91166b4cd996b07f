"""The demo page in a real headless Chromium: fake camera (a calm -> exciting y4m + wav) -> WebRTC -> BGM and mood back.

Needs Debian's ``chromium`` (``scripts/install_chromium.sh``, run by ``make test``); driven over the
Chrome DevTools Protocol with the ``websockets`` client. The dev server (``python -m serve.webrtc``)
runs in a subprocess on a free port.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
import wave
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pipelines.devtools.synth_video import BRIGHT_FAST, CALM_DARK, render_audio, render_frame
from pipelines.frames import AUDIO_RATE
from tests.serve.http_server import free_port

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = next((p for p in (shutil.which(n) for n in ("chromium", "chromium-browser")) if p), None)
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Debian chromium is not installed "
                                "(scripts/install_chromium.sh installs it; make test runs it)")
CHANGE_AT = 6.0
CALM = ("sad", "relaxing", "neutral", "tense", "fearful")
EXCITED = ("exciting", "happy")


@pytest.fixture(scope="module")
def fake_capture(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """6 s calm/dark/quiet then 10 s bright/fast/loud, as a y4m (camera) and a wav (microphone)."""
    d = tmp_path_factory.mktemp("fake_capture")
    scenes = [replace(CALM_DARK, duration_s=CHANGE_AT), replace(BRIGHT_FAST, duration_s=10.0)]
    w, h, fps = 320, 240, 15
    y4m, wav_path = d / "camera.y4m", d / "mic.wav"
    import av

    with open(y4m, "wb") as f:
        f.write(f"YUV4MPEG2 W{w} H{h} F{fps}:1 Ip A1:1 C420jpeg\n".encode())
        k = 0
        for si, scene in enumerate(scenes):
            for i in range(int(round(scene.duration_s * fps))):
                t = i / fps
                shot = si * 1000 + (int(t / scene.cut_every_s) if scene.cut_every_s else 0)
                rgb = render_frame(scene, t, shot, w, h)
                yuv = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p").to_ndarray()
                f.write(b"FRAME\n" + np.ascontiguousarray(yuv).tobytes())
                k += 1
    pos, parts = 0, []
    for si, scene in enumerate(scenes):
        n = int(round(scene.duration_s * AUDIO_RATE))
        parts.append(render_audio(scene, n, pos, si))
        pos += n
    mono = (np.clip(np.concatenate(parts), -1, 1) * 32767).astype(np.int16)
    with wave.open(os.fspath(wav_path), "wb") as wf:
        wf.setnchannels(2)
        wf.setsampwidth(2)
        wf.setframerate(AUDIO_RATE)
        wf.writeframes(np.repeat(mono[:, None], 2, axis=1).tobytes())
    return y4m, wav_path


def _get(url: str, timeout: float = 2.0) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return bytes(r.read())


def _wait(cond: Any, timeout: float, what: str, step: float = 0.25) -> Any:
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


@pytest.fixture(scope="module")
def dev_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    log = open(tmp_path_factory.mktemp("server") / "server.log", "w+")  # noqa: SIM115
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "serve.webrtc", "--port", str(port), "--no-faces",
                             "--log-level", "info"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        _wait(lambda: proc.poll() is not None or _get(base + "/"), 90, "the dev server")
        if proc.poll() is not None:
            log.seek(0)
            raise AssertionError(f"dev server exited: {log.read()[-3000:]}")
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.seek(0)
        print("\n--- dev server log (tail)\n" + log.read()[-2500:])
        log.close()


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


@pytest.fixture
def browser(dev_server: str, fake_capture: tuple[Path, Path], tmp_path: Path) -> Iterator[Cdp]:
    pytest.importorskip("websockets", reason="the websockets client drives Chromium (dev extras)")
    assert CHROMIUM is not None
    y4m, wav_path = fake_capture
    port = free_port()
    args = [CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
            "--no-default-browser-check", f"--user-data-dir={tmp_path / 'profile'}", f"--remote-debugging-port={port}",
            "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
            f"--use-file-for-fake-video-capture={y4m}", f"--use-file-for-fake-audio-capture={wav_path}",
            "--autoplay-policy=no-user-gesture-required", "--disable-features=WebRtcHideLocalIpsWithMdns",
            dev_server + "/"]
    log = open(tmp_path / "chromium.log", "w+")  # noqa: SIM115
    proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
    cdp: Cdp | None = None
    try:
        def page() -> str | None:
            targets = json.loads(_get(f"http://127.0.0.1:{port}/json/list"))
            return next((t["webSocketDebuggerUrl"] for t in targets
                         if t.get("type") == "page" and t.get("url", "").startswith(dev_server)), None)

        cdp = Cdp(_wait(page, 30, "chromium's page target"))
        _wait(lambda: cdp.eval("document.readyState === 'complete' && !!window.backscore"), 20, "the demo page")
        yield cdp
    finally:
        if cdp is not None:
            cdp.close()
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def test_demo_page_camera_gets_bgm_and_follows_the_mood(dev_server: str, browser: Cdp) -> None:
    t0 = time.monotonic()
    sid = browser.eval("window.backscore.start('camera')", timeout=30)
    t_started = time.monotonic()
    assert isinstance(sid, str) and sid
    sessions = json.loads(_get(dev_server + "/v1/webrtc/sessions"))["sessions"]
    assert [s["session_id"] for s in sessions] == [sid]

    def excited() -> dict[str, Any] | None:
        snap = browser.eval("window.backscore.snapshot()")
        if snap["error"]:
            raise AssertionError(f"page error: {snap['error']}")
        late = [r for r in snap["reports"] if r["emotion"] in EXCITED and r["media_s"] > CHANGE_AT]
        return snap if late and snap["stats"]["packets"] > 200 and snap["stats"]["maxLevel"] > 0.005 else None

    snap = _wait(excited, 40, "BGM and an exciting mood report in the page", step=0.5)
    t_excited = time.monotonic()
    reports = snap["reports"]
    early = [r for r in reports if 2.5 <= r["media_s"] <= CHANGE_AT]
    late = [r for r in reports if r["emotion"] in EXCITED and r["media_s"] > CHANGE_AT]
    assert early and all(r["emotion"] in CALM for r in early), [(r["media_s"], r["emotion"]) for r in reports]
    assert late[0]["arousal"] > max(r["arousal"] for r in early)
    assert snap["state"] == "connected"
    # the page shows it
    shown = browser.eval("document.getElementById('emotion').textContent")
    assert shown in EXCITED or shown == snap["last"]["emotion"]
    assert browser.eval("document.getElementById('tempo').textContent").endswith("bpm")
    print(f"\ndemo page: connected in {t_started - t0:.1f} s; {snap['stats']['packets']} BGM packets "
          f"({snap['stats']['bytes'] // 1024} KiB), analyser level max {snap['stats']['maxLevel']:.3f}, "
          f"jitter {snap['stats']['jitterMs']} ms, rtt {snap['rttMs']} ms; "
          f"exciting shown {t_excited - t_started:.1f} s after start (video changes at {CHANGE_AT:.0f} s); "
          f"underruns {snap['last']['underruns']}")
    browser.eval("window.backscore.stop()")
    _wait(lambda: json.loads(_get(dev_server + "/v1/webrtc/sessions"))["sessions"] == [], 10, "the hang-up")
