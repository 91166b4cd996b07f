"""Incremental EnCodec decoding of many streams at once: new frames with a little context, in one call.

A stream's audio is decoded in windows of ``n`` new frames as they complete, not a whole chunk at
a time. Each window also decodes ``left_frames`` frames before the new ones (EnCodec's decoder
needs context to start cleanly: convolutions, and an LSTM whose state is rebuilt from it) and
``hold_frames`` after them, which are not handed over yet: the last frames of a window lack the
right-hand context, and are decoded again, with it, by the next window. The first ``fade``
samples of a window are crossfaded with what the previous window decoded for the same stretch,
so windows join without a click. Windows of the same length are decoded in one batched call, at
most ``max_batch`` at a time: EnCodec's activations at the audio rate are large (a 0.5 s window with
its context is ~33,000 samples x 64 channels per layer), and hundreds of streams become ready in the
same round when they started together.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch

#: Samples (at the model's rate) over which consecutive windows are crossfaded.
FADE_SAMPLES = 128


class CodecWindows:
    """Decodes windows of codes laid out as the scheduler keeps them (see the module doc)."""

    def __init__(self, model: Any, device: Any, left_frames: int = 25, hold_frames: int = 2,
                 max_batch: int = 64) -> None:
        import torch

        cfg = model.config
        self.codec = model.audio_encoder
        self.device = device
        self.K = int(cfg.decoder.num_codebooks)
        self.hop = int(np.prod(cfg.audio_encoder.upsampling_ratios))
        self.left_frames = max(0, left_frames)
        self.hold_frames = max(1, hold_frames)
        self.max_batch = max(1, max_batch)
        self._k = torch.arange(self.K, device=device)
        #: Per stream key: the audio the previous window decoded past its emitted part.
        self._tails: dict[Any, np.ndarray] = {}

    def forget(self, key: Any) -> None:
        self._tails.pop(key, None)

    def decode(self, cols: torch.Tensor, windows: Sequence[tuple[int, int, int]],
               keys: Sequence[Any] | None = None) -> list[np.ndarray]:
        """``windows``: ``(slot, first_frame, n)`` -- hand over frames ``[first_frame, first_frame + n)`` of
        the slot's codes (frame ``f`` of codebook ``k`` at column ``f + 1 + k`` of ``cols[slot]``); the
        frames ``[first_frame + n, first_frame + n + hold_frames)`` must be complete too. Returns each
        window's model-rate audio, ``n * hop`` samples. ``keys`` name the streams (default: the slots)
        for the crossfade with their previous window."""
        import torch

        keys = list(keys) if keys is not None else [w[0] for w in windows]
        groups: dict[tuple[int, int], list[int]] = defaultdict(list)
        for i, (_slot, first, n) in enumerate(windows):
            left = min(self.left_frames, first)
            groups[(left, n)].append(i)
        batches = [(key, idx[j : j + self.max_batch]) for key, idx in groups.items()
                   for j in range(0, len(idx), self.max_batch)]
        out: list[np.ndarray | None] = [None] * len(windows)
        for (left, n), idx in batches:
            width = left + n + self.hold_frames
            slots = torch.tensor([windows[i][0] for i in idx], device=self.device)
            start = torch.tensor([windows[i][1] - left for i in idx], device=self.device)
            # frame f of codebook k sits at column f + 1 + k
            col = start[:, None, None] + 1 + self._k[None, :, None] + torch.arange(width, device=self.device)
            codes = cols[slots[:, None, None], self._k[None, :, None], col]  # (B, K, width)
            wave = self.codec.decode(codes[None], audio_scales=[None]).audio_values  # (B, 1, samples)
            wave = wave[:, 0].float().cpu().numpy()
            for j, i in enumerate(idx):
                body = wave[j, left * self.hop : (left + n) * self.hop].copy()
                tail = wave[j, (left + n) * self.hop :]
                prev = self._tails.get(keys[i])
                if prev is not None:
                    m = min(FADE_SAMPLES, len(prev), len(body))
                    theta = (np.arange(m) + 0.5) / m * (np.pi / 2)
                    body[:m] = prev[:m] * np.cos(theta) + body[:m] * np.sin(theta)
                self._tails[keys[i]] = tail
                out[i] = body.astype(np.float32)
        return [o if o is not None else np.zeros(0, np.float32) for o in out]
