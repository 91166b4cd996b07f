"""The async job store without HTTP: bounds, expiry and the wall-time limit on a clock the test moves, cancel,
owners, listeners; keyframe thumbnails and track previews on real media.

The store runs the work it is given on a real thread pool under the job's cancel token (as the gateway's
job runner does). The work here is a small stepper the test drives -- it reports progress through the job's
real :class:`~pipelines.progress.Progress` and checks for cancellation the way the pipelines do -- so what is
checked is the store's own logic; the real analyse/compose work runs in tests/serve/test_jobs_api.py.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import math
import os
import threading
import time
import wave
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest

from pipelines.cancel import CancelToken, cancel_scope, check_cancelled
from pipelines.errors import ConflictError, GoneError, NotFoundError
from pipelines.jobs import CANCELLED, DONE, FAILED, Job, JobLimits, JobsBusy, JobSpec, JobStore, JobWatch
from pipelines.jobs.media import PREVIEW_S, keyframe_thumbnails, thumbnail_times, track_preview
from pipelines.library.tracks import TrackInfo
from tests.conftest import calm_then_bright

WAIT_S = 30.0  # an upper bound for things that happen at once, never a timing assertion


def _until(cond: Any) -> None:
    deadline = time.monotonic() + WAIT_S
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.001)


class Clock:
    def __init__(self, t: float = 1_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


class Pool:
    """``submit(fn, *args, token=)`` on real threads, each call under its token (what JobRunner does)."""

    def __init__(self, threads: int = 2) -> None:
        self.pool = concurrent.futures.ThreadPoolExecutor(threads)

    def submit(self, fn: Any, *args: Any, token: CancelToken | None = None) -> concurrent.futures.Future[Any]:
        def run() -> Any:
            with cancel_scope(token):
                if token is not None:
                    token.check()
                return fn(*args)

        return self.pool.submit(run)


class Stepper:
    """Work in steps the test releases one at a time: stage ``analyse`` then ``compose``, progress through the
    job's Progress, a cancellation check at every step (like the decoder and the composer)."""

    def __init__(self, steps: int = 4) -> None:
        self.steps = steps
        self.go = threading.Semaphore(0)
        self.started = threading.Event()
        self.done_steps = 0
        self.fail_with: Exception | None = None

    def release(self, n: int = 1) -> None:
        for _ in range(n):
            self.go.release()

    def __call__(self, job: Job, spec: JobSpec, reuse: bool) -> None:
        self.started.set()
        for stage in ("analyse", "compose"):
            job.progress.stage(stage)
            for i in range(self.steps):
                while not self.go.acquire(timeout=0.01):
                    check_cancelled()
                check_cancelled()
                self.done_steps += 1
                job.progress.update((i + 1) / self.steps)
        if self.fail_with is not None:
            raise self.fail_with
        Path(job.folder, "out.txt").write_text("result")
        job.add_file("out.txt", "text/plain", "out")


SPEC = JobSpec("score")


def _store(tmp_path: Path, work: Any, clock: Clock, **limits: Any) -> JobStore:
    return JobStore(os.fspath(tmp_path / "jobs"), Pool().submit, JobLimits(**limits), clock=clock, work=work)


def _upload(tmp_path: Path, name: str = "up.mp4") -> str:
    p = tmp_path / name
    p.write_bytes(b"x")
    return os.fspath(p)


def test_progress_is_monotonic_to_done_and_results_expire_on_the_clock(tmp_path: Path) -> None:
    clock, work = Clock(), Stepper()
    store = _store(tmp_path, work, clock, ttl_s=60.0)
    job = store.create(SPEC, _upload(tmp_path), "clip.mp4", options={"style": "lofi"})
    views: list[Any] = []
    job.subscribe(views.append)
    assert work.started.wait(WAIT_S)
    for _ in range(8):
        clock.t += 1.0
        work.release()
    assert job.work_done.wait(WAIT_S)
    v = job.view()
    assert v.state == DONE and v.fraction == 1.0 and v.stages_run == ("analyse", "compose")
    assert v.finished_at is not None and v.expires_at == v.finished_at + 60.0
    assert v.results["out"].name == "out.txt"
    fractions = [x.fraction for x in views]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0 and len(set(fractions)) >= 8
    assert [x.seq for x in views] == sorted(x.seq for x in views)
    assert any(x.eta_s is not None and x.eta_s > 0 for x in views)
    # still there just before the TTL; gone after it: 410, files removed
    clock.t = v.finished_at + 59.0
    assert store.get(job.id) is job
    clock.t = v.finished_at + 60.0
    with pytest.raises(GoneError):
        store.get(job.id)
    assert not os.path.exists(job.folder) and job.freed.is_set()
    with pytest.raises(NotFoundError):
        store.get("never-was")


