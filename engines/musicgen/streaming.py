"""StreamingMusicGenEngine: MusicGen streams kept alive on the device, advanced together by one scheduler.

Behind the same :class:`~engines.base.MusicEngine` / :class:`~engines.base.MusicStream` interfaces as
the chunked :class:`~engines.musicgen.MusicGenEngine`, but a stream is not a series of
continuations that re-encode their own audio: its codes and its attention state stay on the device
in a slot of a :class:`~engines.musicgen.scheduler.MusicGenScheduler`, which advances every stream of
the replica one decoding step at a time (continuous batching). A call of
:meth:`StreamingMusicGenStream.generate` hands over the next ``chunk_s`` of audio as soon as it is
made (the scheduler keeps ``lead_s`` ahead), and a new mood only changes the stream's text
conditioning from its next step on -- about ``lead_s`` later it is heard.

Audio leaves the scheduler at the model's rate (32 kHz mono) in windows of whole codec frames; each
stream resamples it to its own rate with a small stateful polyphase filter (``scipy``; the last
few samples wait for their right-hand context) and duplicates it to stereo.
"""

from __future__ import annotations

import logging
import math
import time
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

from .checkpoint import WEIGHTS
from .options import MusicGenOptions
from .prompts import STYLE_WORDS, describe, resolve_style, tempo_for
from .scheduled import ScheduledStream, SchedulerFull
from .scheduler import MusicGenScheduler

if TYPE_CHECKING:
    pass

log = logging.getLogger(__name__)

__all__ = ["SchedulerFull", "StreamingMusicGenEngine", "StreamingMusicGenStream", "StreamingOptions"]


@dataclass(frozen=True)
class StreamingOptions:
    """How the streaming engine serves: ``capacity`` streams at once; ``chunk_s`` of audio per call;
    ``lead_s`` generated ahead of the consumer; ``slide_s`` of music between window slides (the
    context kept is :attr:`MusicGenOptions.context_s`); ``dtype`` ``"bfloat16"``, ``"float16"`` or
    ``"float32"`` (default: bfloat16 on CUDA, float32 on the CPU); ``threaded``: the scheduler runs on a
    thread of its own (else each call drives it: tests, one offline stream); ``cuda_graphs``: capture
    the decoding step as CUDA graphs (default: on a CUDA device; a capture that fails falls back to
    eager steps, logged); ``slides_per_round``: window slides re-primed together at most per round."""

    capacity: int = 16
    chunk_s: float = 0.5
    lead_s: float = 0.5
    slide_s: float = 2.0
    dtype: str | None = None
    threaded: bool = True
    #: A call waits this long for its audio before giving up (a stuck device must not hang a session).
    timeout_s: float = 30.0
    cuda_graphs: bool | None = None
    slides_per_round: int = 16

    def __post_init__(self) -> None:
        if (self.capacity < 1 or self.chunk_s <= 0 or self.lead_s < 0 or self.slide_s <= 0
                or self.slides_per_round < 1):
            raise ValueError("capacity >= 1, chunk_s > 0, lead_s >= 0, slide_s > 0 and slides_per_round >= 1 "
                             "are needed")
        if self.dtype not in (None, "bfloat16", "float16", "float32"):
            raise ValueError(f"dtype must be bfloat16, float16 or float32, got {self.dtype!r}")


class _Resampler:
    """Model rate -> output rate, block by block, identical to resampling the whole signal at once except
    that the last ``pad`` input samples wait for the next block (their right-hand context)."""

    def __init__(self, src: int, dst: int) -> None:
        g = math.gcd(src, dst)
        self.up, self.down = dst // g, src // g
        self.pad = self.down * int(math.ceil(64 / self.down))
        self.hist = np.zeros(self.pad, np.float32)
        self.pend = np.zeros(0, np.float32)
        self.in_pos = 0
        self.out_pos = 0

    def push(self, x: np.ndarray) -> np.ndarray:
        if self.up == self.down:
            return x
        from scipy.signal import resample_poly

        self.pend = np.concatenate([self.pend, x])
        emit = len(self.pend) - self.pad
        if emit <= 0:
            return np.zeros(0, np.float32)
        y = resample_poly(np.concatenate([self.hist, self.pend]), self.up, self.down)
        first = self.pad * self.up // self.down
        out_end = (self.in_pos + emit) * self.up // self.down
        out = y[first : first + out_end - self.out_pos].astype(np.float32)
        self.hist = np.concatenate([self.hist, self.pend[:emit]])[-self.pad :]
        self.pend = self.pend[emit:]
        self.in_pos += emit
        self.out_pos = out_end
        return out


