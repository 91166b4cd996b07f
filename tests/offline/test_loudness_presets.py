"""Loudness presets (``--loudness``): the written file reaches the preset, measured as a player decodes it.

The meters are checked first: the streaming BS.1770 loudness meter against the whole-signal one, the
true-peak meter against a sine whose inter-sample peak is known and against 8x band-limited resampling.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import av
import numpy as np
import pytest
from scipy import signal

from engines.loudness import LoudnessMeter, TruePeakMeter, integrated_loudness, true_peak
from pipelines.cli import main
from pipelines.errors import OptionError
from pipelines.offline.loudness_presets import PRESETS
from pipelines.offline.mix import MixOptions, mix_bgm, retarget
from pipelines.offline.score import ScoreRequest, score
from pipelines.options import JobOptions, parse_loudness

SR = 48_000


def decode(path: Path) -> np.ndarray:
    """The first audio stream of ``path`` as float (n, 2), decoded with PyAV."""
    with av.open(os.fspath(path)) as c:
        blocks = [f.to_ndarray() for f in c.decode(c.streams.audio[0])]
    planar = np.concatenate(blocks, axis=1)  # fltp: (2, n)
    return np.asarray(planar.T, np.float64)


def test_true_peak_meter_finds_inter_sample_peaks() -> None:
    t = np.arange(SR) / SR
    x = np.sin(2 * np.pi * SR / 4 * t + np.pi / 4)  # samples at +-0.707, the waveform reaches 1.0
    assert 20 * np.log10(np.abs(x).max()) == pytest.approx(-3.01, abs=0.01)
    assert true_peak(np.stack([x, x], 1)) == pytest.approx(0.0, abs=0.2)
    rng = np.random.default_rng(1)
    y = signal.sosfilt(signal.butter(8, 15000, fs=SR, output="sos"), rng.standard_normal((SR * 3, 2)), axis=0) * 0.2
    reference = 20 * np.log10(np.abs(signal.resample_poly(y, 8, 1, axis=0)).max())
    meter = TruePeakMeter()
    for c0 in range(0, y.shape[0], 12_345):  # chunked as the mixer feeds it
        meter.add(y[c0:c0 + 12_345])
    assert meter.true_peak_dbtp() == pytest.approx(reference, abs=0.3)
    assert meter.true_peak_dbtp() >= 20 * np.log10(np.abs(y).max()) - 0.1


def test_streaming_loudness_meter_equals_the_whole_signal_measure() -> None:
    rng = np.random.default_rng(2)
    x = rng.standard_normal((SR * 9 + 777, 2)) * np.linspace(0.01, 0.3, SR * 9 + 777)[:, None]
    meter = LoudnessMeter(SR)
    for c0 in range(0, x.shape[0], 30_001):
        meter.add(x[c0:c0 + 30_001])
    assert meter.integrated() == pytest.approx(integrated_loudness(x, SR), abs=1e-6)
    short = LoudnessMeter(SR)
    short.add(x[:5000])
    assert short.integrated() == pytest.approx(integrated_loudness(x[:5000], SR), abs=1e-6)


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_preset_reaches_its_target_on_the_written_file(name: str, calm_to_exciting: Path, tmp_path: Path) -> None:
    preset = PRESETS[name]
    out = tmp_path / "out.mp4"
    req = ScoreRequest(os.fspath(calm_to_exciting), os.fspath(out), timeline_path=os.fspath(tmp_path / "t.json"),
                       bgm_path=os.fspath(tmp_path / "bgm.wav"), loudness=name, seed=1)
    score(req)
    audio = decode(out)
    lufs = integrated_loudness(audio, SR)
    peak = true_peak(audio)
    print(f"{name}: {lufs:.2f} LUFS (target {preset.target_lufs}), {peak:.2f} dBTP (ceiling {preset.true_peak_dbtp})")
    assert abs(lufs - preset.target_lufs) <= 1.0
    assert peak <= preset.true_peak_dbtp + 0.1
    with open(tmp_path / "t.json", encoding="utf-8") as fh:
        timeline = json.load(fh)
    reported = timeline["loudness"]
    # the mix's own report is of the mix as written (made again when the encoder pushed it off target),
    # which the encoder only nudges: within 0.5 LU of the file
    assert abs(timeline["mix"]["mix_lufs"] - lufs) <= 0.5
    assert reported["preset"] == name and reported["measured_on"] == "output"
    assert reported["target_lufs"] == preset.target_lufs
    assert reported["target_true_peak_dbtp"] == preset.true_peak_dbtp
    assert reported["measured_lufs"] == pytest.approx(lufs, abs=0.05)
    assert reported["measured_true_peak_dbtp"] == pytest.approx(peak, abs=0.05)


def test_no_preset_leaves_the_mix_as_it_was(calm_to_exciting: Path, tmp_path: Path) -> None:
    assert MixOptions().target_lufs is None and parse_loudness(None) is None and parse_loudness(" None ") is None
    req = ScoreRequest(os.fspath(calm_to_exciting), None, timeline_path=os.fspath(tmp_path / "t.json"), seed=1)
    score(req)
    with open(tmp_path / "t.json", encoding="utf-8") as fh:
        data = json.load(fh)
    assert "loudness" not in data and "preset_gain_db" not in data["mix"]


def test_mixer_preset_and_retarget_keep_the_bgm_gain_curve_exact() -> None:
    """With a preset the BGM alone and its recorded gain curve stay in step, also after a lower ceiling."""
    rng = np.random.default_rng(3)
    n = SR * 6
    t = np.arange(n) / SR
    bgm = (0.2 * np.sin(2 * np.pi * 220 * t)[:, None] * np.ones((1, 2))).astype(np.float32)
    original = (rng.standard_normal((n, 2)) * 0.05 * (np.sin(2 * np.pi * 0.5 * t) > 0)[:, None]).astype(np.float32)
    source = bgm.copy()
    opts = MixOptions(target_lufs=-14.0, target_true_peak_dbtp=-1.0)
    res = mix_bgm(original, bgm.copy(), SR, None, opts, bgm_alone=True, keep_gain=True)
    assert res.bgm_gain is not None and res.preset is not None
    for r in (res, retarget(res, SR, 1.5)):
        assert r.bgm_gain is not None
        expected = source * r.bgm_gain.gain(0, n)[:, None]
        assert np.max(np.abs(expected - r.bgm)) < 1e-5
        assert integrated_loudness(r.mix, SR) == pytest.approx(-14.0, abs=0.2)
    assert true_peak(res.mix) <= -1.0 - opts.true_peak_margin_db + 0.05
    assert true_peak(retarget(res, SR, 1.0).mix) <= -1.0 - opts.true_peak_margin_db - 1.0 + 0.05


def test_bad_presets_are_option_errors(calm_to_exciting: Path, tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(OptionError, match="youtube"):
        parse_loudness("loud")
    with pytest.raises(OptionError):
        JobOptions(loudness="ebu")
    assert JobOptions(loudness=" YouTube ").loudness == "youtube"
    rc = main(["score", os.fspath(calm_to_exciting), "-o", os.fspath(tmp_path / "o.mp4"), "--loudness", "loud",
               "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("backscore: error: unknown loudness preset 'loud'")
    assert os.listdir(tmp_path) == []


def test_grpc_score_job_with_a_preset_sends_the_leveled_bgm(calm_to_exciting: Path) -> None:
    """The gRPC Score stream with ``loudness``: the BGM as it sits in the preset's mix, a bar a chunk."""
    from pipelines.offline.jobs import bgm_chunks

    chunks = list(bgm_chunks(os.fspath(calm_to_exciting), JobOptions(loudness="broadcast", seed=1)))
    assert len(chunks) > 4 and all(len(c.bars) == 1 for c in chunks)
    assert [c.index for c in chunks] == list(range(len(chunks)))
    pcm = np.frombuffer(b"".join(c.pcm for c in chunks), "<i2").reshape(-1, 2) / 32768.0
    assert pcm.shape[0] / SR == pytest.approx(16.0, abs=0.05)
    assert chunks[1].start_s == pytest.approx(chunks[0].duration_s, abs=1e-4)
    assert true_peak(pcm) <= PRESETS["broadcast"].true_peak_dbtp + 0.1
    assert integrated_loudness(pcm, SR) < PRESETS["broadcast"].target_lufs + 1.0  # under the mix, not over it