def test_delete_stops_the_work_at_its_next_check_and_removes_the_folder(tmp_path: Path) -> None:
    work = Stepper()
    released: list[int] = []
    store = _store(tmp_path, work, Clock())
    job = store.create(SPEC, _upload(tmp_path), "clip.mp4", release=lambda: released.append(1))
    assert work.started.wait(WAIT_S)
    work.release(2)
    _until(lambda: work.done_steps >= 2)
    Path(job.folder, "partial.bin").write_bytes(b"half a result")
    store.delete(job.id)
    assert job.freed.wait(WAIT_S) and job.work_done.is_set()
    assert not os.path.exists(job.folder)
    assert work.done_steps == 2, "the work went on after it was cancelled"
    v = job.view()
    assert v.state == CANCELLED and v.error is not None and v.error["type"] == "Cancelled"
    assert released == [1]  # the key's job slot is given back once, when the work let go
    with pytest.raises(NotFoundError):
        store.get(job.id)


def test_a_job_cancelled_while_queued_never_runs(tmp_path: Path) -> None:
    first, second = Stepper(), Stepper()
    calls: list[str] = []

    def work(job: Job, spec: JobSpec, reuse: bool) -> None:
        calls.append(job.id)
        (first if len(calls) == 1 else second)(job, spec, reuse)

    store = JobStore(os.fspath(tmp_path / "jobs"), Pool(threads=1).submit, clock=Clock(), work=work)
    a = store.create(SPEC, _upload(tmp_path, "a.mp4"), "a.mp4")
    assert first.started.wait(WAIT_S)
    b = store.create(SPEC, _upload(tmp_path, "b.mp4"), "b.mp4")
    assert b.view().state == "queued"
    store.delete(b.id)
    first.release(8)
    assert a.work_done.wait(WAIT_S) and b.freed.wait(WAIT_S)
    assert calls == [a.id] and b.view().state == CANCELLED and not os.path.exists(b.folder)


def test_bounds_answer_busy_with_a_useful_retry_after(tmp_path: Path) -> None:
    clock, work = Clock(), Stepper(steps=10)
    store = _store(tmp_path, work, clock, max_active=1, max_stored=2, ttl_s=100.0)
    a = store.create(SPEC, _upload(tmp_path, "a.mp4"), "a.mp4")
    assert work.started.wait(WAIT_S)
    clock.t += 10.0
    work.release(2)
    _until(lambda: work.done_steps >= 2)
    v = a.view()
    assert 0 < v.fraction < 0.5 and v.eta_s == pytest.approx(10.0 * (1 - v.fraction) / v.fraction, abs=0.1)
    with pytest.raises(JobsBusy) as busy:  # room again when the running job should end
        store.create(SPEC, _upload(tmp_path, "b.mp4"), "b.mp4")
    assert v.eta_s is not None and busy.value.retry_after_s == math.ceil(v.eta_s)
    work.release(18)
    assert a.work_done.wait(WAIT_S)
    work.release(20)
    b = store.create(SPEC, _upload(tmp_path, "b.mp4"), "b.mp4")
    assert b.work_done.wait(WAIT_S)
    clock.t += 30.0
    with pytest.raises(JobsBusy) as full:  # two kept: room again when the first expires
        store.create(SPEC, _upload(tmp_path, "c.mp4"), "c.mp4")
    assert full.value.retry_after_s == pytest.approx((a.view().expires_at or 0.0) - clock.t, abs=1)
    store.delete(a.id)
    c = store.create(SPEC, _upload(tmp_path, "c.mp4"), "c.mp4")
    work.release(20)
    assert c.work_done.wait(WAIT_S) and c.view().state == DONE


def test_a_job_past_the_wall_time_limit_fails_with_a_deadline_error(tmp_path: Path) -> None:
    clock, work = Clock(), Stepper()
    store = _store(tmp_path, work, clock, timeout_s=50.0)
    job = store.create(SPEC, _upload(tmp_path), "clip.mp4")
    assert work.started.wait(WAIT_S)
    clock.t += 49.0
    store.sweep()
    work.release()
    _until(lambda: work.done_steps >= 1)
    assert job.view().state == "running"
    clock.t += 2.0
    store.sweep()
    assert job.work_done.wait(WAIT_S)
    v = job.view()
    assert v.state == FAILED and v.error is not None and v.error["type"] == "DeadlineExceeded"
    assert os.path.exists(job.folder)  # a failed job is kept (its error readable) until it expires


