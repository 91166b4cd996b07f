"""Locust scenarios for the HTTP API.

Run headless against a running service (``serve run deploy/local.yaml``)::

    locust -f loadtest/locustfile.py --headless -u 8 -r 2 -t 2m --host http://127.0.0.1:8000 \\
        --csv out/locust

Environment:

* ``BACKSCORE_LOAD_VIDEO`` -- the video to upload (default: a 6 s synthetic clip written on start).
* ``BACKSCORE_LOAD_MIX`` -- task weights ``recommend:analyze:score:health`` (default ``8:2:1:1``).
"""

from __future__ import annotations

import os
import tempfile
from typing import Any

from locust import HttpUser, between, events, task

from engines.settings import settings

_VIDEO: bytes = b""


@events.init.add_listener
def _load_video(environment: Any, **_: Any) -> None:
    global _VIDEO
    path = settings().load_video
    if not path:
        from dataclasses import replace

        from pipelines.devtools.synth_video import BRIGHT_FAST, CALM_DARK, write_video

        path = os.path.join(tempfile.mkdtemp(prefix="backscore-load-"), "load.mp4")
        write_video(path, [replace(CALM_DARK, duration_s=3.0), replace(BRIGHT_FAST, duration_s=3.0)])
    with open(path, "rb") as fh:
        _VIDEO = fh.read()


def _weights() -> tuple[int, int, int, int]:
    parts = [int(x) for x in settings().load_mix.split(":")]
    if len(parts) != 4:
        raise SystemExit("BACKSCORE_LOAD_MIX must be recommend:analyze:score:health, e.g. 8:2:1:1")
    return parts[0], parts[1], parts[2], parts[3]


_W = _weights()


class ApiUser(HttpUser):
    wait_time = between(0.2, 1.0)

    def _upload(self) -> dict[str, Any]:
        return {"file": ("clip.mp4", _VIDEO, "video/mp4")}

    @task(_W[0])
    def recommend(self) -> None:
        with self.client.post("/v1/recommend?top_k=5", files=self._upload(), name="/v1/recommend",
                              catch_response=True) as r:
            if r.status_code != 200 or not r.json().get("recommendations"):
                r.failure(f"{r.status_code}: {r.text[:200]}")

    @task(_W[1])
    def analyze(self) -> None:
        with self.client.post("/v1/analyze", files=self._upload(), name="/v1/analyze", catch_response=True) as r:
            if r.status_code != 200 or not r.json().get("windows"):
                r.failure(f"{r.status_code}: {r.text[:200]}")

    @task(_W[2])
    def score_stream(self) -> None:
        with self.client.post("/v1/score?output=bgm&stream=true", files=self._upload(), name="/v1/score (stream)",
                              stream=True, catch_response=True) as r:
            size = sum(len(b) for b in r.iter_content(65536))
            if r.status_code != 200 or size < 48_000 * 4:
                r.failure(f"{r.status_code}: {size} bytes")

    @task(_W[3])
    def health(self) -> None:
        self.client.get("/healthz", name="/healthz")
