"""Continuous batching of MusicGen streams: one scheduler per model replica advances every stream together.

:class:`MusicGenScheduler` owns a :class:`~engines.musicgen.static_decoder.StaticDecoder` with a
slot per stream, and a loop (:meth:`MusicGenScheduler.run_once`, on its own thread via
:meth:`MusicGenScheduler.start`) that repeats, in the manner of vLLM's engine loop:

1. **admit and retire** -- streams join (a free slot, position 0, the start column) and leave (the
   last active slot moves into the freed one, so the active slots stay first) between steps;
2. **texts** -- new descriptions are encoded by the text encoder in one batch and swapped into their
   slots' cross-attention state (the stream's music so far is kept);
3. **window slides** -- a stream whose positions ran out restarts from its last ``context`` frames,
   once every ``chunk`` of frames; the streams due are re-primed together in one batch, at most
   ``slides_per_round`` a round, their first slides staggered (:mod:`engines.musicgen.slides`);
4. **one step** -- every active stream that wants more frames than it has advances by one column
   (:meth:`~engines.musicgen.static_decoder.StaticDecoder.step`); the others' rows are computed and
   discarded (a full stream waits without leaving its slot); tokens are picked with each stream's
   counter-based random numbers (:mod:`engines.musicgen.sampling`);
5. **audio** -- streams with enough new complete frames are decoded by EnCodec together
   (:class:`~engines.musicgen.codec_stream.CodecWindows`) and their audio is handed to them.

Codes live on the device in the delayed layout MusicGen uses: column ``c`` holds frame ``c - 1 - k``
of codebook ``k`` (column 0 is the start column), one row of ``cols`` per slot. A frame is complete
once its last codebook is known, ``K - 1`` columns after its first.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from .codec_stream import CodecWindows
from .graphs import HostMasks, StepGraphs
from .options import MusicGenOptions
from .sampling import pick
from .scheduled import ScheduledStream, SchedulerFull, SchedulerStats
from .slides import WindowSlides
from .static_decoder import StaticDecoder, positions_for

if TYPE_CHECKING:
    import torch


log = logging.getLogger(__name__)


class MusicGenScheduler:
    """Continuous batching of MusicGen streams on one device (see the module doc).

    ``capacity``: the most streams at once (their state is allocated up front); ``slide_s``: music
    generated between two window slides (the context is ``options.context_s``); ``lead_frames``:
    how far ahead of what its consumer took a stream is generated; ``sub_frames``: frames of audio
    decoded and handed over at once (``<= 25``: half a second). Sampling follows ``options``.
    ``cuda_graphs``: capture the step as CUDA graphs (on a CUDA device; if the capture fails the
    steps run eagerly and :attr:`graphs_error` says why). ``slides_per_round`` and ``stagger_slides``:
    see :class:`~engines.musicgen.slides.WindowSlides`.
    """

    def __init__(self, model: Any, processor: Any, options: MusicGenOptions, *, capacity: int = 16,
                 slide_s: float = 2.0, device: str | None = None, dtype: torch.dtype | None = None,
                 sub_frames: int = 25, lead_frames: int = 25, max_text: int = 64, cuda_graphs: bool = False,
                 slides_per_round: int = 16, stagger_slides: bool = True,
                 clock: Callable[[], float] = time.monotonic) -> None:
        import torch

        self.model, self.processor, self.options = model, processor, options
        cfg = model.config
        self.device = torch.device(device) if device is not None else next(model.parameters()).device
        self.K = int(cfg.decoder.num_codebooks)
        self.pad = int(cfg.decoder.pad_token_id)
        self.model_rate = int(cfg.audio_encoder.sampling_rate)
        self.hop = int(np.prod(cfg.audio_encoder.upsampling_ratios))
        self.frame_rate = self.model_rate / self.hop
        self.ctx_frames = max(1, round(options.context_s * self.frame_rate))
        self.max_positions = positions_for(options.context_s, slide_s, self.frame_rate, self.K)
        self.decoder = StaticDecoder(model, capacity, self.max_positions, max_text,
                                     guidance_scale=options.guidance_scale, dtype=dtype, device=self.device)
        self.capacity = capacity
        self.slider = WindowSlides(self.max_positions, self.ctx_frames, self.K, per_round=slides_per_round,
                                   stagger=stagger_slides)
        self.sub_frames = sub_frames
        self.lead_frames = lead_frames
        self.codec = CodecWindows(model, self.device, left_frames=round(options.decode_context_s * self.frame_rate),
                                  hold_frames=2)
        #: Codes per slot, delayed layout (see the module doc); one column more than positions.
        self.cols = torch.full((capacity, self.K, self.max_positions + 1), self.pad, dtype=torch.long,
                               device=self.device)
        self._k = torch.arange(self.K, device=self.device)
        self.streams: dict[int, ScheduledStream] = {}
        self.active: list[ScheduledStream] = []  # by slot
        self._joins: deque[ScheduledStream] = deque()
        self._leaves: deque[ScheduledStream] = deque()
        self._mutex = threading.RLock()
        #: The loop waits on this for work; each stream's consumer waits on its own condition
        #: (:attr:`ScheduledStream.ready`), both on the same lock.
        self._lock = threading.Condition(self._mutex)
        self._thread: threading.Thread | None = None
        self._stop = False
        self.clock = clock
        self.stats = SchedulerStats()
        self._next_sid = 0
        #: Host copy of each slot's position (kept in step with the device's without reading it back).
        self._pos: list[int] = [0] * capacity
        #: Per slot on the device: the stream's seed, its step counter, whether it takes this step.
        self.seeds = torch.zeros(capacity, dtype=torch.long, device=self.device)
        self.steps = torch.zeros(capacity, dtype=torch.long, device=self.device)
        self.want = torch.zeros(capacity, dtype=torch.bool, device=self.device)
        self._masks = HostMasks(capacity, self.device)
        self._slots = torch.arange(capacity, device=self.device)
        self.graphs = StepGraphs()
        #: Why the CUDA graphs could not be captured (None: captured, or not asked for).
        self.graphs_error: str | None = None
        if cuda_graphs:
            self.capture_graphs()

    # ------------------------------------------------------------------ consumer side (any thread)
    def open(self, seed: int, text: str) -> ScheduledStream:
        """A new stream; :class:`SchedulerFull` when every slot is taken."""
        with self._lock:
            if len(self.active) + len(self._joins) >= self.capacity:
                raise SchedulerFull(f"all {self.capacity} MusicGen streams of this replica are in use")
            st = ScheduledStream(self._next_sid, seed, text, joined_at=self.clock(),
                                 ready=threading.Condition(self._mutex))
            self._next_sid += 1
            self.streams[st.sid] = st
            self._joins.append(st)
            self._lock.notify_all()
            return st

    def close(self, st: ScheduledStream) -> None:
        with self._lock:
            if not st.closed:
                st.closed = True
                self._leaves.append(st)
                self._lock.notify_all()
                st.ready.notify_all()

    def set_text(self, st: ScheduledStream, text: str) -> None:
        """Condition the stream on ``text`` from its next step on."""
        with self._lock:
            if text != (st.pending_text or st.text):
                st.pending_text = text
                if st.steps:  # a change of mood, not the stream's first text
                    st.text_changed_at = self.clock()
                self._lock.notify_all()

    def want_frames(self, st: ScheduledStream, frames: int) -> None:
        """The consumer of ``st`` wants its first ``frames`` frames (absolute) complete: wake the loop."""
        with self._lock:
            if frames > st.target_frames:
                st.target_frames = frames
                self._lock.notify_all()

    def take(self, st: ScheduledStream, n_samples: int, timeout: float | None = None) -> np.ndarray:
        """The stream's next ``n_samples`` of model-rate audio, waiting for the scheduler to make them.

        Asks for them (and ``lead_frames`` more) first, so the scheduler keeps the stream ahead."""
        deadline = None if timeout is None else self.clock() + timeout
        with self._lock:
            frames = -(-max(0, n_samples - st.audio_samples) // self.hop)
            # audio is handed over in windows of sub_frames, each once the frames held back after it are
            # complete too
            want = st.emitted_frames + -(-frames // self.sub_frames) * self.sub_frames + self.codec.hold_frames
            st.target_frames = max(st.target_frames, want + self.lead_frames)
            self._lock.notify_all()
            while st.audio_samples < n_samples:
                if st.closed:
                    raise RuntimeError(f"stream {st.sid} is closed")
                if self._thread is None:  # no thread: the caller drives the scheduler
                    self._lock.release()
                    try:
                        self.run_once()
                    finally:
                        self._lock.acquire()
                    continue
                left = None if deadline is None else deadline - self.clock()
                if left is not None and left <= 0:
                    raise TimeoutError(f"stream {st.sid}: no audio within {timeout} s")
                st.ready.wait(left)
                st.wakeups += 1
            return st.pop_audio(n_samples)

    def drain_metrics(self) -> dict[str, Any]:
        """What happened since the last call, for the metrics: active streams, steps, mean seconds per
        step and streams per step, the slowest active stream's real-time factor (audio made per second
        since it joined, streams older than 2 s), and the first-audio and mood-change latencies seen."""
        with self._lock:
            now = self.clock()
            rtf = [self._complete(s) / self.frame_rate / (now - s.joined_at)
                   for s in self.active if now - s.joined_at > 2.0]
            drained = self.stats.drain()
        return {"active_streams": len(self.active), "capacity": self.capacity, **drained,
                "min_realtime_factor": min(rtf) if rtf else None}

    # ------------------------------------------------------------------ the loop
    def start(self) -> None:
        """Run the loop on a thread of its own until :meth:`stop`."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="musicgen-scheduler", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        with self._lock:
            self._stop = True
            self._lock.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        with self._lock:  # waiting consumers drive the scheduler themselves from now on
            for st in self.streams.values():
                st.ready.notify_all()

    def _loop(self) -> None:
        while True:
            with self._lock:
                while not self._stop and not self._has_work():
                    self._lock.wait(0.5)
                if self._stop:
                    return
            try:
                self.run_once()
            except Exception:  # a failed step must not kill the replica's music: log, wake the waiters
                log.exception("musicgen scheduler step failed")
                time.sleep(0.1)

    def _has_work(self) -> bool:
        return bool(self._joins or self._leaves or any(
            s.pending_text is not None or self._complete(s) < s.target_frames for s in self.active))

    def _complete(self, st: ScheduledStream) -> int:
        """Absolute frames of ``st`` whose every codebook is known."""
        if st.slot < 0:
            return st.frame_base
        return st.frame_base + max(0, self._pos[st.slot] - self.K + 1)

    def run_once(self) -> None:
        """One round of the loop (see the module doc): admit/retire, texts, slides, a step, audio."""
        import torch

        with torch.inference_mode():
            self._admit_and_retire()
            t0 = time.perf_counter()
            self._encode_texts()
            t1 = time.perf_counter()
            self._slide()
            self.stats.text_seconds += t1 - t0
            self.stats.slide_seconds += time.perf_counter() - t1
            self._step()
            self._emit_audio()

    # ------------------------------------------------------------------ parts of a round
    def _admit_and_retire(self) -> None:
        # under the lock: readers (metrics, consumers) never see a stream between two slots
        with self._lock:
            leaves, joins = list(self._leaves), list(self._joins)
            self._leaves.clear()
            self._joins.clear()
            for st in leaves:
                if st.slot < 0:
                    self.streams.pop(st.sid, None)
                    continue
                last = len(self.active) - 1
                freed = st.slot
                if freed != last:
                    mover = self.active[last]
                    self.decoder.move(last, freed)
                    self.cols[freed] = self.cols[last]
                    self._pos[freed] = self._pos[last]
                    self.seeds[freed] = self.seeds[last]
                    self.steps[freed] = self.steps[last]
                    mover.slot = freed
                    self.active[freed] = mover
                self.active.pop()
                self.decoder.reset(last)
                self.steps[last] = 0
                self._pos[last] = 0
                st.slot = -1
                self.streams.pop(st.sid, None)
                self.codec.forget(st.sid)
            for st in joins:
                if st.closed:
                    self.streams.pop(st.sid, None)
                    continue
                st.slot = len(self.active)
                st.slide_at = self.slider.first_slide_at(st.seed)
                self.active.append(st)
                self.decoder.reset(st.slot)
                self._pos[st.slot] = 0
                self.seeds[st.slot] = st.seed
                self.steps[st.slot] = st.steps
                self.cols[st.slot].fill_(self.pad)
                st.pending_text = st.pending_text or st.text

    def _encode_texts(self) -> None:
        with self._lock:
            todo = [(s, s.pending_text) for s in self.active if s.pending_text is not None]
            for s, text in todo:
                s.pending_text = None
                assert text is not None
                s.text = text
        if not todo:
            return
        tok = self.processor.tokenizer([t for _, t in todo], padding=True, return_tensors="pt")
        ids, mask = tok["input_ids"].to(self.device), tok["attention_mask"].to(self.device)
        hidden = self.model.text_encoder(input_ids=ids, attention_mask=mask).last_hidden_state
        for i, (s, _) in enumerate(todo):
            self.decoder.set_text(s.slot, hidden[i], mask[i])
            # the next step feeds column pos and makes column pos + 1: codebook 0 of frame pos
            s.change_frame = s.frame_base + self._pos[s.slot]
        self.stats.text_encodes += 1

    def _slide(self) -> None:
        """Restart the streams whose positions ran out from their last ``ctx_frames`` frames
        (:class:`~engines.musicgen.slides.WindowSlides`)."""
        with self._lock:  # most urgent first: the least music made ahead of what its consumer wants
            due = self.slider.due(self.active, self._pos, lambda st: self._complete(st) - st.target_frames)
        if not due:
            return
        slots, logits, shifts = self.slider.restart(due, self.cols, self._pos, self.decoder, self.pad)
        o = self.options
        tokens = pick(logits, self.seeds[slots], self.steps[slots], do_sample=o.do_sample,
                      temperature=o.temperature, top_k=o.top_k)
        with self._lock:  # readers of _complete (metrics, consumers) see old or new counts, never a mix
            self.slider.finish(due, self.cols, self._pos, slots, tokens, self.pad, shifts)
        self.steps[slots] += 1
        self.stats.slides += len(due)

    def _step(self) -> None:
        n = len(self.active)
        if n == 0:
            return
        with self._lock:
            # a stream waiting for its window slide does not step (see the module doc, 3.)
            wants = [self._complete(s) < s.target_frames and self._pos[s.slot] < s.slide_at for s in self.active]
        if not any(wants):
            return
        t0 = time.perf_counter()
        self._masks.upload(wants, self.want)
        self.graphs.run(n, self._advance)
        for st, w in zip(self.active, wants, strict=True):
            if w:
                self._pos[st.slot] += 1
                st.steps += 1
        self.stats.steps += 1
        self.stats.batch_rows += n
        self.stats.step_seconds += time.perf_counter() - t0

    def _advance(self, n: int) -> None:
        """On the device only: slots ``0..n-1`` whose ``want`` is set take one step and get their next
        column; the others keep their state. No host synchronisation (a CUDA graph replays it)."""
        import torch

        slots = self._slots[:n]
        want = self.want[:n]
        columns = self.cols[slots, :, self.decoder.pos[:n]]  # (n, K): each slot's newest column
        logits = self.decoder.step(n, columns, advance=want)
        o = self.options
        tokens = pick(logits, self.seeds[:n], self.steps[:n], do_sample=o.do_sample, temperature=o.temperature,
                      top_k=o.top_k)
        new = self.decoder.pos[:n]  # the new column's index (unchanged for a slot that did not step)
        valid = (new[:, None] - 1 - self._k[None, :]) >= 0  # codebook k holds frame pos-1-k
        idx = (slots[:, None], self._k[None, :], new[:, None])
        tokens = torch.where(valid, tokens, torch.full_like(tokens, self.pad))
        self.cols[idx] = torch.where(want[:, None], tokens, self.cols[idx])
        self.steps[:n] += want.long()

    def capture_graphs(self) -> None:
        """Capture the step as CUDA graphs (:mod:`engines.musicgen.graphs`); before any stream joins."""
        if self.device.type != "cuda":
            raise RuntimeError("CUDA graphs need a CUDA device")
        if self.active:
            raise RuntimeError("capture the graphs before any stream joins")

        def reset() -> None:
            self.want.zero_()
            self.decoder.pos.zero_()
            self.steps.zero_()
            self.cols.fill_(self.pad)

        self.graphs_error = self.graphs.capture(self._advance, self.capacity, reset, reset)
        if self.graphs_error:
            log.warning("musicgen: CUDA graph capture failed, the steps run eagerly: %s", self.graphs_error)

    def _emit_audio(self) -> None:
        """Decode and hand over ``sub_frames`` of audio for every stream that has them complete."""
        ready = []
        for st in self.active:
            complete = self._complete(st)
            if complete - st.emitted_frames >= self.sub_frames + self.codec.hold_frames:
                ready.append(st)
        if not ready:
            return
        t0 = time.perf_counter()
        windows = [(st.slot, st.emitted_frames - st.frame_base, self.sub_frames) for st in ready]
        audios = self.codec.decode(self.cols, windows, keys=[st.sid for st in ready])
        now = self.clock()
        with self._lock:
            for st, audio in zip(ready, audios, strict=True):
                st.hand_over(audio, self.sub_frames, now, self.stats)
                st.ready.notify()
        self.stats.decodes += 1
        self.stats.decode_seconds += time.perf_counter() - t0
