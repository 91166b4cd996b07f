"""MusicGenEngine: Meta's MusicGen (``facebook/musicgen-small``) through Hugging Face transformers.

A :class:`MusicGenStream` generates music chunk by chunk by *continuation*: every chunk is
generated from

* the text description of the **current** mood (:func:`describe`), and
* an audio prompt: the tail of the stream's own previous output (at most
  :attr:`MusicGenOptions.context_s`; the first chunk has no prompt),

so a change of mood is heard from the next chunk on while the music carries on from what
was playing. The prompt part is cut from the model's output.

Joins. Each call generates ``overlap_s`` more than it emits and keeps that *tail*. The next
call's prompt ends where the emitted audio ends, so its first ``overlap_s`` re-generate the
same stretch of time as the kept tail; the two are joined with an equal-power crossfade::

    out[i] = tail[i] * cos(theta_i) + new[i] * sin(theta_i),  theta_i = (i + 0.5) / n * pi / 2

Durations are whole codec frames (50 per second for the 32 kHz EnCodec of MusicGen), so a
chunk lasts ``ceil(max(chunk_s, min_duration_s) * 50)`` frames. Output is resampled from the
model's rate to :attr:`MusicStreamOptions.sample_rate` with :func:`scipy.signal.resample_poly`,
using the previous audio and the kept tail as filter context, so chunk edges do not click;
mono is duplicated to stereo.

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

``chunk.bars`` holds one :class:`~engines.base.BarInfo` per chunk: the chunk's span, the tempo
asked for in the description, the style and emotion, a section number that increments
whenever the description changes. ``transition`` is always False: MusicGen has no separate
transition bar -- the first chunk of a new section already follows the new description, and
the join is the ``overlap_s`` crossfade at its start.
MusicGen is not told a key and nothing here analyses one, so ``key="?"``, ``mode="unknown"``
and ``chord="?"``; ``instruments`` are the style's instrument words.

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
:attr:`MusicGenEngine.parts` says where each part runs. With ONNX Runtime CPU a tiny model makes
the same codes as torch and audio within 1e-4 (``tests/test_musicgen.py``).

Weights: ``from_pretrained(weights)`` reads a local directory, else ``$BACKSCORE_MUSICGEN_WEIGHTS``,
else the Hugging Face cache entry of ``facebook/musicgen-small``, always offline unless
``allow_download=True`` (:data:`WEIGHTS`, an :class:`engines.weights.HFModelSpec`).
"""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from engines.base import (
    STYLES,
    BarInfo,
    EngineUnavailable,
    MoodControl,
    MusicChunk,
    MusicEngine,
    MusicStream,
    MusicStreamOptions,
)
from engines.composer.styles import check_emotion
from engines.composer.styles import resolve_style as resolve_style_preset
from engines.weights import HFModelSpec

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

MODEL_ID = "facebook/musicgen-small"
WEIGHTS_ENV = "BACKSCORE_MUSICGEN_WEIGHTS"
#: The MusicGen checkpoint: where it is looked up, how it loads, what the errors say.
WEIGHTS = HFModelSpec("MusicGen weights", MODEL_ID, WEIGHTS_ENV, f"--weights DIR or {WEIGHTS_ENV}=DIR",
                      "the MusicGen engine", needs="transformers", source="--weights")
INSTALL_HINT = WEIGHTS.install_hint

# --------------------------------------------------------------------------- descriptions


#: style -> (genre words, instrument words).
STYLE_WORDS: dict[str, tuple[str, tuple[str, ...]]] = {
    "lofi": ("lofi hip hop", ("mellow electric piano", "soft drums", "warm bass")),
    "cheerful": ("upbeat pop", ("acoustic guitar", "piano", "claps", "bright drums")),
    "sad": ("sad piano ballad", ("solo piano", "soft strings")),
    "epic": ("epic orchestral", ("big drums", "brass", "strings", "choir")),
    "calm": ("ambient", ("soft pads", "gentle piano", "no drums")),
    "tense": ("dark suspense", ("low strings", "pulsing synth", "ticking percussion")),
    "cinematic": ("cinematic film score", ("strings", "piano", "timpani")),
}

#: emotion -> mood words.
EMOTION_WORDS: dict[str, str] = {
    "exciting": "exciting, energetic",
    "happy": "happy, joyful",
    "relaxing": "relaxing, peaceful",
    "neutral": "neutral, easy-going",
    "sad": "sad, melancholic",
    "tense": "tense, suspenseful",
    "fearful": "fearful, eerie",
}


