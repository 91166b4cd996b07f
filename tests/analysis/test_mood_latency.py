"""Offline mood following: a cut into an action scene is a segment boundary at the cut and new music within 2 s
of it; a steady clip is one segment and one piece. Real analysis and composer on synthesized videos whose
change times are known. Then the parts of the live fast path on their own: the tracker's onset rule and the
onset evidence (cuts with jumps, loud passages, the sound's own step)."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from engines.affect import emotion_probs
from engines.base import EMOTIONS, AffectEstimate
from engines.composer import ProceduralMusicEngine
from pipelines.analysis.analyze import analyze
from pipelines.analysis.cuts import OnsetOptions, block_power, loud_passages, onset_evidence, sound_step
from pipelines.analysis.mood import MoodTracker, SegmentOptions
from pipelines.devtools.synth_video import BRIGHT_FAST, CALM_DARK, Scene, write_video
from pipelines.frames import AUDIO_RATE
from pipelines.offline.compose import compose
from pipelines.offline.timeline import mood_changes

CHANGE_AT = 8.3  # off the 0.5 s window grid on purpose


def _video(directory: Path, name: str, scenes: list[Scene]) -> str:
    path = directory / name
    if not path.exists():
        write_video(os.fspath(path), scenes)
    return os.fspath(path)


@pytest.mark.parametrize("first, second", [(CALM_DARK, BRIGHT_FAST), (BRIGHT_FAST, CALM_DARK)],
                         ids=["calm-to-action", "action-to-calm"])
def test_cut_with_loudness_jump_is_a_boundary_at_the_cut_and_heard_within_two_seconds(
        tmp_path: Path, first: Scene, second: Scene) -> None:
    path = _video(tmp_path, "change.mp4", [replace(first, duration_s=CHANGE_AT), replace(second, duration_s=8.0)])
    analysis = analyze(path)
    segments = analysis.segments
    assert len(segments) == 2 and segments[0].emotion != segments[1].emotion
    # detection: the boundary is the cut itself (the video's frame at the change, 24 fps)
    assert segments[1].start_s == pytest.approx(CHANGE_AT, abs=1 / 24 + 1e-6)
    music = compose(ProceduralMusicEngine(), segments, analysis.duration_s)
    changes = mood_changes(segments, music.sections)
    assert len(changes) == 1 and changes[0]["music_s"] is not None
    # audible: the first section in the new mood starts within 2 s of the change (before it, with its
    # transition bar leading in, or after)
    assert abs(changes[0]["music_s"] - CHANGE_AT) <= 2.0
    assert changes[0]["music_delay_s"] == pytest.approx(changes[0]["music_s"] - changes[0]["at_s"], abs=1e-3)


@pytest.mark.parametrize("scene", [CALM_DARK, BRIGHT_FAST], ids=["calm", "fast-cut action"])
def test_steady_clip_is_one_segment_and_one_piece(tmp_path: Path, scene: Scene) -> None:
    path = _video(tmp_path, "steady.mp4", [replace(scene, duration_s=24.0)])
    analysis = analyze(path)
    assert len(analysis.segments) == 1
    if scene.cut_every_s:
        assert len(analysis.cuts) > 20  # a cut every 0.75 s, and still one mood
    music = compose(ProceduralMusicEngine(), analysis.segments, analysis.duration_s)
    assert len({s.emotion for s in music.sections}) == 1
    assert mood_changes(analysis.segments, music.sections) == []


# ------------------------------------------------------------------ the fast path's parts (live sessions use them)


def _est(v: float, a: float) -> AffectEstimate:
    p = emotion_probs(v, a)
    i = int(np.argmax(p))
    return AffectEstimate(v, a, EMOTIONS[i], float(p[i]), tuple(float(x) for x in p))


def test_tracker_fast_path_confirms_only_clear_evidence_and_holds_after() -> None:
    tr = MoodTracker(SegmentOptions(min_segment_s=4.0))
    calm, action = _est(-0.6, -0.5), _est(0.6, 0.8)
    for i in range(20):  # 10 s of calm windows
        tr.push(1.0 + 0.5 * i, calm)
    assert tr.current == "sad"
    # a short window that is only mildly different: not immediate evidence of a new mood
    tr.arm_onset(10.0, 11.0)
    assert tr.push(10.25, _est(-0.3, -0.3)) is None and tr.current == "sad"
    # a clearly different one confirms at once, dated to the onset
    tr.arm_onset(10.5, 11.5)
    change = tr.push(10.75, action)
    assert change is not None and change.urgent and change.emotion == "exciting"
    assert change.at_s == 10.5 and change.confirmed_s == 10.75
    # the windows that began before the onset (mostly calm) cannot pull the mood back
    for c in (10.0, 10.5, 11.0):
        assert tr.push(c, calm) is None
    assert tr.current == "exciting"
    # nor can another onset within min_segment_s
    tr.arm_onset(12.0, 13.0)
    assert not tr.onset_possible(12.0) and tr.push(12.25, calm) is None and tr.current == "exciting"


def test_onset_evidence_needs_a_jump_with_the_cut_or_a_loud_passage() -> None:
    o = OnsetOptions()
    t = np.arange(0, 6, 1 / 6.0)  # analysis frames at the live rate
    bright = np.where(t < 3.0, 0.2, 0.8)
    still = np.full(len(t), 0.01)
    block = int(o.block_s * AUDIO_RATE)
    quiet = 0.003 * np.sin(2 * np.pi * 110 * np.arange(3 * AUDIO_RATE) / AUDIO_RATE)
    loud = 0.3 * np.random.default_rng(0).standard_normal(3 * AUDIO_RATE)
    power = block_power(np.concatenate([quiet, loud]).astype(np.float32), block)
    lt = np.arange(len(power)) * o.block_s
    steady_p = block_power(np.concatenate([quiet, quiet]).astype(np.float32), block)
    cut_t = float(t[18])  # 3.0
    ev = onset_evidence(cut_t, True, t, bright, still, lt, power, o)
    assert set(ev.kinds) == {"cut", "loudness", "brightness"} and ev.strength > 2
    # a cut within the same picture level and sound: no immediate evidence
    assert not onset_evidence(cut_t, True, t, np.full(len(t), 0.5), still, lt, steady_p, o)
    # no cut, the sound 30 dB louder: a loud passage, found where it starts
    starts = loud_passages(lt, power, 6.0, o)
    assert starts == [pytest.approx(3.0, abs=o.block_s)]
    assert onset_evidence(starts[0], False, t, bright, still, lt, power, o).kinds == ("loud passage",)
    assert loud_passages(lt, steady_p, 6.0, o) == []
    # the sound of a cut arriving 0.3 s after its picture (a live client's tracks a little apart): its own step
    assert sound_step(lt, power, 2.7, o) == pytest.approx(3.0, abs=o.block_s)
    assert sound_step(lt, steady_p, 2.7, o) is None
