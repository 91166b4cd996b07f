"""What Opus-encoding the BGM costs the event loop: per frame on the loop vs in batches on the encode thread.

``python -m loadtest.bench_bgm_encode [--tracks 12] [--seconds 10] [--noise-threads 0]`` runs ``--tracks``
:class:`~serve.webrtc.track.BgmTrack` s (50 frames/s each, real time, the system clock) over stand-in
sessions that play composed music, once with ``encode_ahead_s=0`` (each frame encoded on the loop when
due) and once with the default ahead (batches on the encode thread), and prints the loop thread's, the
encode thread's and the process's CPU per frame, thread hand-offs, lateness and fallbacks.
``--noise-threads`` adds threads that keep taking and releasing the GIL (as aiortc's decoder threads do).
Then: does libopus (through PyAV) release the GIL -- the same frames encoded by one thread, then by two.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import resource
import threading
import time
from collections.abc import Callable
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from typing import Any, TypeVar

import numpy as np

from engines.base import MoodControl, MusicStreamOptions
from engines.composer import ProceduralMusicEngine
from pipelines.clock import SystemClock
from pipelines.frames import AUDIO_RATE
from pipelines.live.options import LiveOptions
from serve.webrtc.encode_ahead import opus_encoder, to_s16
from serve.webrtc.track import BgmTrack

FRAME = 960
T = TypeVar("T")


def music(seconds: float = 8.0) -> np.ndarray:
    """Composed music at the session's BGM gain, float (n, 2)."""
    stream = ProceduralMusicEngine().open_stream(MusicStreamOptions(sample_rate=AUDIO_RATE, seed=1))
    parts, n = [], 0
    while n < seconds * AUDIO_RATE:
        chunk = stream.generate(MoodControl(valence=0.5, arousal=0.4, emotion="happy"))
        parts.append(chunk.audio)
        n += chunk.audio.shape[0]
    return (np.concatenate(parts) * np.float32(10 ** (-3 / 20))).astype(np.float32)


class LoopingSession:
    """What BgmTrack reads: the music, frame after frame, from its own offset."""

    session_id = "bench"
    closed = False
    options = LiveOptions()

    def __init__(self, audio: np.ndarray, offset: int) -> None:
        self.audio, self.pos = audio, offset

    def pull_frame(self) -> np.ndarray:
        if self.pos + FRAME > len(self.audio):
            self.pos = 0
        self.pos += FRAME
        return self.audio[self.pos - FRAME : self.pos]


def _time_frames(track: BgmTrack, busy: list[float]) -> None:
    """Instrument ``track``'s pacer: note the wall time from each frame's wake-up to its hand-out."""
    pacer = track.pacer
    wait, handed_out = pacer.wait, pacer.handed_out
    woke = [0.0]

    async def timed_wait() -> int:
        k = await wait()
        woke[0] = time.perf_counter()
        return k

    def timed_handed_out() -> None:
        busy.append(time.perf_counter() - woke[0])
        handed_out()

    pacer.wait = timed_wait  # type: ignore[method-assign]
    pacer.handed_out = timed_handed_out  # type: ignore[method-assign]


def noise(stop: threading.Event) -> None:
    """A decoder-like thread: every 20 ms, four bursts of C work without the GIL (hashing 64 KiB, ~0.1 ms),
    each between bits of Python that need it back (~0.4 ms of CPU a frame, GIL taken 5 times)."""
    data = b"x" * 65536
    while not stop.is_set():
        time.sleep(0.02)
        for _ in range(4):
            hashlib.sha256(data).digest()
            sum(range(200))