def test_errors_are_reported_without_server_paths_and_owners_see_only_their_jobs(tmp_path: Path) -> None:
    from pipelines.errors import InputError

    work = Stepper(steps=1)
    store = _store(tmp_path, work, Clock())
    job = store.create(SPEC, _upload(tmp_path), "holiday.mp4", owner="alice")
    work.fail_with = InputError(f"corrupt or truncated video data in {job.input_path} (bad)")
    work.release(2)
    assert job.work_done.wait(WAIT_S)
    v = job.view()
    assert v.state == FAILED and v.error == {"type": "InputError",
                                             "message": "corrupt or truncated video data in holiday.mp4 (bad)"}
    assert store.get(job.id, "alice") is job
    for other in ("bob", None):
        with pytest.raises(NotFoundError):
            store.get(job.id, other)
    assert store.jobs("bob") == [] and store.jobs("alice") == [job]


def test_a_job_made_from_one_without_an_analysis_is_a_conflict(tmp_path: Path) -> None:
    work = Stepper(steps=1)
    store = _store(tmp_path, work, Clock())
    job = store.create(SPEC, _upload(tmp_path), "clip.mp4")
    with pytest.raises(ConflictError):
        store.derive(job.id, JobSpec("score", track=None))
    work.release(2)
    assert job.work_done.wait(WAIT_S)


def test_listeners_that_fail_or_stop_reading_do_not_touch_the_job(tmp_path: Path) -> None:
    work = Stepper()
    store = _store(tmp_path, work, Clock())
    job = store.create(SPEC, _upload(tmp_path), "clip.mp4")

    def broken(_: Any) -> None:
        raise RuntimeError("a listener bug")

    job.subscribe(broken)

    async def watch_then_leave() -> tuple[int, int]:
        w = JobWatch(job)
        first = w.latest.seq
        work.release()
        newer = await w.next(first, timeout_s=WAIT_S)
        assert newer is not None and newer.seq > first
        w.close()  # the consumer goes away mid-job
        return first, newer.seq

    asyncio.run(watch_then_leave())
    assert job.listeners == 0  # the broken one was dropped, the watch unsubscribed
    work.release(8)
    assert job.work_done.wait(WAIT_S) and job.view().state == DONE


# --------------------------------------------------------------------------- media for a studio


@pytest.fixture(scope="module")
def clip(video_dir: Path) -> Path:
    return calm_then_bright(video_dir, "jobs_thumbs.mp4", 2.5, width=160, height=120)


def test_keyframe_thumbnails_spread_over_the_video_as_small_jpegs(clip: Path, tmp_path: Path) -> None:
    thumbs = keyframe_thumbnails(os.fspath(clip), os.fspath(tmp_path), height=60)
    times = [t for t, _ in thumbs]
    assert len(thumbs) == len(thumbnail_times(5.0)) == 5
    assert times == sorted(times) and len(set(times)) == len(times) and 0.0 <= times[0] and times[-1] < 5.0
    means = []
    for _, name in thumbs:
        with av.open(os.fspath(tmp_path / name)) as c:
            frame = next(c.decode(video=0))
            assert frame.height == 60 and frame.width == 80
            means.append(frame.to_ndarray(format="rgb24").mean())
    # the calm half is dark, the bright half bright: the thumbnails show the picture at their times
    assert max(means[i] for i, t in enumerate(times) if t < 2.4) < min(means[i] for i, t in enumerate(times)
                                                                       if t >= 2.6)
    assert thumbnail_times(0.4) == [0.2] and len(thumbnail_times(3600.0)) == 40


def test_a_track_preview_is_a_faded_clip_of_the_track(tmp_path: Path) -> None:
    sr = 48_000
    t = np.arange(30 * sr) / sr
    tone = (0.5 * np.sin(2 * np.pi * 220 * t) * (t / 30.0)).astype(np.float32)  # louder as it goes
    path = tmp_path / "song.wav"
    with wave.open(os.fspath(path), "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(sr)
        w.writeframes((np.repeat(tone[:, None], 2, axis=1) * 32767).astype("<i2").tobytes())
    track = TrackInfo(7, "song", os.fspath(path), 30.0, 0.0, 0.0, ("neutral",), 100.0, "C", "major")
    out = tmp_path / "preview.wav"
    seconds = track_preview(track, os.fspath(out))
    with wave.open(os.fspath(out)) as w:
        assert w.getframerate() == sr and w.getnchannels() == 2 and w.getnframes() == int(PREVIEW_S * sr)
        pcm = np.frombuffer(w.readframes(w.getnframes()), "<i2").reshape(-1, 2).astype(np.float32) / 32767
    assert seconds == PREVIEW_S
    assert abs(pcm[0]).max() < 1e-3 and abs(pcm[-1]).max() < 1e-3  # faded in and out
    middle = np.abs(pcm[len(pcm) // 2 - 2400: len(pcm) // 2 + 2400, 0]).max()
    # from 30 % into the track: (30 - 12) * 0.3 + 6 = 11.4 s in, where the tone's amplitude is 0.5 * 11.4 / 30
    assert middle == pytest.approx(0.5 * 11.4 / 30, rel=0.05)
