"""The export specs of the engines' models, each a small wrapper ``torch.nn.Module`` around a model.

Each wrapper takes plain tensors and returns one tensor; each spec function builds an
:class:`~engines.onnx_export.export.ExportSpec` (wrapper, example inputs, names, dynamic axes and
their ``(min, opt, max)`` ranges):

* :func:`clip_image_spec`: ``pixel_values`` (batch, 3, S, S) float -> ``image_embeds`` (batch, D),
  L2-normalised.
* :func:`clip_text_spec`: ``input_ids``, ``attention_mask`` (batch, tokens) int -> ``text_embeds``
  (batch, D), L2-normalised.
* :func:`wav2vec2_spec`: ``input_values`` (batch, samples) float -> ``logits`` (batch, classes).
* :func:`musicgen_text_encoder_spec`: ``input_ids``, ``attention_mask`` (batch, tokens) int ->
  ``last_hidden_state`` (batch, tokens, D).
* :func:`musicgen_decoder_spec`: ``decoder_input_ids`` (rows = batch x codebooks, steps) int,
  ``encoder_hidden_states`` (batch, tokens, D) float, ``encoder_attention_mask`` (batch, tokens) int,
  ``decoder_attention_mask`` (batch, steps) int -> ``logits`` (rows, steps, vocab).
* :func:`encodec_decoder_spec`: ``audio_codes`` (batch, codebooks, frames) int -> ``audio_values``
  (batch, 1, samples).

Notes:

* The CLIP towers are ``get_image_features`` / ``get_text_features`` followed by L2
  normalisation, i.e. what :class:`engines.clip_encoder.ClipFrameEncoder` computes.
* The MusicGen decoder step is ``MusicgenForConditionalGeneration.forward`` from the text
  encoder's hidden states on (the ``enc_to_dec_proj`` projection when the widths differ, the
  text mask applied to the hidden states, then the decoder), **without a KV cache**: every
  call recomputes all ``steps`` positions, as the first step of :mod:`engines.musicgen.decoding`'s loop
  does. Left padding is masked by ``decoder_attention_mask``, but the per-row position shift
  that engine applies to left-padded prompts (a forward hook) is not part of the graph: positions
  count from column 0 in every row.
* EnCodec's decoder needs at least ``config.kernel_size`` frames (its first convolution pads
  by reflection, which needs more input than padding); the spec's range starts there.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from .export import AxisRange, ExportSpec

if TYPE_CHECKING:
    import torch


def _wrappers() -> dict[str, type]:
    """The wrapper classes (defined lazily: torch is imported only when a spec is built)."""
    import torch
    from torch import nn

    class ClipImageTower(nn.Module):
        """pixel_values -> L2-normalised projected image embedding (``get_image_features`` + normalise)."""

        def __init__(self, vision_model: nn.Module, projection: nn.Module) -> None:
            super().__init__()
            self.vision_model = vision_model
            self.projection = projection

        def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
            pooled = self.vision_model(pixel_values=pixel_values).pooler_output
            return torch.nn.functional.normalize(self.projection(pooled), dim=-1)

    class ClipTextTower(nn.Module):
        """input_ids, attention_mask -> L2-normalised projected text embedding."""

        def __init__(self, text_model: nn.Module, projection: nn.Module) -> None:
            super().__init__()
            self.text_model = text_model
            self.projection = projection

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            pooled = self.text_model(input_ids=input_ids, attention_mask=attention_mask).pooler_output
            return torch.nn.functional.normalize(self.projection(pooled), dim=-1)

    class Wav2Vec2Logits(nn.Module):
        """input_values -> classification logits (no attention mask: windows are not padded)."""

        def __init__(self, model: nn.Module) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_values: torch.Tensor) -> torch.Tensor:
            return self.model(input_values=input_values).logits

    class T5Hidden(nn.Module):
        """input_ids, attention_mask -> the text encoder's last hidden state."""

        def __init__(self, encoder: nn.Module) -> None:
            super().__init__()
            self.encoder = encoder

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            return self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

    class MusicgenDecoderStep(nn.Module):
        """One decoder forward without KV cache, from the text encoder's hidden states on."""

        def __init__(self, decoder: nn.Module, projection: nn.Module | None) -> None:
            super().__init__()
            self.decoder = decoder
            self.projection = projection

        def forward(self, decoder_input_ids: torch.Tensor, encoder_hidden_states: torch.Tensor,
                    encoder_attention_mask: torch.Tensor, decoder_attention_mask: torch.Tensor) -> torch.Tensor:
            hidden = encoder_hidden_states
            if self.projection is not None:
                hidden = self.projection(hidden)
            hidden = hidden * encoder_attention_mask[..., None]
            out = self.decoder(input_ids=decoder_input_ids, attention_mask=decoder_attention_mask,
                               encoder_hidden_states=hidden, encoder_attention_mask=encoder_attention_mask,
                               use_cache=False)
            return out.logits

    class EncodecDecode(nn.Module):
        """audio_codes (batch, codebooks, frames) -> waveform (batch, channels, samples)."""

        def __init__(self, codec: nn.Module) -> None:
            super().__init__()
            self.codec: Any = codec

        def forward(self, audio_codes: torch.Tensor) -> torch.Tensor:
            return self.codec.decode(audio_codes[None], [None]).audio_values

    return {c.__name__: c for c in (ClipImageTower, ClipTextTower, Wav2Vec2Logits, T5Hidden,
                                     MusicgenDecoderStep, EncodecDecode)}


