"""The music worker's engines: a session names one, a busy one hands the stream to the fallback, and the
streaming MusicGen engine plays a live session (tiny random-weight model, real threads, CPU)."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from engines.base import EMOTIONS, AffectEstimate, EngineBusy, MoodControl
from engines.composer import ProceduralMusicEngine
from pipelines.errors import OptionError
from pipelines.live.models import InProcessModels
from pipelines.live.music import MusicContext, MusicRequest, StreamTable, worker_streams
from pipelines.live.options import LiveOptions
from pipelines.live.session import LiveSession
from pipelines.options import parse_session_fields
from tests.fakes import LimitedMusicEngine, ScriptedMusicEngine

CALM = MoodControl(valence=0.3, arousal=-0.5, emotion="relaxing")


def test_a_busy_engine_hands_new_streams_to_the_fallback() -> None:
    limited = LimitedMusicEngine(ScriptedMusicEngine(), capacity=1)
    table = StreamTable(limited, fallback=ProceduralMusicEngine())
    first = table.generate(MusicRequest(MusicContext("a"), CALM))
    second = table.generate(MusicRequest(MusicContext("b"), CALM))
    assert first.engine == "limited" and first.fallback is None
    assert second.engine == "procedural" and "limited is busy" in (second.fallback or "")
    assert table.counts() == {"limited": 1, "procedural": 1}
    table.close("a")
    third = table.generate(MusicRequest(MusicContext("c"), CALM))
    assert third.engine == "limited"  # a slot came free
    strict = StreamTable(LimitedMusicEngine(ScriptedMusicEngine(), capacity=0))
    with pytest.raises(EngineBusy):  # no fallback: the caller hears of it
        strict.generate(MusicRequest(MusicContext("x"), CALM))


def test_a_context_names_one_of_the_workers_engines() -> None:
    table = worker_streams(LimitedMusicEngine(ScriptedMusicEngine(), capacity=4, name="musicgen"))
    asked = table.generate(MusicRequest(MusicContext("a", engine="procedural"), CALM))
    default = table.generate(MusicRequest(MusicContext("b"), CALM))
    assert asked.engine == "procedural" and default.engine == "musicgen"
    with pytest.raises(ValueError, match="no music engine 'musicgen-chunked' on this worker"):
        table.generate(MusicRequest(MusicContext("c", engine="musicgen-chunked"), CALM))
    assert parse_session_fields({"engine": "musicgen"}) == {"engine": "musicgen"}
    assert parse_session_fields({"engine": ""}) == {}
    with pytest.raises(OptionError, match="unknown music engine"):
        parse_session_fields({"engine": "theremin"})


async def test_a_live_session_plays_the_streaming_musicgen_engine() -> None:
    pytest.importorskip("transformers")
    from engines.musicgen import MusicGenOptions
    from engines.musicgen.debug_models import build_model
    from engines.musicgen.streaming import StreamingMusicGenEngine, StreamingOptions

    model, processor = build_model("tiny")
    engine = StreamingMusicGenEngine(model, processor, MusicGenOptions(context_s=0.6, top_k=50),
                                     StreamingOptions(capacity=1, chunk_s=0.2, lead_s=0.2, slide_s=0.4),
                                     device="cpu")
    models = InProcessModels.default(faces=False, music=engine)
    try:
        sessions = [LiveSession(models, LiveOptions(engine="musicgen", lead_s=0.3)) for _ in range(2)]
        for s in sessions:  # no media needed: a first affect estimate starts the music
            s.analyzer.latest = AffectEstimate(0.3, -0.5, "relaxing", 0.8, tuple(
                1.0 if e == "relaxing" else 0.0 for e in EMOTIONS))
            s.start()
        await asyncio.sleep(2.0)
        reports = [s.report() for s in sessions]
        frames = [np.concatenate([s.pull_frame() for _ in range(10)]) for s in sessions]
        for s in sessions:
            await s.close()
    finally:
        models.shutdown()
        engine.close()
    engines_playing = sorted(r.music["engine"] for r in reports if r.music)
    assert engines_playing == ["musicgen", "procedural"]  # one GPU slot: the second session got the composer
    note = next(r.music.get("engine_note") for r in reports if r.music and r.music["engine"] == "procedural")
    assert "musicgen is busy" in note
    assert all(float(np.sqrt(np.mean(f**2))) > 1e-4 for f in frames)
