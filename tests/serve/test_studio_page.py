"""The creators' studio (``/studio``) in a real headless Chromium, on the gateway's app and its async job API.

A synthesized calm -> exciting video is uploaded through the page (the file input, the "Make music" button);
the page follows the job over its events stream, draws the mood timeline, plays the scored video; a style
and seed change makes new music from the same analysis (the job runs no analysis stage) that is A/B-able;
the recommend tab lists tracks with a preview that plays; "use this track" scores with it; a download has
the input's duration; a too-large file and a non-video each get their error next to the upload. Screenshots
at 390 px and 1280 px are saved to ``out/studio/`` for people to look at.

The app runs in this process (uvicorn in a thread, :func:`tests.serve.http_server.serving`) over
:class:`~serve.core.GatewayCore` with the in-process engines; Chromium is driven over the DevTools protocol.
"""

from __future__ import annotations

import asyncio
import base64
import io
import os
import urllib.request
import wave
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pipelines.devtools.synth_video import BRIGHT_FAST, CALM_DARK, write_video
from pipelines.live.models import InProcessModels
from serve.core import GatewayCore
from serve.http.router import build_app
from tests.serve.chromium import Cdp, chromium_page, needs_chromium, wait
from tests.serve.http_server import serving

pytestmark = needs_chromium
ROOT = Path(__file__).resolve().parents[2]

CHANGE_AT = 6.0
CALM = ("sad", "relaxing", "neutral", "tense", "fearful")
EXCITED = ("exciting", "happy")
MAX_UPLOAD_MB = 3.0
SHOTS = ROOT / "out" / "studio"


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("studio") / "calm_then_exciting.mp4"
    write_video(os.fspath(path), [replace(CALM_DARK, duration_s=CHANGE_AT), replace(BRIGHT_FAST, duration_s=6.0)])
    assert path.stat().st_size < MAX_UPLOAD_MB * 1e6
    return path


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[str, GatewayCore]]:
    core = GatewayCore(InProcessModels.default(faces=False), faces=False, max_upload_mb=MAX_UPLOAD_MB)
    try:
        with serving(build_app(core)) as (host, port):
            yield f"http://{host}:{port}", core
    finally:
        asyncio.run(core.shutdown())


@pytest.fixture(scope="module")
def page(server: tuple[str, GatewayCore], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cdp]:
    with chromium_page(server[0] + "/studio", tmp_path_factory.mktemp("chromium"), "window.studio",
                       ["--window-size=1280,900"]) as cdp:
        cdp.call("DOM.enable")
        yield cdp


def choose(page: Cdp, path: Path) -> None:
    """Pick ``path`` in the page's file input, as a person would with the file dialog."""
    root = page.call("DOM.getDocument")["root"]["nodeId"]
    node = page.call("DOM.querySelector", nodeId=root, selector="#file")["nodeId"]
    page.call("DOM.setFileInputFiles", nodeId=node, files=[os.fspath(path)])


def state(page: Cdp) -> dict[str, Any]:
    return dict(page.eval("JSON.parse(JSON.stringify({versions: studio.state.versions.map(v => ({n: v.n, "
                          "label: v.label, job: v.job})), events: studio.state.events, error: studio.state.error, "
                          "busy: studio.state.busy, current: studio.state.current}))"))


def fetch(base: str, url: str) -> bytes:
    with urllib.request.urlopen(base + url, timeout=30) as r:
        return bytes(r.read())


def wav_samples(data: bytes) -> np.ndarray:
    with wave.open(io.BytesIO(data)) as w:
        return np.frombuffer(w.readframes(w.getnframes()), np.int16)


def screenshot(page: Cdp, width: int, height: int, name: str) -> Path:
    page.call("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1,
              mobile=width < 600)
    page.eval("new Promise(r => setTimeout(r, 300))")
    overflow = page.eval("document.documentElement.scrollWidth")
    assert overflow <= width, f"the page is {overflow} px wide at {width} px"
    shot = page.call("Page.captureScreenshot", format="png", captureBeyondViewport=True)
    SHOTS.mkdir(parents=True, exist_ok=True)
    out = SHOTS / name
    out.write_bytes(base64.b64decode(shot["data"]))
    return out