@pytest.mark.parametrize("target", [None, -16.0])
def test_bgm_gain_curve_does_not_need_the_bgm_written_alone(target: float | None) -> None:
    """Stems without ``--bgm``: the mixer records the BGM's gain before the original is summed into its array,
    and it is the same curve as when the BGM alone is written."""
    rng = np.random.default_rng(4)
    n = SR * 5
    t = np.arange(n) / SR
    bgm = (0.3 * np.sin(2 * np.pi * 110 * t)[:, None] * np.ones((1, 2))).astype(np.float32)
    original = (rng.standard_normal((n, 2)) * 0.1).astype(np.float32)
    opts = MixOptions(target_lufs=target)
    alone = mix_bgm(original, bgm.copy(), SR, None, opts, bgm_alone=True, keep_gain=True)
    inside = mix_bgm(original, bgm.copy(), SR, None, opts, bgm_alone=False, keep_gain=True, in_place=True)
    assert alone.bgm_gain is not None and inside.bgm_gain is not None and inside.bgm.size == 0
    assert np.array_equal(alone.bgm_gain.gain(0, n), inside.bgm_gain.gain(0, n))
    assert np.max(np.abs(alone.mix - inside.mix)) < 1e-6
    assert np.max(np.abs(bgm * alone.bgm_gain.gain(0, n)[:, None] - alone.bgm)) < 1e-5
