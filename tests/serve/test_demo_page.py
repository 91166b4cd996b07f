"""The demo page in a real headless Chromium: fake camera (a calm -> exciting y4m + wav) -> WebRTC -> BGM and mood back.

Needs Debian's ``chromium`` (:mod:`tests.serve.chromium`). The dev server (``python -m serve.webrtc``)
runs in a subprocess on a free port.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import wave
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pipelines.devtools.synth_video import BRIGHT_FAST, CALM_DARK, render_audio, render_frame
from pipelines.frames import AUDIO_RATE
from tests.serve.chromium import Cdp, chromium_page, get, needs_chromium, stop_process, wait
from tests.serve.http_server import free_port

ROOT = Path(__file__).resolve().parents[2]
pytestmark = needs_chromium
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


@pytest.fixture(scope="module")
def dev_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    log = open(tmp_path_factory.mktemp("server") / "server.log", "w+")  # noqa: SIM115
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "serve.webrtc", "--port", str(port), "--no-faces",
                             "--log-level", "info"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        wait(lambda: proc.poll() is not None or get(base + "/"), 90, "the dev server")
        if proc.poll() is not None:
            log.seek(0)
            raise AssertionError(f"dev server exited: {log.read()[-3000:]}")
        yield base
    finally:
        stop_process(proc)
        log.seek(0)
        print("\n--- dev server log (tail)\n" + log.read()[-2500:])
        log.close()


@pytest.fixture
def browser(dev_server: str, fake_capture: tuple[Path, Path], tmp_path: Path) -> Iterator[Cdp]:
    y4m, wav_path = fake_capture
    fake_devices = ["--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
                    f"--use-file-for-fake-video-capture={y4m}", f"--use-file-for-fake-audio-capture={wav_path}",
                    "--disable-features=WebRtcHideLocalIpsWithMdns"]
    with chromium_page(dev_server + "/", tmp_path, "window.backscore", fake_devices) as cdp:
        yield cdp


def test_demo_page_camera_gets_bgm_and_follows_the_mood(dev_server: str, browser: Cdp) -> None:
    t0 = time.monotonic()
    sid = browser.eval("window.backscore.start('camera')", timeout=30)
    t_started = time.monotonic()
    assert isinstance(sid, str) and sid
    sessions = json.loads(get(dev_server + "/v1/webrtc/sessions"))["sessions"]
    assert [s["session_id"] for s in sessions] == [sid]

    def excited() -> dict[str, Any] | None:
        snap = browser.eval("window.backscore.snapshot()")
        if snap["error"]:
            raise AssertionError(f"page error: {snap['error']}")
        late = [r for r in snap["reports"] if r["emotion"] in EXCITED and r["media_s"] > CHANGE_AT]
        return snap if late and snap["stats"]["packets"] > 200 and snap["stats"]["maxLevel"] > 0.005 else None

    snap = wait(excited, 40, "BGM and an exciting mood report in the page", step=0.5)
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
    wait(lambda: json.loads(get(dev_server + "/v1/webrtc/sessions"))["sessions"] == [], 10, "the hang-up")
