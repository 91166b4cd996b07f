"""Window slides of the MusicGen scheduler: streams whose positions ran out restart from their last frames.

A stream's slot holds ``max_positions`` positions: the start column, ``context`` frames, one ``chunk``
of new frames and the codebook delay. When they run out the stream restarts from its last
``context`` frames -- a prefill that re-primes its attention state (MusicGen's positions are absolute,
so the kept keys and values cannot simply be shifted) -- and goes on for another ``chunk``. That
costs about ``context / chunk`` times the compute of the steps it amortises, so at scale it is
scheduled with care (:class:`WindowSlides`):

* the streams due in a round are re-primed together, in one batched prefill
  (:meth:`~engines.musicgen.static_decoder.StaticDecoder.prefill_many`);
* at most ``per_round`` of them, the most urgent first (the least music made ahead of what its
  listener wants); the others wait a round without stepping. That changes when a stream's music is
  made, never what it is;
* a stream's first slide comes early by a phase drawn from its seed (:meth:`WindowSlides.phase`),
  so streams that started together (a burst of sessions, a replica restored) do not all re-prime in
  the same round. The phase depends on the stream only: its music is the same alone or in a crowd.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from .scheduled import ScheduledStream
from .static_decoder import StaticDecoder

if TYPE_CHECKING:
    import torch


class WindowSlides:
    """When streams slide, and the slide itself (see the module doc). ``keep`` columns are kept: the start
    column, ``ctx_frames`` frames and the ``num_codebooks - 1`` columns of the codebook delay."""

    def __init__(self, max_positions: int, ctx_frames: int, num_codebooks: int, *, per_round: int = 16,
                 stagger: bool = True) -> None:
        self.max_positions = max_positions
        self.K = num_codebooks
        self.keep = ctx_frames + num_codebooks
        #: Positions made between two slides.
        self.span = max_positions - self.keep
        self.per_round = max(1, per_round)
        self.stagger = stagger

    def phase(self, seed: int) -> int:
        """How many positions early a stream with ``seed`` slides the first time, in ``[0, span)``."""
        if not self.stagger or self.span <= 1:
            return 0
        return ((((seed & 0xFFFFFFFF) * 0x9E3779B1) & 0xFFFFFFFF) >> 8) % self.span  # Knuth's multiplicative hash

    def first_slide_at(self, seed: int) -> int:
        return self.max_positions - self.phase(seed)

    def due(self, active: list[ScheduledStream], pos: list[int],
            urgency: Callable[[ScheduledStream], int]) -> list[ScheduledStream]:
        """The streams to slide this round: at their slide position, most urgent (lowest) first, at most
        ``per_round``. ``pos``: each slot's position."""
        due = [st for st in active if pos[st.slot] >= st.slide_at]
        due.sort(key=urgency)
        return due[: self.per_round]

    def restart(self, due: list[ScheduledStream], cols: torch.Tensor, pos: list[int], decoder: StaticDecoder,
                pad: int) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
        """Move each stream's last ``keep`` columns to the start of its row of ``cols`` (codes that the
        codebook delay puts before the start column are padding) and re-prime the decoder on them in one
        batch. Returns the slots ``(m,)``, the guided logits of the next column ``(m, K, V)`` and each
        stream's shift in frames; the caller picks the tokens and, under its lock, :meth:`finish` updates
        the host's counts (so a reader never sees a new ``frame_base`` with an old position)."""
        import torch

        keep, device = self.keep, cols.device
        k = torch.arange(self.K, device=device)
        pad_cols = k[:, None] >= torch.arange(keep, device=device)[None, :]  # column c < 1 + k: pad
        news, shifts = [], []
        for st in due:
            p = pos[st.slot]
            shift = p + 1 - keep
            row = cols[st.slot]
            new = row[:, shift : p + 1].clone()
            new[pad_cols] = pad
            row.fill_(pad)
            row[:, :keep] = new
            news.append(new)
            shifts.append(shift)
        slots = [st.slot for st in due]
        logits = decoder.prefill_many(slots, torch.stack(news))
        return torch.tensor(slots, device=device, dtype=torch.long), logits, shifts

    def finish(self, due: list[ScheduledStream], cols: torch.Tensor, pos: list[int], slots: torch.Tensor,
               tokens: torch.Tensor, pad: int, shifts: list[int]) -> None:
        """Write the picked ``tokens`` ``(m, K)`` as each stream's column ``keep`` (where the delay allows),
        advance each stream's ``frame_base`` by its shift and set its position and next slide."""
        import torch

        k = torch.arange(self.K, device=cols.device)
        valid = (self.keep - 1 - k) >= 0
        cols[slots, :, self.keep] = torch.where(valid[None, :], tokens, torch.full_like(tokens, pad))
        for st, shift in zip(due, shifts, strict=True):
            st.steps += 1
            st.frame_base += shift
            pos[st.slot] = self.keep
            st.slide_at = self.max_positions