async def run_tracks(audio: np.ndarray, tracks: int, seconds: float, ahead_s: float) -> dict[str, float]:
    clock = SystemClock()
    pool = ThreadPoolExecutor(max_workers=1)
    submits = [0]

    class Counting(Executor):  # counts the hand-offs, runs them on ``pool``'s thread
        def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
            submits[0] += 1
            return pool.submit(fn, *args, **kwargs)

    executor = Counting()
    ts = [BgmTrack(LoopingSession(audio, i * 48000), clock, opus=ahead_s >= 0,  # type: ignore[arg-type]
                   encode_ahead_s=max(0.0, ahead_s), executor=executor) for i in range(tracks)]
    busy: list[float] = []  # wall s from a frame's due wake-up to its hand-out: the loop's time on it
    for t in ts:
        _time_frames(t, busy)
    lags: list[float] = []

    async def probe() -> None:  # the loop's lag: how late a 5 ms sleep wakes up
        while True:
            t0 = time.perf_counter()
            await asyncio.sleep(0.005)
            lags.append(time.perf_counter() - t0 - 0.005)

    enc_cpu0 = pool.submit(time.thread_time).result()
    loop_cpu0, proc0, wall0 = time.thread_time(), time.process_time(), time.perf_counter()
    ru0 = resource.getrusage(resource.RUSAGE_THREAD)

    async def read(t: BgmTrack) -> None:
        while True:
            await t.recv()

    readers = [asyncio.create_task(read(t)) for t in ts] + [asyncio.create_task(probe())]
    await asyncio.sleep(seconds)
    for r in readers:
        r.cancel()
    await asyncio.gather(*readers, return_exceptions=True)
    loop_cpu, proc, wall = time.thread_time() - loop_cpu0, time.process_time() - proc0, time.perf_counter() - wall0
    ru = resource.getrusage(resource.RUSAGE_THREAD)
    await asyncio.sleep(0.05)
    enc_cpu = pool.submit(time.thread_time).result() - enc_cpu0
    pool.shutdown()
    frames = sum(t.frames for t in ts)
    lateness = np.concatenate([np.array(t.lateness) for t in ts])
    encs = [t.encoder for t in ts if t.encoder is not None]
    return {
        "frames": frames, "wall_s": wall,
        "loop_us_per_frame": 1e6 * loop_cpu / frames,
        "loop_sys_us_per_frame": 1e6 * (ru.ru_stime - ru0.ru_stime) / frames,
        "loop_switches_per_frame": (ru.ru_nvcsw + ru.ru_nivcsw - ru0.ru_nvcsw - ru0.ru_nivcsw) / frames,
        "encode_thread_us_per_frame": 1e6 * enc_cpu / frames,
        "process_us_per_frame": 1e6 * proc / frames, "handoffs_per_frame": submits[0] / frames,
        "loop_wall_us_per_frame": 1e6 * sum(busy) / len(busy), "loop_busy_pct": 100 * sum(busy) / wall,
        "loop_lag_p99_ms": 1e3 * float(np.percentile(lags, 99)),
        "late_p99_ms": 1e3 * float(np.percentile(lateness, 99)), "late_max_ms": 1e3 * float(lateness.max()),
        "fallbacks": sum(e.fallback_frames for e in encs), "encode_waits": sum(e.encode_waits for e in encs),
        "skipped": sum(t.skipped for t in ts),
    }


def gil_check(audio: np.ndarray, frames: int) -> dict[str, float]:
    """Wall-clock speed-up of two threads over one on the same work (each thread its own encoder), for the
    Opus encode and, as references measured alongside on the same (possibly busy) cores, pure Python
    (holds the GIL: ~1x) and SHA-256 of 64 KiB blocks (releases it: up to 2x on two free cores)."""
    import av

    pcm = [to_s16(audio[i * FRAME : (i + 1) * FRAME]) for i in range(len(audio) // FRAME)]

    def opus(n: int) -> None:
        codec = opus_encoder()
        for i in range(n):
            f = av.AudioFrame.from_ndarray(pcm[i % len(pcm)], format="s16", layout="stereo")
            f.sample_rate = AUDIO_RATE
            f.pts = i * FRAME
            codec.encode(f)

    data = b"x" * 65536

    def sha(n: int) -> None:
        for _ in range(n * 2):
            hashlib.sha256(data).digest()

    def python(n: int) -> None:
        for _ in range(n):
            sum(range(2000))

    out: dict[str, float] = {}
    for name, fn in (("opus", opus), ("python", python), ("sha256", sha)):
        walls = {}
        for threads in (1, 2):
            best = np.inf
            for _ in range(3):
                with ThreadPoolExecutor(max_workers=threads) as ex:
                    t0 = time.perf_counter()
                    list(ex.map(fn, [frames // threads] * threads))
                    best = min(best, time.perf_counter() - t0)
            walls[threads] = best
        out[f"{name}_1_thread_s"] = walls[1]
        out[f"{name}_speedup_2_threads"] = walls[1] / walls[2]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tracks", type=int, default=12)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--noise-threads", type=int, default=0)
    ap.add_argument("--gil-frames", type=int, default=6000)
    ap.add_argument("--ahead", type=float, nargs="*", default=[0.0, LiveOptions().encode_ahead_s],
                    help="encode_ahead_s values to run (0: each frame on the loop; -1: raw frames, no Opus)")
    args = ap.parse_args()
    audio = music()
    stop = threading.Event()
    noisy = [threading.Thread(target=noise, args=(stop,), daemon=True) for _ in range(args.noise_threads)]
    for t in noisy:
        t.start()
    try:
        for ahead in args.ahead:
            r = asyncio.run(run_tracks(audio, args.tracks, args.seconds, ahead))
            print(f"encode_ahead_s={ahead}: " + ", ".join(f"{k}={v:.3g}" for k, v in r.items()), flush=True)
    finally:
        stop.set()
    g = gil_check(audio, args.gil_frames)
    print("GIL: " + ", ".join(f"{k}={v:.3g}" for k, v in g.items()))


if __name__ == "__main__":
    main()