def test_studio_upload_timeline_versions_recommend_and_downloads(
        server: tuple[str, GatewayCore], page: Cdp, clip: Path) -> None:
    base, _ = server
    # every control has a label (keyboard and screen-reader users), and nothing comes from elsewhere
    unlabelled = page.eval("[...document.querySelectorAll('input,select,button')].filter(e => !((e.labels && "
                           "e.labels.length) || e.getAttribute('aria-label') || e.textContent.trim())).map(e => e.id)")
    assert unlabelled == []
    assert page.eval("[...document.querySelectorAll('script[src],link[href]')].every(e => "
                     "(e.src || e.href).startsWith(location.origin))")

    choose(page, clip)
    assert page.eval("document.getElementById('go').disabled") is False
    page.eval("document.getElementById('go').click()")
    wait(lambda: state(page)["versions"] or state(page)["error"], 120, "the first job over the events stream", 0.5)
    s = state(page)
    assert s["error"] is None and len(s["versions"]) == 1
    first = s["versions"][0]["job"]
    assert first["state"] == "done" and "analyse" in first["stages_run"]
    fractions = [e["fraction"] for e in s["events"] if e["id"] == first["id"]]
    assert len(fractions) >= 3 and fractions == sorted(fractions) and fractions[-1] == 1.0
    assert {e["stage"] for e in s["events"]} >= {"analyse", "compose"}

    # the timeline shows the mood change: calm segments before it, an exciting one after
    segs = page.eval("[...document.querySelectorAll('#timeline .mood-segment')].map(g => "
                     "({e: g.dataset.emotion, s: +g.dataset.start, t: +g.dataset.end}))")
    assert segs[0]["e"] in CALM and segs[-1]["e"] in EXCITED, segs
    change = next(g["s"] for g in segs if g["e"] in EXCITED)
    assert abs(change - CHANGE_AT) < 1.5
    assert page.eval("document.querySelectorAll('#timeline polyline.curve').length") == 2
    assert page.eval("document.querySelectorAll('#timeline line.cut').length") >= 3
    assert page.eval("document.querySelectorAll('#timeline .thumbs image').length") >= 5
    assert page.eval("document.querySelectorAll('#timeline .music-section').length") >= 2

    # the scored video plays in the page, with its sound
    page.eval("document.getElementById('player').play()")
    wait(lambda: page.eval("document.getElementById('player').currentTime") > 1.0, 20, "the video playing")
    assert page.eval("document.getElementById('player').webkitAudioDecodedByteCount") > 0
    assert page.eval("document.getElementById('player').videoWidth") > 0

    # new music in another style and seed: the analysis is reused, the BGM differs, A/B keeps the position
    page.eval("document.getElementById('restyle').value = 'lofi'; document.getElementById('reseed').value = '3'; "
              "document.getElementById('rerender').click()")
    wait(lambda: len(state(page)["versions"]) == 2 or state(page)["error"], 120, "the re-render", 0.5)
    s = state(page)
    assert s["error"] is None
    second = s["versions"][1]["job"]
    assert second["from_job"] == first["id"] and second["options"]["style"] == "lofi"
    assert "analyse" not in second["stages_run"] and "compose" in second["stages_run"]
    bgm1, bgm2 = (wav_samples(fetch(base, j["results"]["bgm"]["url"])) for j in (first, second))
    assert abs(len(bgm1) - len(bgm2)) < 0.01 * len(bgm1)
    n = min(len(bgm1), len(bgm2))
    assert np.mean(np.abs(bgm1[:n].astype(np.float64) - bgm2[:n])) > 100  # a different piece, not a re-encode
    assert s["current"] == 2
    page.eval("const p = document.getElementById('player'); p.currentTime = 4.0; "
              "document.getElementById('version-1').click()")
    wait(lambda: page.eval("studio.state.current") == 1 and page.eval(
        "document.getElementById('player').readyState") >= 1, 20, "version A selected")
    wait(lambda: abs(page.eval("document.getElementById('player').currentTime") - 4.0) < 0.6, 10,
          "the play position kept across A/B")

    # downloads: every result listed; the scored video has the input's duration
    roles = page.eval("[...document.querySelectorAll('#downloads a')].map(a => a.dataset.role)")
    assert {"video", "bgm", "timeline", "plot", "midi"} <= set(roles) and sum(r.startswith("stem_") for r in roles) == 4
    import av

    with av.open(io.BytesIO(fetch(base, second["results"]["video"]["url"])), "r") as scored, \
            av.open(os.fspath(clip), "r") as src:
        assert (scored.duration or 0) / 1e6 == pytest.approx((src.duration or 0) / 1e6, abs=0.1)
        assert any(s.type == "audio" for s in scored.streams)

    # the recommend tab: tracks with reasons and a preview that plays; "use this track" scores with it
    page.eval("document.getElementById('tab-recommend').click()")
    assert page.eval("document.getElementById('recommend-panel').hidden") is False
    page.eval("document.getElementById('topk').value = '3'; document.getElementById('recommend').click()")
    wait(lambda: page.eval("document.querySelectorAll('#tracks li.track').length") or state(page)["error"], 240,
          "the recommendations (the catalog is built on first use)", 1.0)
    assert state(page)["error"] is None
    tracks = page.eval("[...document.querySelectorAll('#tracks li.track')].map(li => ({id: +li.dataset.trackId, "
                       "why: li.querySelector('p').textContent}))")
    assert len(tracks) == 3 and all(t["why"] for t in tracks)
    page.eval("document.querySelector('#tracks li.track audio').play()")
    wait(lambda: page.eval("document.querySelector('#tracks li.track audio').currentTime") > 0.3, 30,
          "the preview playing")
    assert page.eval("document.querySelector('#tracks li.track audio').webkitAudioDecodedByteCount") > 0
    page.eval("document.querySelector('#tracks li.track audio').pause(); "
              "document.querySelector('#tracks .use-track').click()")
    wait(lambda: len(state(page)["versions"]) == 3 or state(page)["error"], 120, "scoring with the track", 0.5)
    assert state(page)["error"] is None
    third = state(page)["versions"][2]["job"]
    assert third["options"]["track"] == tracks[0]["id"] and "analyse" not in third["stages_run"]
    assert page.eval("document.getElementById('result-panel').hidden") is False  # back on the compose tab
    # the timeline's music row is the selected version's: the one track now, the composed sections before
    assert page.eval("document.querySelectorAll('#timeline .music-section').length") == 1
    page.eval("document.getElementById('version-2').click()")
    wait(lambda: page.eval("document.querySelectorAll('#timeline .music-section').length") >= 2, 10,
          "version 2's music sections")

    shots = [screenshot(page, 390, 844, "studio-390.png"), screenshot(page, 1280, 900, "studio-1280.png")]
    page.call("Emulation.clearDeviceMetricsOverride")
    print("\nstudio screenshots: " + ", ".join(os.fspath(p) for p in shots))


