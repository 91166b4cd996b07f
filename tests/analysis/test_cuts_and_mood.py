"""Cut detection and the hysteresis mood tracker."""

from __future__ import annotations

import numpy as np

from engines.affect import emotion_probs
from engines.base import EMOTIONS, AffectEstimate
from pipelines.analysis.cuts import detect_cuts
from pipelines.analysis.mood import MoodTracker, SegmentOptions, segment_timeline


def est(v: float, a: float) -> AffectEstimate:
    p = emotion_probs(v, a)
    i = int(np.argmax(p))
    return AffectEstimate(v, a, EMOTIONS[i], float(p[i]), tuple(float(x) for x in p))


def test_cuts_are_found_and_fast_motion_is_not_a_cut() -> None:
    t = np.arange(60) / 6.0
    hc = np.full(60, 0.05)
    cc = np.full(60, 2.0)
    cc[30:45] = 40.0  # sustained heavy motion: high pixel change, histogram steady
    hc[30:45] = 0.15
    hc[12] = 0.8  # palette change
    cc[50] = 70.0  # same palette, everything moved: a cut only the content score sees
    cuts = detect_cuts(t, hc, cc)
    assert cuts == [t[12], t[50]]
    assert detect_cuts(t, hc) == [t[12]]


def test_step_change_gives_one_boundary_near_the_change() -> None:
    hop = 0.5
    times = np.arange(0, 20, hop) + 1.0
    ests = [est(-0.6, -0.5) if c < 10.0 else est(0.6, 0.8) for c in times]
    segs = segment_timeline(list(times), ests, 21.0)
    assert [s.emotion for s in segs] == ["sad", "exciting"]
    assert abs(segs[1].start_s - 10.0) <= 0.75
    assert segs[0].start_s == 0.0 and segs[-1].end_s == 21.0
    assert segs[0].valence < 0 < segs[1].valence


def test_noisy_alternation_does_not_flap() -> None:
    rng = np.random.default_rng(3)
    times = np.arange(0, 30, 0.5)
    ests = []
    for i, _ in enumerate(times):
        # a calm video with single-window blips of excitement every few windows
        ests.append(est(0.6, 0.8) if i % 5 == 0 else est(0.45 + 0.05 * rng.standard_normal(), -0.5))
    segs = segment_timeline(list(times), ests, 30.0)
    assert len(segs) == 1 and segs[0].emotion == "relaxing"


def test_minimum_segment_length_is_respected() -> None:
    opts = SegmentOptions(min_segment_s=6.0)
    times = np.arange(0, 30, 0.5)
    # changes every 3 s: too fast to follow
    ests = [est(0.6, 0.8) if int(c // 3) % 2 else est(-0.6, -0.5) for c in times]
    segs = segment_timeline(list(times), ests, 30.0, options=opts)
    assert all(s.end_s - s.start_s >= 0.5 * opts.min_segment_s for s in segs)
    assert len(segs) <= 30.0 / opts.min_segment_s + 1


def test_boundary_snaps_to_a_nearby_cut() -> None:
    times = np.arange(0, 20, 0.5) + 1.0
    ests = [est(-0.6, -0.5) if c < 10.0 else est(0.6, 0.8) for c in times]
    segs = segment_timeline(list(times), ests, 21.0, cuts=[4.0, 10.6, 15.0])
    assert segs[1].start_s == 10.6


def test_tracker_reports_changes_causally() -> None:
    tr = MoodTracker()
    changes = []
    for i in range(60):
        t = i * 0.5
        ch = tr.push(t, est(-0.6, -0.5) if t < 12 else est(0.6, 0.8))
        if ch:
            changes.append(ch)
    assert [c.emotion for c in changes] == ["sad", "exciting"]
    c = changes[1]
    o = tr.options
    # dated back to the real change; confirmed within the smoothing time plus the hold time
    assert c.confirmed_s >= c.at_s >= 11.5 and c.at_s <= 12.5
    assert c.confirmed_s - 12 <= o.smoothing_s + o.hold_s + 0.5
