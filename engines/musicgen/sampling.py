"""Picking the next tokens of many streams at once, each from its own counter-based random numbers.

A stream's random number for codebook ``k`` of its ``t``-th step is a hash of ``(seed, t, k)``
(:func:`uniforms`), computed on the device for the whole batch in a few integer operations. So a
stream's music depends on its seed and its own history only: the same seed gives the same tokens
whether the stream runs alone or among hundreds, and whichever streams join or leave meanwhile
(``torch.multinomial`` with one generator per stream gives that too, but costs a kernel launch and a
host round trip per stream and step).

Sampling follows MusicGen's defaults: temperature, top-k filtering, then inverse-CDF sampling with
the stream's uniform number; ``do_sample=False`` picks the most likely token (greedy).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

_MASK32 = 0xFFFFFFFF


def _mix32(x: torch.Tensor) -> torch.Tensor:
    """A 32-bit integer hash (the "lowbias32" finaliser), on int64 tensors holding 32-bit values."""
    x = x ^ (x >> 16)
    x = (x * 0x7FEB352D) & _MASK32
    x = x ^ (x >> 15)
    x = (x * 0x846CA68B) & _MASK32
    return x ^ (x >> 16)


def uniforms(seeds: torch.Tensor, steps: torch.Tensor, codebooks: int) -> torch.Tensor:
    """``(n, codebooks)`` float32 numbers in ``[0, 1)``, a function of ``(seed, step, codebook)`` only.

    ``seeds`` and ``steps`` are ``(n,)`` int64 (a stream's seed and its step counter)."""
    import torch

    k = torch.arange(codebooks, device=seeds.device, dtype=torch.int64)[None, :]
    x = _mix32((seeds[:, None] & _MASK32) ^ 0x9E3779B9)
    x = _mix32(x ^ ((steps[:, None] * 0x85EBCA6B) & _MASK32))
    x = _mix32(x ^ ((k * 0xC2B2AE35 + 0x27D4EB2F) & _MASK32))
    return (x >> 8).to(torch.float32) * (1.0 / (1 << 24))


def pick(logits: torch.Tensor, seeds: torch.Tensor, steps: torch.Tensor, *, do_sample: bool = True,
         temperature: float = 1.0, top_k: int = 250) -> torch.Tensor:
    """Next token per ``(stream, codebook)`` from ``logits`` ``(n, K, V)``: greedy, or sampled with each
    stream's counter-based uniforms (see the module doc). Returns ``(n, K)`` int64."""
    import torch

    if not do_sample:
        return logits.argmax(dim=-1)
    scores = logits.float() / temperature
    vocab = scores.shape[-1]
    if 0 < top_k < vocab:
        top, idx = torch.topk(scores, top_k, dim=-1)  # sorted, largest first
    else:
        top, idx = torch.sort(scores, dim=-1, descending=True)
    probs = torch.softmax(top, dim=-1)
    cdf = probs.cumsum(dim=-1)
    u = uniforms(seeds, steps, scores.shape[1])[..., None] * cdf[..., -1:]
    choice = (cdf <= u).sum(dim=-1, keepdim=True).clamp(max=cdf.shape[-1] - 1)
    return idx.gather(-1, choice)[..., 0]