def tempo_for(arousal: float) -> int:
    """Tempo asked for: arousal -1..1 maps linearly to 60..150 bpm, rounded to 5 bpm."""
    a = min(1.0, max(-1.0, float(arousal)))
    return int(5 * round((60.0 + (a + 1.0) / 2.0 * 90.0) / 5.0))


def tempo_words(bpm: float) -> str:
    """<= 80 slow, < 105 moderate tempo, < 130 upbeat, else fast."""
    if bpm <= 80:
        return "slow"
    if bpm < 105:
        return "moderate tempo"
    if bpm < 130:
        return "upbeat"
    return "fast"


def resolve_style(stream_style: str | None, control: MoodControl) -> str:
    """The stream's fixed style, else the control's, else the emotion's automatic style (the
    composer's own table, :data:`engines.composer.styles.AUTO_STYLE`)."""
    check_emotion(control.emotion)
    return resolve_style_preset(stream_style, control.style, control.emotion).name


def describe(control: MoodControl, style: str | None) -> str:
    """Text prompt for MusicGen from the mood.

    ``"<genre>, <mood words>[, bright|dark], <instruments>, <tempo words>, <bpm> bpm"``:
    genre and instruments from :data:`STYLE_WORDS` (``style`` resolved as in
    :func:`resolve_style`), mood words from :data:`EMOTION_WORDS`, "bright" when
    valence > 0.5 and "dark" when valence < -0.5, tempo from :func:`tempo_for` (arousal) and
    :func:`tempo_words`. E.g. ``"lofi hip hop, sad, melancholic, mellow electric piano, soft
    drums, warm bass, slow, 70 bpm"``.
    """
    name = resolve_style(style, control)
    genre, instruments = STYLE_WORDS[name]
    parts = [genre, EMOTION_WORDS[control.emotion]]
    if control.valence > 0.5:
        parts.append("bright")
    elif control.valence < -0.5:
        parts.append("dark")
    parts.extend(instruments)
    bpm = tempo_for(control.arousal)
    parts.extend([tempo_words(bpm), f"{bpm} bpm"])
    return ", ".join(parts)


# --------------------------------------------------------------------------- weights


#: ``(path or None, where)``: where MusicGen weights would be read from, without importing transformers.
find_weights = WEIGHTS.find
#: The one message for missing MusicGen weights (``where`` from :func:`find_weights`).
missing_weights_message = WEIGHTS.missing_message


# --------------------------------------------------------------------------- options


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


# --------------------------------------------------------------------------- stream


class MusicGenStream(MusicStream):
    """One continuing piece generated by a :class:`MusicGenEngine` (see the module doc)."""

    def __init__(self, engine: MusicGenEngine, options: MusicStreamOptions, stream_id: str) -> None:
        import torch

        if options.sample_rate <= 0:
            raise ValueError(f"sample_rate must be positive, got {options.sample_rate}")
        if options.style not in (None, "auto", *STYLES):
            raise ValueError(f"unknown style {options.style!r}; expected one of {', '.join(STYLES)} or auto")
        self.engine = engine
        self.options = options
        self.stream_id = stream_id
        self.sample_rate = options.sample_rate
        seed = int(np.random.SeedSequence([engine.options.seed, options.seed]).generate_state(1)[0])
        self.generator = torch.Generator(device="cpu").manual_seed(seed)
        #: Emitted audio at the model's rate (the last ``context_s`` plus filter context).
        self.history = np.zeros(0, np.float32)
        #: Generated but not yet emitted audio (model rate) that the next chunk crossfades from.
        self.tail: np.ndarray | None = None
        #: The model-rate audio the last call generated after its prompt (for tests/debugging).
        self.last_generated = np.zeros(0, np.float32)
        self.model_pos = 0  # emitted samples at the model's rate
        self.out_pos = 0  # emitted samples at the output rate
        self.section = -1
        self.description: str | None = None
        self.closed = False

    def generate(self, control: MoodControl, min_duration_s: float = 0.0) -> MusicChunk:
        """Next chunk of ``max(chunk_s, min_duration_s)`` (whole codec frames), continuing the last."""
        return self.engine._generate([(self, control)], min_duration_s)[0]

    def close(self) -> None:
        self.closed = True
        self.history = np.zeros(0, np.float32)
        self.tail = None