_WRAPPERS: dict[str, type] = {}


def wrapper(name: str) -> type:
    """The wrapper class ``name`` (built once)."""
    if not _WRAPPERS:
        _WRAPPERS.update(_wrappers())
    return _WRAPPERS[name]


# --------------------------------------------------------------------------- specs


def _mask(batch: int, length: int, left: int = 0, right: int = 0) -> torch.Tensor:
    """An attention mask of ones whose last row is padded: example masks are not all ones, so no
    "mask is all ones" shortcut of the model's Python code can be baked into the traced graph."""
    import torch

    mask = torch.ones(batch, length, dtype=torch.long)
    mask[-1, :left] = 0
    mask[-1, length - right :] = 0
    return mask


def clip_image_spec(model: Any, batch: AxisRange = (1, 32, 64)) -> ExportSpec:
    """CLIP image tower of a ``CLIPModel``: ``pixel_values`` (batch, 3, S, S) -> ``image_embeds`` (batch, D)."""
    import torch

    size = int(model.config.vision_config.image_size)
    module = wrapper("ClipImageTower")(model.vision_model, model.visual_projection).eval()
    example = torch.zeros(2, 3, size, size)
    return ExportSpec("clip-image", module, (example,), ("pixel_values",), ("image_embeds",),
                      {"pixel_values": {0: "batch"}, "image_embeds": {0: "batch"}}, {"batch": batch})


def clip_text_spec(model: Any, batch: AxisRange = (1, 21, 64), tokens: AxisRange | None = None) -> ExportSpec:
    """CLIP text tower: ``input_ids``, ``attention_mask`` (batch, tokens) -> ``text_embeds`` (batch, D).

    ``input_ids`` must end each row with the end-of-text token (highest id), as the tokenizer
    makes them; padding after it is masked.
    """
    import torch

    max_len = int(model.config.text_config.max_position_embeddings)
    module = wrapper("ClipTextTower")(model.text_model, model.text_projection).eval()
    n = min(8, max_len)
    ids = torch.ones(2, n, dtype=torch.long)
    eos = int(model.config.text_config.vocab_size) - 1
    ids[0, -1] = ids[1, -2] = eos
    mask = _mask(2, n, right=1)
    axes = {"batch": batch, "tokens": tokens or (2, min(16, max_len), max_len)}
    return ExportSpec("clip-text", module, (ids, mask), ("input_ids", "attention_mask"),
                      ("text_embeds",),
                      {"input_ids": {0: "batch", 1: "tokens"}, "attention_mask": {0: "batch", 1: "tokens"},
                       "text_embeds": {0: "batch"}}, axes)


def wav2vec2_spec(model: Any, batch: AxisRange = (1, 8, 32),
                  samples: AxisRange = (400, 32_000, 160_000)) -> ExportSpec:
    """``Wav2Vec2ForSequenceClassification``: ``input_values`` (batch, samples) -> ``logits`` (batch, classes).

    Default range: 25 ms (the feature encoder's receptive field) to 10 s at 16 kHz, 2 s optimal.
    """
    import torch

    module = wrapper("Wav2Vec2Logits")(model).eval()
    example = torch.zeros(2, samples[1]).normal_(generator=torch.Generator().manual_seed(0))
    return ExportSpec("wav2vec2-logits", module, (example,), ("input_values",), ("logits",),
                      {"input_values": {0: "batch", 1: "samples"}, "logits": {0: "batch"}},
                      {"batch": batch, "samples": samples})