def test_refused_uploads_show_their_error_next_to_the_upload(page: Cdp, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BACKSCORE_MAX_MEDIA_S", "20")  # read per job: the server in this process sees it
    long = tmp_path / "long.mp4"
    write_video(os.fspath(long), [replace(CALM_DARK, duration_s=25.0)], width=96, height=64, fps=6)
    big = tmp_path / "huge.mp4"
    big.write_bytes(os.urandom(int((MAX_UPLOAD_MB + 1) * 1e6)))
    fake = tmp_path / "notavideo.mp4"
    fake.write_bytes(b"this is not a video at all" * 100)
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    for path, expect in ((big, ("large", "limit", "MB")), (fake, ("video", "decode", "read", "format")),
                         (text, ("not a video",)), (long, ("long", "duration", "20"))):
        page.eval("document.getElementById('upload-error').textContent = ''")
        choose(page, path)
        if path.suffix == ".mp4":
            page.eval("document.getElementById('go').click()")
        wait(lambda: page.eval("document.getElementById('upload-error').textContent"), 60, f"{path.name}'s error")
        msg = page.eval("document.getElementById('upload-error').textContent")
        print(f"{path.name}: {msg}")
        assert any(w.lower() in msg.lower() for w in expect), msg
        assert "{" not in msg  # a sentence, not raw JSON
        assert page.eval("studio.state.busy") is False