# --------------------------------------------------------------------------- engine


class MusicGenEngine(MusicEngine):
    """MusicGen behind the :class:`~engines.base.MusicEngine` interface.

    Build it with :meth:`from_pretrained`, or directly from a ``MusicgenForConditionalGeneration``
    and a ``MusicgenProcessor`` already in memory. ``backend``: ``"auto"`` or a name of
    :data:`engines.backends.BACKENDS`, for the text encoder and the EnCodec decoder (see the module
    doc); ``device``: the torch device of the decoder loop (default from the backend). Raises
    :class:`EngineUnavailable` for a named backend that cannot run here.
    """

    name = "musicgen"

    def __init__(self, model: Any, processor: Any, options: MusicGenOptions | None = None,
                 device: str | None = None, backend: str = "auto") -> None:
        import torch

        from engines.backends import Runner, model_runner, resolve_backend, torch_device
        from engines.onnx_export import encodec_decoder_spec, musicgen_text_encoder_spec

        self.options = options or MusicGenOptions()
        chosen, pinned = resolve_backend(backend)
        self.device = torch.device(torch_device(chosen, device))
        self.model = model.to(self.device).eval()
        #: Runners of the text encoder and the EnCodec decoder; None: called in torch directly.
        self._text_runner: Runner | None = None
        self._codec_runner: Runner | None = None
        torch_name = "torch-cuda" if self.device.type == "cuda" else "torch-cpu"
        if chosen.runtime != "torch":
            text = model_runner(musicgen_text_encoder_spec(model), chosen, pinned, device=str(self.device))
            codec = model_runner(encodec_decoder_spec(model), chosen, pinned, device=str(self.device))
            self._text_runner = text if text.backend == chosen.name else None
            self._codec_runner = codec if codec.backend == chosen.name else None
        #: Where each part runs: text_encoder, audio_decoder -> backend name; decoder (the
        #: autoregressive loop with its KV cache) and audio_encoder (prompt -> codes) -> torch.
        self.parts: dict[str, str] = {
            "text_encoder": self._text_runner.backend if self._text_runner else torch_name,
            "audio_decoder": self._codec_runner.backend if self._codec_runner else torch_name,
            "decoder": torch_name, "audio_encoder": torch_name}
        #: The backend of the stateless parts (text encoder, EnCodec decoder).
        self.backend: str = self.parts["audio_decoder"]
        self.processor = processor
        cfg = model.config
        self.num_codebooks = int(cfg.decoder.num_codebooks)
        if int(getattr(cfg.decoder, "audio_channels", 1)) != 1:
            raise EngineUnavailable("only mono MusicGen checkpoints are supported (not the stereo variants)")
        self.model_rate = int(cfg.audio_encoder.sampling_rate)
        self.hop = int(np.prod(cfg.audio_encoder.upsampling_ratios))
        self.frame_rate = self.model_rate / self.hop
        start = model.generation_config.decoder_start_token_id
        self.pad_id = int(start if start is not None else cfg.decoder.pad_token_id)
        import inspect

        self._cache_kw = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
        self._positions = model.decoder.model.decoder.embed_positions
        self._ids = itertools.count()

    # ------------------------------------------------------------------ loading
    @classmethod
    def from_pretrained(cls, weights: str | None = None, device: str | None = None, allow_download: bool = False,
                        options: MusicGenOptions | None = None, backend: str = "auto") -> MusicGenEngine:
        """Load model and processor from ``weights`` / ``$BACKSCORE_MUSICGEN_WEIGHTS`` / the HF cache.

        Never touches the network unless ``allow_download`` (then the hub id is used when no
        local copy is found). Raises :class:`EngineUnavailable` with one message saying how to
        provide the weights, or how to install transformers, or that a named ``backend`` cannot
        run here (checked before the weights are read).
        """
        model, processor, path = WEIGHTS.load("MusicgenForConditionalGeneration", "AutoProcessor", weights,
                                              allow_download=allow_download, backend=backend)
        engine = cls(model, processor, options, device, backend)
        log.info("musicgen: loaded %s; %s", path, ", ".join(f"{k} on {v}" for k, v in engine.parts.items()))
        return engine

    # ------------------------------------------------------------------ streams
    def open_stream(self, options: MusicStreamOptions) -> MusicGenStream:
        return MusicGenStream(self, options, f"musicgen-{next(self._ids)}")

    def generate_batch(self, requests: Sequence[tuple[MusicGenStream, MoodControl]]) -> list[MusicChunk]:
        """Next chunk of several independent streams in one decoding pass.

        Each stream advances exactly as its own ``generate(control)`` would (bit-for-bit up to
        floating-point noise of the padded batch; sampling uses each stream's own generator).
        """
        return self._generate(requests, 0.0)

    # ------------------------------------------------------------------ internals
    def _frames(self, seconds: float) -> int:
        return int(math.ceil(seconds * self.frame_rate - 1e-6))

    def _generate(self, requests: Sequence[tuple[MusicGenStream, MoodControl]],
                  min_duration_s: float) -> list[MusicChunk]:
        import torch

        if not requests:
            return []
        streams = [s for s, _ in requests]
        if len({id(s) for s in streams}) != len(streams):
            raise ValueError("a stream may appear only once in a batch")
        for s in streams:
            if s.engine is not self:
                raise ValueError(f"stream {s.stream_id} belongs to another engine")
            if s.closed:
                raise ValueError(f"stream {s.stream_id} is closed")
        texts = [describe(c, s.options.style) for s, c in requests]
        n_emit = self._frames(max(self.options.chunk_s, min_duration_s))
        n_ov = self._frames(self.options.overlap_s)
        ctx = self._frames(self.options.context_s)
        prompts = []
        for s in streams:
            frames = min(len(s.history) // self.hop, ctx, s.model_pos // self.hop)
            prompts.append(s.history[len(s.history) - frames * self.hop :])
        with torch.inference_mode():
            new_audio = self._decode_batch(texts, prompts, n_emit + n_ov, [s.generator for s in streams])
        chunks = []
        for (s, c), text, audio in zip(requests, texts, new_audio, strict=True):
            chunks.append(self._emit(s, c, text, audio, n_emit, n_ov))
        return chunks

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

    def _emit(self, s: MusicGenStream, control: MoodControl, text: str, new: np.ndarray,
              n_emit: int, n_ov: int) -> MusicChunk:
        """Crossfade with the kept tail, keep the new tail, resample, and describe the chunk."""
        from scipy.signal import resample_poly

        hop = self.hop
        e, ov = n_emit * hop, n_ov * hop
        s.last_generated = new
        body = new[:e].copy()
        if s.tail is not None and ov:
            theta = (np.arange(ov) + 0.5) / ov * (np.pi / 2)
            body[:ov] = s.tail * np.cos(theta) + new[:ov] * np.sin(theta)
        tail = new[e : e + ov].copy()

        sr, msr = s.sample_rate, self.model_rate
        out_end = int(round((s.model_pos + e) * sr / msr))
        n_out = out_end - s.out_pos
        if sr == msr:
            out = body
        else:
            gcd = math.gcd(sr, msr)
            up, down = sr // gcd, msr // gcd
            pad = down * int(math.ceil(64 / down))
            left = s.history[max(0, len(s.history) - pad) :]
            left = np.concatenate([np.zeros(pad - len(left), np.float32), left])
            right = np.concatenate([tail[:pad], np.zeros(max(0, pad - len(tail)), np.float32)])
            y = resample_poly(np.concatenate([left, body, right]), up, down)
            first = pad * up // down
            out = y[first : first + n_out]
        out = np.asarray(out, dtype=np.float32)
        if len(out) < n_out:
            out = np.pad(out, (0, n_out - len(out)))
        out = out[:n_out]

        keep = self._frames(self.options.context_s) * hop + 1024
        s.history = np.concatenate([s.history, body])[-keep:].astype(np.float32)
        s.tail = tail if ov else None
        changed = text != s.description
        if changed:
            s.section += 1
        s.description = text
        start_s = s.out_pos / sr
        s.model_pos += e
        s.out_pos = out_end
        style = resolve_style(s.options.style, control)
        bar = BarInfo(start_s=start_s, duration_s=n_out / sr, tempo_bpm=float(tempo_for(control.arousal)),
                      key="?", mode="unknown", style=style, emotion=control.emotion, section=s.section,
                      transition=False, chord="?", instruments=STYLE_WORDS[style][1])
        log.debug("musicgen %s: chunk %.2f-%.2f s, section %d, %r", s.stream_id, start_s, start_s + n_out / sr,
                  s.section, text)
        return MusicChunk(audio=np.repeat(out[:, None], 2, axis=1), sample_rate=sr, start_s=start_s, bars=(bar,))
