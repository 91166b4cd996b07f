"""The decoding pass of :class:`~engines.musicgen.MusicGenEngine`: texts and audio prompts -> new audio.

Decoding. The autoregressive loop is written here instead of calling
``MusicgenForConditionalGeneration.generate``: it does the same computation (text encoder,
classifier-free guidance with a zeroed text condition, the codebook delay pattern, EnCodec
decode; a test checks it against ``generate(..., input_values=...)`` with greedy decoding),
and it adds what ``generate`` cannot do for a batch of independent streams:

* prompts of different lengths are left-padded with the decoder's attention mask *and*
  per-row positions (``generate`` counts sinusoidal positions from the cache length, so a
  left-padded row would be shifted; a forward hook on the position embedding fixes that),
  and the codes of each row are un-delayed separately (``generate`` drops pad tokens and
  reshapes, which fails for rows with different padding);
* each stream samples from its own seeded ``torch.Generator`` (``generate`` uses the global
  RNG), so a stream's output does not depend on which other streams share its batch.

Backends (``backend=``, :mod:`engines.backends`). The parts that are one stateless graph run on
the chosen backend (``auto``: TensorRT, ONNX Runtime CUDA, torch CUDA, ONNX Runtime CPU, torch
CPU, the first that can run here, or ``$BACKSCORE_BACKEND``), exported once per weights
(:mod:`engines.onnx_export`):

* the **T5 text encoder** (:func:`~engines.onnx_export.musicgen_text_encoder_spec`), once per chunk;
* the **EnCodec audio decoder** (:func:`~engines.onnx_export.encodec_decoder_spec`), codes -> waveform,
  once per stream and chunk.

The **autoregressive decoder loop stays in torch** (on the GPU beside a GPU backend when torch sees
one, else the CPU), with its KV cache, and so do the EnCodec *encoder* of the audio prompt and the
sampling. Why: the exported decoder step (:func:`~engines.onnx_export.musicgen_decoder_spec`) has no
KV cache -- each call recomputes every position so far -- so generating ``n`` steps on ONNX Runtime
would cost ``O(n^2)`` position-passes (``O(n^3)`` attention) where the cached torch loop costs
``O(n)`` (``O(n^2)``); with 10 s of prompt context and a 2.25 s chunk (about 615 positions, about
115 generated steps) every step would re-run ~600 positions instead of one, about 100 times the
decoder work of the loop here. Running the decoder on TensorRT /
ONNX Runtime the way TensorRT-LLM runs decoders needs a KV-cache export: a decoder graph that takes
the past self-attention keys/values of every layer (``rows x heads x past x head_dim``, ``past`` a
dynamic axis) and returns the present ones, the cross-attention keys/values computed once per chunk
from the text (a separate graph, or cached inputs), explicit position ids (the per-row left-padding
shift is a forward hook here, not part of any graph) and a mask over past + new positions; then,
for speed, preallocated (or paged) cache buffers updated in place on the device (ONNX Runtime I/O
binding; TensorRT-LLM's attention plugin with per-row sequence lengths and in-flight batching)
instead of concatenating caches through host memory every step, and MusicGen's four codebook
embeddings / heads written as a TensorRT-LLM model definition (it is no built-in architecture).
:attr:`MusicGenEngine.parts <engines.musicgen.MusicGenEngine.parts>` says where each part runs.
With ONNX Runtime CPU a tiny model makes the same codes as torch and audio within 1e-4
(``tests/test_musicgen.py``).

:class:`MusicGenDecoding` holds these steps; :class:`~engines.musicgen.MusicGenEngine` inherits it and
sets the attributes it declares (the model, its processor, the runners of the backend parts).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import numpy as np

from .options import MusicGenOptions

if TYPE_CHECKING:
    import torch

    from engines.runners import Runner


class MusicGenDecoding:
    """The model computation of a MusicGen engine (see the module doc), codec frames as the unit of time."""

    model: Any
    processor: Any
    options: MusicGenOptions
    device: torch.device
    num_codebooks: int
    model_rate: int
    hop: int
    frame_rate: float
    pad_id: int
    #: Runners of the text encoder and the EnCodec decoder; None: called in torch directly.
    _text_runner: Runner | None
    _codec_runner: Runner | None
    _cache_kw: str
    _positions: Any

    def _frames(self, seconds: float) -> int:
        return int(math.ceil(seconds * self.frame_rate - 1e-6))

    def _encode_prompt(self, audio: np.ndarray) -> torch.Tensor:
        """(K, L) codes of a mono prompt whose length is a whole number of frames."""
        fe = self.processor.feature_extractor(raw_audio=audio, sampling_rate=self.model_rate, return_tensors="pt")
        out = self.model.audio_encoder.encode(
            fe["input_values"].to(self.device), padding_mask=fe["padding_mask"].to(self.device)
        )
        codes = out.audio_codes  # (frames=1, batch=1, K, L)
        return codes[0, 0]

    @contextmanager
    def _row_positions(self, offsets: torch.Tensor | None) -> Iterator[None]:
        """Shift the decoder's sinusoidal positions per row by ``-offsets`` (left padding)."""
        if offsets is None:
            yield
            return
        import torch

        def hook(module: Any, args: tuple[Any, ...], output: torch.Tensor) -> torch.Tensor:
            seq_len = args[0].shape[-1]
            cache_len = int(args[1]) if len(args) > 1 else 0
            pos = torch.arange(seq_len, device=output.device) + cache_len
            pos = (pos[None, :] - offsets[:, None]).clamp(min=0)
            return module.weights.index_select(0, pos.reshape(-1)).reshape(*pos.shape, -1).detach()

        handle = self._positions.register_forward_hook(hook)
        try:
            yield
        finally:
            handle.remove()

    def _decode_batch(self, texts: list[str], prompts: list[np.ndarray], n_new: int,
                      generators: list[torch.Generator]) -> list[np.ndarray]:
        """Generate ``n_new`` frames after each prompt; returns the new audio (model rate) per row."""
        import torch
        from transformers.modeling_outputs import BaseModelOutput

        dev, k_cb, pad = self.device, self.num_codebooks, self.pad_id
        b = len(texts)
        codes = [self._encode_prompt(p) if len(p) else torch.zeros((k_cb, 0), dtype=torch.long, device=dev)
                 for p in prompts]
        lens = [int(c.shape[1]) for c in codes]
        l_max = max(lens)
        offsets = [l_max - n for n in lens]
        total = 1 + l_max + n_new + k_cb - 1
        # Delayed layout: codebook k holds frame j at column offset + 1 + j + k; -1 = to predict.
        ids = torch.full((b, k_cb, total), pad, dtype=torch.long, device=dev)
        for i, (c, off) in enumerate(zip(codes, offsets, strict=True)):
            for k in range(k_cb):
                ids[i, k, off + 1 + k : off + 1 + k + lens[i]] = c[k]
                ids[i, k, off + 1 + k + lens[i] : off + 1 + k + lens[i] + n_new] = -1
        dec_mask = torch.ones((b, total), dtype=torch.long, device=dev)
        for i, off in enumerate(offsets):
            dec_mask[i, :off] = 0

        tok = self.processor.tokenizer(texts, padding=True, return_tensors="pt")
        input_ids, attn = tok["input_ids"].to(dev), tok["attention_mask"].to(dev)
        if self._text_runner is not None:
            hidden = torch.from_numpy(np.asarray(self._text_runner(input_ids.cpu().numpy(), attn.cpu().numpy()),
                                                 np.float32)).to(dev, dtype=self.model.text_encoder.dtype)
        else:
            hidden = self.model.text_encoder(input_ids=input_ids, attention_mask=attn).last_hidden_state
        g = self.options.guidance_scale
        cfg = g > 1.0
        rep = 2 if cfg else 1
        if cfg:
            hidden = torch.cat([hidden, torch.zeros_like(hidden)], dim=0)
            attn = torch.cat([attn, torch.zeros_like(attn)], dim=0)
        enc = BaseModelOutput(last_hidden_state=hidden)
        row_off = torch.tensor(offsets * rep, device=dev) if any(offsets) else None

        start = 1 + l_max
        seq = ids.clone()
        seq[seq == -1] = pad
        cache: Any = None
        with self._row_positions(row_off):
            for t in range(start, total):
                step_in = seq[:, :, :t] if cache is None else seq[:, :, t - 1 : t]
                dec_in = step_in.reshape(b * k_cb, -1).repeat(rep, 1)
                out = self.model(
                    attention_mask=attn,
                    encoder_outputs=enc,
                    decoder_input_ids=dec_in,
                    decoder_attention_mask=dec_mask[:, :t].repeat(rep, 1),
                    use_cache=True,
                    **{self._cache_kw: cache},
                )
                cache = getattr(out, "cache", None) or out.past_key_values
                logits = out.logits[:, -1, :].float()  # (rep * b * K, V)
                if cfg:
                    cond, uncond = logits.split(b * k_cb, dim=0)
                    logits = uncond + (cond - uncond) * g
                nxt = self._pick(logits.reshape(b, k_cb, -1), generators)
                col = ids[:, :, t]
                seq[:, :, t] = torch.where(col == -1, nxt, col)

        results = []
        dec_ctx = self._frames(self.options.decode_context_s)
        for i, off in enumerate(offsets):
            first = max(0, lens[i] - dec_ctx)
            frames = lens[i] + n_new
            row = torch.stack([seq[i, k, off + 1 + k + first : off + 1 + k + frames] for k in range(k_cb)])
            if self._codec_runner is not None:
                wave = np.asarray(self._codec_runner(row[None].cpu().numpy())[0, 0], np.float32)
            else:
                audio = self.model.audio_encoder.decode(row[None, None], audio_scales=[None]).audio_values
                wave = audio[0, 0].float().cpu().numpy()
            keep = wave[(lens[i] - first) * self.hop : (frames - first) * self.hop]
            results.append(np.ascontiguousarray(keep, dtype=np.float32))
        return results

    def _pick(self, scores: torch.Tensor, generators: list[torch.Generator]) -> torch.Tensor:
        """Next token per (stream, codebook): greedy, or sampled with each stream's generator."""
        import torch

        if not self.options.do_sample:
            return scores.argmax(dim=-1)
        scores = scores / self.options.temperature
        if 0 < self.options.top_k < scores.shape[-1]:
            kth = torch.topk(scores, self.options.top_k, dim=-1).values[..., -1:]
            scores = scores.masked_fill(scores < kth, float("-inf"))
        probs = torch.softmax(scores, dim=-1)
        return torch.stack([
            torch.multinomial(probs[i].cpu(), 1, generator=gen)[:, 0].to(scores.device)
            for i, gen in enumerate(generators)
        ])
