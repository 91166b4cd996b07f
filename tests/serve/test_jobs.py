"""The job pool and request folders: cancelled or overlong jobs stop at their next check and free
their thread; request folders go whatever happens to the request, and orphans are swept."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipelines.cancel import CancelToken, bind, cancel_scope, check_cancelled
from pipelines.errors import DeadlineError, JobCancelled
from pipelines.offline import jobs
from pipelines.options import JobOptions
from serve.jobs import JobRunner, Workdirs

pytestmark = pytest.mark.hostile  # the hostile-input suite: pytest -m hostile


def _spin(started: threading.Event, stopped: list[BaseException], limit_s: float = 30.0) -> str:
    """A job that runs until cancelled (checking like the decoder does), then records why it stopped."""
    started.set()
    t0 = time.monotonic()
    try:
        while time.monotonic() - t0 < limit_s:
            check_cancelled()
            time.sleep(0.005)
    except BaseException as exc:
        stopped.append(exc)
        raise
    return "finished"


def test_a_cancelled_request_stops_its_job_and_frees_the_thread() -> None:
    async def main() -> None:
        runner = JobRunner(threads=1, max_pending=2)
        started, stopped = threading.Event(), []
        task = asyncio.create_task(runner.run(_spin, started, stopped))
        await asyncio.to_thread(started.wait, 5)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        # run() returned only after the job's thread let go: the job saw the cancel already
        assert len(stopped) == 1 and isinstance(stopped[0], JobCancelled)
        assert await runner.run(lambda: "next") == "next"  # the one thread is free again
        runner.shutdown()

    asyncio.run(main())


def test_a_job_cancelled_while_queued_never_runs() -> None:
    async def main() -> None:
        runner = JobRunner(threads=1, max_pending=2)
        started, stopped = threading.Event(), []
        first = asyncio.create_task(runner.run(_spin, started, stopped))
        await asyncio.to_thread(started.wait, 5)
        ran: list[int] = []
        queued = asyncio.create_task(runner.run(ran.append, 1))
        await asyncio.sleep(0.05)
        queued.cancel()
        first.cancel()
        await asyncio.gather(first, queued, return_exceptions=True)
        assert await runner.run(lambda: "free") == "free"
        assert ran == []
        runner.shutdown()

    asyncio.run(main())


def test_a_job_past_the_wall_time_limit_is_stopped_with_a_deadline_error() -> None:
    async def main() -> None:
        runner = JobRunner(threads=1, max_pending=0, timeout_s=0.3)
        started, stopped = threading.Event(), []
        t0 = time.monotonic()
        with pytest.raises(DeadlineError, match="longer than 0 s"):
            await runner.run(_spin, started, stopped)
        assert isinstance(stopped[0], DeadlineError) and time.monotonic() - t0 < 10
        assert await runner.run(lambda: 7) == 7  # max_pending=0: the thread really is free
        runner.shutdown()

    asyncio.run(main())


def test_closing_a_stream_stops_the_step_in_progress() -> None:
    started, stopped = threading.Event(), []

    def chunks() -> Iterator[str]:
        yield "first"
        yield _spin(started, stopped)

    async def main() -> None:
        runner = JobRunner(threads=1, max_pending=1)
        it = runner.iterate(chunks())
        assert await it.next() == "first"
        pull = asyncio.create_task(it.next())
        await asyncio.to_thread(started.wait, 5)
        pull.cancel()
        await asyncio.gather(pull, return_exceptions=True)
        await it.aclose()
        assert isinstance(stopped[0], JobCancelled)
        assert await runner.run(lambda: 1) == 1
        runner.shutdown()

    asyncio.run(main())


def test_a_streamed_job_past_the_wall_time_limit_ends_with_a_deadline_error() -> None:
    def slow() -> Iterator[int]:
        for i in range(1000):
            check_cancelled()
            time.sleep(0.02)
            yield i

    async def main() -> None:
        runner = JobRunner(threads=1, max_pending=1, timeout_s=0.3)
        it = runner.iterate(slow())
        got = []
        with pytest.raises(DeadlineError):
            while (item := await it.next()) is not None:
                got.append(item)
        await it.aclose()
        assert 0 < len(got) < 100
        runner.shutdown()

    asyncio.run(main())


def test_threads_a_job_starts_share_its_token() -> None:
    token = CancelToken()
    seen: list[bool] = []

    def inner() -> None:
        try:
            check_cancelled()
            seen.append(False)
        except JobCancelled:
            seen.append(True)

    with cancel_scope(token):
        token.cancel()
        t = threading.Thread(target=bind(inner))
        t.start()
        t.join()
        unbound = threading.Thread(target=inner)
        unbound.start()
        unbound.join()
    check_cancelled()  # outside any scope: nothing to raise
    assert seen == [True, False]


def test_cancelling_a_real_analysis_stops_the_decoder(calm_to_exciting: Path) -> None:
    """The real job: analysing a synthesized video, cancelled once it has started, stops decoding
    (the job ends with JobCancelled instead of a timeline)."""

    async def main() -> None:
        runner = JobRunner(threads=1, max_pending=0)
        full = time.monotonic()
        data = await runner.run(jobs.analyze_file, os.fspath(calm_to_exciting), JobOptions(faces=False))
        full = time.monotonic() - full
        assert data["windows"]
        fut_holder: list[BaseException | None] = []

        def job() -> dict:
            try:
                return jobs.analyze_file(os.fspath(calm_to_exciting), JobOptions(faces=False))
            except BaseException as exc:
                fut_holder.append(exc)
                raise

        task = asyncio.create_task(runner.run(job))
        await asyncio.sleep(full / 10)  # well before it would finish
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert fut_holder and isinstance(fut_holder[0], JobCancelled), (full, fut_holder)
        runner.shutdown()

    asyncio.run(main())


def test_a_request_folder_is_removed_even_when_its_request_is_cancelled_meanwhile(tmp_path: Path) -> None:
    async def main() -> None:
        dirs = Workdirs(os.fspath(tmp_path))
        work = dirs.create()
        Path(work, "input.mp4").write_bytes(b"x" * 1000)
        task = asyncio.create_task(dirs.remove(work))
        await asyncio.sleep(0)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        assert not os.path.exists(work) and dirs.live == 0

    asyncio.run(main())


def test_the_sweeper_removes_only_old_orphans(tmp_path: Path) -> None:
    dirs = Workdirs(os.fspath(tmp_path), max_age_s=600)
    live_old = dirs.create()
    orphan = tmp_path / "backscore-req-orphan"
    orphan.mkdir()
    (orphan / "input.mp4").write_bytes(b"partial")
    young = tmp_path / "backscore-grpc-young"
    young.mkdir()
    written_lately = tmp_path / "backscore-req-busy"
    written_lately.mkdir()
    (written_lately / "input.mp4").write_bytes(b"still uploading")
    unrelated = tmp_path / "someone-elses"
    unrelated.mkdir()
    old = time.time() - 3600
    for p in (Path(live_old), orphan, orphan / "input.mp4", unrelated, written_lately):
        os.utime(p, (old, old))
    removed = dirs.sweep()
    assert removed == [os.fspath(orphan)]
    assert {p.name for p in tmp_path.iterdir()} == {Path(live_old).name, young.name, written_lately.name,
                                                      unrelated.name}


def test_the_sweeper_runs_at_start_up_and_periodically(tmp_path: Path) -> None:
    old = time.time() - 3600
    first = tmp_path / "backscore-req-left-by-a-killed-process"
    first.mkdir()
    os.utime(first, (old, old))
    dirs = Workdirs(os.fspath(tmp_path), max_age_s=600)
    dirs.start_sweeper(interval_s=0.05)
    try:
        assert not first.exists()  # at start-up, before any request
        later = tmp_path / "backscore-grpc-later"
        later.mkdir()
        os.utime(later, (old, old))
        deadline = time.monotonic() + 5
        while later.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not later.exists()
    finally:
        dirs.stop_sweeper()
