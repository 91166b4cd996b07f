"""MusicGenOptions: the generation settings an engine's streams share."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class MusicGenOptions:
    """Generation settings shared by an engine's streams.

    ``guidance_scale`` 1.0 disables classifier-free guidance; ``do_sample=False`` decodes
    greedily (deterministic; used by tests). ``top_k`` 0 disables top-k filtering.
    ``seed`` is mixed with each stream's :attr:`MusicStreamOptions.seed`.
    ``decode_context_s``: how much of the prompt's codes are decoded with the new codes (the
    prompt audio itself is cut away); ``>= context_s`` decodes it all, as ``generate`` does.
    """

    chunk_s: float = 2.0
    context_s: float = 10.0
    overlap_s: float = 0.25
    guidance_scale: float = 3.0
    temperature: float = 1.0
    top_k: int = 250
    do_sample: bool = True
    seed: int = 0
    #: Codec frames of the prompt decoded again before the new ones (EnCodec's decoder needs
    #: some left context to start cleanly; decoding the whole prompt costs ~5x more).
    decode_context_s: float = 1.0

    def __post_init__(self) -> None:
        if self.chunk_s <= 0 or self.context_s < 0 or self.overlap_s < 0:
            raise ValueError("chunk_s must be > 0, context_s and overlap_s >= 0")
        if self.overlap_s >= self.chunk_s:
            raise ValueError(f"overlap_s ({self.overlap_s}) must be shorter than chunk_s ({self.chunk_s})")
        if self.decode_context_s < 0:
            raise ValueError("decode_context_s must be >= 0")
        if self.guidance_scale < 1.0 or self.temperature <= 0 or self.top_k < 0:
            raise ValueError("guidance_scale must be >= 1, temperature > 0, top_k >= 0")