def musicgen_text_encoder_spec(model: Any, batch: AxisRange = (1, 2, 64),
                               tokens: AxisRange = (1, 32, 256)) -> ExportSpec:
    """MusicGen's T5 text encoder: ``input_ids``, ``attention_mask`` -> ``last_hidden_state`` (batch, tokens, D)."""
    import torch

    module = wrapper("T5Hidden")(model.text_encoder).eval()
    ids = torch.ones(2, 6, dtype=torch.long)
    return ExportSpec("musicgen-text-encoder", module, (ids, _mask(2, 6, right=1)),
                      ("input_ids", "attention_mask"), ("last_hidden_state",),
                      {"input_ids": {0: "batch", 1: "tokens"}, "attention_mask": {0: "batch", 1: "tokens"},
                       "last_hidden_state": {0: "batch", 1: "tokens"}},
                      {"batch": batch, "tokens": tokens})


def musicgen_decoder_spec(model: Any, batch: AxisRange = (1, 2, 128), steps: AxisRange = (1, 128, 1024),
                          tokens: AxisRange = (1, 32, 256)) -> ExportSpec:
    """MusicGen decoder step without KV cache (see the module doc).

    ``decoder_input_ids`` (rows = batch x codebooks, steps), ``encoder_hidden_states`` (batch, tokens,
    text width), ``encoder_attention_mask`` (batch, tokens), ``decoder_attention_mask`` (batch, steps)
    -> ``logits`` (rows, steps, vocab). ``batch`` counts guidance rows too (2 per stream with
    classifier-free guidance): the default max 128 is 64 streams with guidance.
    """
    import torch

    cfg = model.config
    k = int(cfg.decoder.num_codebooks)
    width = int(cfg.text_encoder.hidden_size)
    project = (width != int(cfg.decoder.hidden_size)
               and getattr(cfg.decoder, "cross_attention_hidden_size", None) is None)
    module = wrapper("MusicgenDecoderStep")(model.decoder, model.enc_to_dec_proj if project else None).eval()
    b, t, s = 2, 5, 6
    example = (torch.full((b * k, t), int(cfg.decoder.pad_token_id), dtype=torch.long),
               torch.zeros(b, s, width), _mask(b, s, right=1), _mask(b, t, left=1))
    return ExportSpec(
        "musicgen-decoder-step", module, example,
        ("decoder_input_ids", "encoder_hidden_states", "encoder_attention_mask", "decoder_attention_mask"),
        ("logits",),
        {"decoder_input_ids": {0: "rows", 1: "steps"}, "encoder_hidden_states": {0: "batch", 1: "tokens"},
         "encoder_attention_mask": {0: "batch", 1: "tokens"}, "decoder_attention_mask": {0: "batch", 1: "steps"},
         "logits": {0: "rows", 1: "steps"}},
        {"rows": (batch[0] * k, batch[1] * k, batch[2] * k), "batch": batch, "steps": steps, "tokens": tokens})


def encodec_decoder_spec(model: Any, batch: AxisRange = (1, 1, 64), frames: AxisRange | None = None) -> ExportSpec:
    """MusicGen's EnCodec decoder: ``audio_codes`` (batch, codebooks, frames) -> ``audio_values`` (batch, 1, samples).

    Default frames: ``config.kernel_size`` (the least the first convolution accepts) to 30 s,
    1 s optimal (50 frames at 32 kHz).
    """
    import torch

    codec = model.audio_encoder
    cfg = codec.config
    k = int(model.config.decoder.num_codebooks)
    rate = float(cfg.sampling_rate) / float(np.prod(cfg.upsampling_ratios))
    lo = int(getattr(cfg, "kernel_size", 7))
    frames = frames or (lo, max(lo, round(rate)), max(lo, round(30 * rate)))
    module = wrapper("EncodecDecode")(codec).eval()
    example = torch.zeros(2, k, max(frames[1], lo + 1), dtype=torch.long)
    return ExportSpec("encodec-decoder", module, (example,), ("audio_codes",), ("audio_values",),
                      {"audio_codes": {0: "batch", 2: "frames"}, "audio_values": {0: "batch", 2: "samples"}},
                      {"batch": batch, "frames": frames})


def musicgen_specs(model: Any) -> list[ExportSpec]:
    """The three exported pieces of a ``MusicgenForConditionalGeneration``."""
    return [musicgen_text_encoder_spec(model), musicgen_decoder_spec(model), encodec_decoder_spec(model)]