class StreamingMusicGenStream(MusicStream):
    """One stream of a :class:`StreamingMusicGenEngine` (see the module doc)."""

    def __init__(self, engine: StreamingMusicGenEngine, options: MusicStreamOptions, seed: int) -> None:
        if options.sample_rate <= 0:
            raise ValueError(f"sample_rate must be positive, got {options.sample_rate}")
        if options.style not in (None, "auto", *STYLES):
            raise ValueError(f"unknown style {options.style!r}; expected one of {', '.join(STYLES)} or auto")
        self.engine, self.options, self.seed = engine, options, seed
        self.sample_rate = options.sample_rate
        # the slot is taken now (SchedulerFull when there is none): admission happens when a stream opens
        self._scheduled: ScheduledStream = engine.scheduler.open(seed, "")
        self._resampler = _Resampler(engine.model_rate, options.sample_rate)
        self._out = np.zeros(0, np.float32)
        self.out_pos = 0
        self.section = -1
        self.description: str | None = None
        self.closed = False

    def generate(self, control: MoodControl, min_duration_s: float = 0.0) -> MusicChunk:
        """The next ``max(chunk_s, min_duration_s)`` of music, in the mood of ``control`` from now on."""
        if self.closed:
            raise ValueError("stream is closed")
        eng = self.engine
        text = describe(control, self.options.style)
        eng.scheduler.set_text(self._scheduled, text)
        if text != self.description:
            self.section += 1
            self.description = text
        n_out = int(round(max(eng.streaming.chunk_s, min_duration_s) * self.sample_rate))
        block = eng.scheduler.sub_frames * eng.hop
        while len(self._out) < n_out:
            audio = eng.scheduler.take(self._scheduled, block, timeout=eng.streaming.timeout_s)
            self._out = np.concatenate([self._out, self._resampler.push(audio)])
        out, self._out = self._out[:n_out], self._out[n_out:]
        start_s = self.out_pos / self.sample_rate
        self.out_pos += n_out
        style = resolve_style(self.options.style, control)
        bar = BarInfo(start_s=start_s, duration_s=n_out / self.sample_rate, tempo_bpm=float(tempo_for(control.arousal)),
                      key="?", mode="unknown", style=style, emotion=control.emotion, section=self.section,
                      transition=False, chord="?", instruments=STYLE_WORDS[style][1])
        return MusicChunk(audio=np.repeat(out[:, None], 2, axis=1), sample_rate=self.sample_rate, start_s=start_s,
                          bars=(bar,))

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.engine.scheduler.close(self._scheduled)


class StreamingMusicGenEngine(MusicEngine):
    """MusicGen with persistent streams and continuous batching (see the module doc).

    Build it with :meth:`from_pretrained`, or from a ``MusicgenForConditionalGeneration`` and its
    processor in memory. ``device``: where the model runs (default: CUDA when torch sees it).
    :meth:`open_stream` raises :class:`SchedulerFull` (an :class:`~engines.base.EngineBusy`) when all
    ``capacity`` slots are taken.
    """

    name = "musicgen"

    def __init__(self, model: Any, processor: Any, options: MusicGenOptions | None = None,
                 streaming: StreamingOptions | None = None, device: str | None = None) -> None:
        import torch

        self.options = options or MusicGenOptions()
        self.streaming = s = streaming or StreamingOptions()
        dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        dtype = getattr(torch, s.dtype) if s.dtype else (torch.bfloat16 if dev.type == "cuda" else torch.float32)
        self.model = model.to(dev).eval()
        self.processor = processor
        cfg = model.config
        self.model_rate = int(cfg.audio_encoder.sampling_rate)
        self.hop = int(np.prod(cfg.audio_encoder.upsampling_ratios))
        frame_rate = self.model_rate / self.hop
        self.scheduler = MusicGenScheduler(
            self.model, processor, self.options, capacity=s.capacity, slide_s=s.slide_s, device=str(dev),
            dtype=dtype, sub_frames=max(1, round(s.chunk_s * frame_rate)),
            lead_frames=max(0, round(s.lead_s * frame_rate)), slides_per_round=s.slides_per_round,
            cuda_graphs=dev.type == "cuda" if s.cuda_graphs is None else s.cuda_graphs)
        #: A new mood is heard after what is generated ahead: the offline plan asks that many chunks early.
        self.change_latency_chunks = max(0, round(s.lead_s / s.chunk_s))
        if s.threaded:
            self.scheduler.start()

    @classmethod
    def from_pretrained(cls, weights: str | None = None, device: str | None = None, allow_download: bool = False,
                        options: MusicGenOptions | None = None, streaming: StreamingOptions | None = None,
                        backend: str = "auto") -> StreamingMusicGenEngine:
        """Load model and processor from ``weights`` / ``$BACKSCORE_MUSICGEN_WEIGHTS`` / the HF cache (see
        :data:`~engines.musicgen.checkpoint.WEIGHTS`). The engine runs in torch: ``backend`` may be ``auto``,
        ``torch-cuda`` or ``torch-cpu`` (which also picks ``device``); another backend is
        :class:`EngineUnavailable` naming the engine that runs parts of MusicGen there."""
        from engines.backends import requested_backend

        try:
            wanted, _ = requested_backend(backend)
        except ValueError as exc:
            raise EngineUnavailable(str(exc)) from exc
        if wanted not in ("auto", "torch-cuda", "torch-cpu"):
            raise EngineUnavailable(f"the streaming MusicGen engine runs in torch (torch-cuda or torch-cpu), not "
                                    f"{wanted}; --engine musicgen-chunked runs its text encoder and EnCodec there")
        if device is None and wanted != "auto":
            device = "cuda" if wanted == "torch-cuda" else "cpu"
        model, processor, path = WEIGHTS.load("MusicgenForConditionalGeneration", "AutoProcessor", weights,
                                              allow_download=allow_download, backend=backend)
        engine = cls(model, processor, options, streaming, device)
        log.info("musicgen (streaming): loaded %s on %s, %d streams", path, engine.scheduler.device,
                 engine.scheduler.capacity)
        return engine

    def open_stream(self, options: MusicStreamOptions) -> StreamingMusicGenStream:
        seed = int(np.random.SeedSequence([self.options.seed, options.seed]).generate_state(1)[0])
        return StreamingMusicGenStream(self, options, seed)

    def close(self) -> None:
        """Stop the scheduler's thread (the streams' state goes with the engine)."""
        self.scheduler.stop()

    def stats(self) -> dict[str, float]:
        """Active streams and the scheduler's counters (for metrics)."""
        st = self.scheduler.stats
        return {"active_streams": float(len(self.scheduler.active)), "steps": float(st.steps),
                "step_seconds": st.step_seconds, "mean_batch": st.batch_rows / max(1, st.steps),
                "slides": float(st.slides), "decode_seconds": st.decode_seconds, "time": time.monotonic()}

