"""Incremental EnCodec decoding of many streams (engines/musicgen/codec_stream.py) with the tiny model.

Hundreds of streams that started together become ready to decode in the same round; they are decoded
at most ``max_batch`` windows a call, which bounds EnCodec's audio-rate activations and must not change
the audio. A window's audio, crossfaded onto the previous one, continues it without a jump."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("transformers")

import torch

from engines.musicgen.codec_stream import CodecWindows
from engines.musicgen.debug_models import build_model

K = 4


@pytest.fixture(scope="module")
def tiny() -> tuple[object, object]:
    return build_model("tiny")


def _codes(streams: int, frames: int, seed: int = 0) -> torch.Tensor:
    """Random codes in the scheduler's delayed layout: frame f of codebook k at column f + 1 + k."""
    g = torch.Generator().manual_seed(seed)
    cols = torch.full((streams, K, frames + K + 1), 64, dtype=torch.long)
    for k in range(K):
        cols[:, k, 1 + k : 1 + k + frames] = torch.randint(0, 64, (streams, frames), generator=g)
    return cols


def test_windows_decoded_a_few_at_a_time_equal_all_at_once(tiny) -> None:
    model, _ = tiny
    cols = _codes(5, 40)
    outs = []
    for max_batch in (64, 2):
        codec = CodecWindows(model, torch.device("cpu"), left_frames=5, hold_frames=2, max_batch=max_batch)
        with torch.inference_mode():
            audio = [codec.decode(cols, [(s, first, 10) for s in range(5)]) for first in (0, 10, 20)]
        outs.append(np.stack([np.concatenate([a[s] for a in audio]) for s in range(5)]))
    hop = int(np.prod(model.config.audio_encoder.upsampling_ratios))
    assert outs[0].shape == (5, 30 * hop)
    np.testing.assert_allclose(outs[1], outs[0], atol=1e-6)
    assert not np.allclose(outs[0][0], outs[0][1])  # different codes, different audio


def test_consecutive_windows_join_without_a_jump(tiny) -> None:
    model, _ = tiny
    cols = _codes(1, 60, seed=3)
    codec = CodecWindows(model, torch.device("cpu"), left_frames=10, hold_frames=2)
    with torch.inference_mode():
        parts = [codec.decode(cols, [(0, first, 10)])[0] for first in range(0, 50, 10)]
        whole = model.audio_encoder.decode(torch.stack([cols[0, k, 1 + k : 1 + k + 52] for k in range(K)])[None, None],
                                           audio_scales=[None]).audio_values[0, 0].numpy()
    audio = np.concatenate(parts)
    steps = np.abs(np.diff(audio))
    edges = [len(parts[0]) * i - 1 for i in range(1, len(parts))]
    assert steps[edges].max() <= 4 * np.percentile(steps, 99.9) + 1e-6
    # and what the windows make is close to decoding the whole sequence at once
    ref = whole[: len(audio)]
    assert float(np.sqrt(np.mean((audio - ref) ** 2))) < 0.1 * float(np.sqrt(np.mean(ref**2)))
