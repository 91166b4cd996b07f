"""The gRPC client's async job commands (``BackscoreClient.start_job/watch_job/cancel_job`` and ``python -m
serve.grpc.client job|watch|cancel``) against the real gateway core: its gRPC methods on a plain ``grpc.aio``
server (:func:`serve.grpc.server.start_server`, in a thread of its own, since the client blocks) and its HTTP
app on a real uvicorn server for the downloads, with API keys on (so the key must go with both). A synthesized
clip; no part of the client is replaced.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import threading
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import av
import pytest

from engines.base import EngineError, MusicEngine, MusicStream, MusicStreamOptions
from pipelines.access import KeyEntry, KeyQuotas, hash_key, new_key
from pipelines.jobs import JobWork
from pipelines.live.models import InProcessModels
from serve.access import AccessPolicy
from serve.access.keys import KeyStore
from serve.grpc.client import BackscoreClient, main
from serve.grpc.server import start_server
from serve.http.router import build_app
from serve.proto.backscore.v1 import backscore_pb2 as pb
from tests.conftest import calm_then_bright
from tests.serve.http_server import free_port, serving
from tests.serve.inprocess import InProcessGateway
from tests.serve.job_gate import WAIT_S, gate

KEY = new_key()
PROGRESS = re.compile(r"^job (\S+): (\w+)\s+(\S+)\s+(\d+)%")


@pytest.fixture(scope="module")
def clip(video_dir: Path) -> Path:
    return calm_then_bright(video_dir, "grpc_job_client.mp4", 1.5, width=160, height=120)


def duration_s(path: Path | str) -> float:
    """A video file's duration from its decoded pictures: the last one's time plus one frame."""
    with av.open(os.fspath(path)) as c:
        stream = c.streams.video[0]
        assert stream.average_rate
        times = [frame.time for frame in c.decode(stream) if frame.time is not None]
        return max(times) + 1 / float(stream.average_rate)


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcessGateway]:
    policy = AccessPolicy(KeyStore([KeyEntry("cli", hash_key(KEY), KeyQuotas(rpm=10_000, jobs=8))]))
    gw = InProcessGateway(InProcessModels.default(faces=False, inline=True),
                          tmp_dir=os.fspath(tmp_path_factory.mktemp("gw")), access=policy)
    yield gw
    asyncio.run(gw.shutdown())


@pytest.fixture(scope="module")
def target(gateway: InProcessGateway) -> Iterator[str]:
    """The gateway's gRPC methods on a plain server, on an event loop in its own thread."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    server, port = asyncio.run_coroutine_threadsafe(start_server(gateway), loop).result(30)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        asyncio.run_coroutine_threadsafe(server.stop(None), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


@pytest.fixture(scope="module")
def http_base(gateway: InProcessGateway) -> Iterator[str]:
    with serving(build_app(gateway)) as (host, port):
        yield f"http://{host}:{port}"


@pytest.fixture()
def client(target: str) -> Iterator[BackscoreClient]:
    with BackscoreClient(target, api_key=KEY, timeout_s=WAIT_S) as c:
        yield c


@pytest.fixture(scope="module")
def scored(gateway: InProcessGateway, target: str, clip: Path) -> list[pb.JobStatus]:
    """A score job of the clip started from the file through the client, watched to its end: every status seen."""
    gateway.job_store.work = JobWork()
    with BackscoreClient(target, api_key=KEY, timeout_s=WAIT_S) as c:
        started = c.start_job(os.fspath(clip), {"style": "calm", "seed": 2})
        assert started.kind == "score" and started.state in ("queued", "running")
        return [started, *c.watch_job(started.id)]


def cli(target: str, *argv: str, key: str = KEY) -> int:
    return main([*argv, "--target", target, "--api-key", key])


def progress(out: str) -> list[tuple[str, str, str, int]]:
    """(job id, state, stage, percent) of each progress line."""
    return [(m[1], m[2], m[3], int(m[4])) for m in map(PROGRESS.match, out.splitlines()) if m]


def listed_results(out: str) -> dict[str, str]:
    """The ``results:`` block: role -> path (download lines, ``role -> file (N bytes)``, left out)."""
    lines = out.splitlines()
    block = lines[lines.index("results:") + 1:]
    return {parts[0]: parts[1] for parts in (ln.split() for ln in block) if len(parts) == 2}


def downloaded(out: str) -> dict[str, tuple[str, int]]:
    """role -> (file, bytes) of the download lines."""
    return {m[1]: (m[2], int(m[3])) for m in re.finditer(r"^  (\S+)\s+-> (.+) \((\d+) bytes\)$", out, re.M)}


# ----------------------------------------------------------------------------- the library


def test_a_score_job_from_a_file_reaches_done(scored: list[pb.JobStatus]) -> None:
    started, seen = scored[0], scored[1:]
    assert seen and seen[-1].state == "done" and all(s.state in ("queued", "running") for s in seen[:-1])
    fractions = [s.fraction for s in seen]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert {s.id for s in seen} == {started.id}
    done = seen[-1]
    assert {"video", "bgm"} <= set(done.results)
    assert all(path.startswith(f"/v1/jobs/{started.id}/results/") for path in done.results.values())
    assert json.loads(done.status_json)["options"]["style"] == "calm"


def test_start_job_needs_a_video_or_a_from_job(client: BackscoreClient, clip: Path) -> None:
    with pytest.raises(ValueError, match="needs a video"):
        client.start_job(None, {"style": "calm"})
    with pytest.raises(ValueError, match="not both"):
        client.start_job(os.fspath(clip), {"from_job": "abc"})


# ----------------------------------------------------------------------------- the command line


def test_cli_job_follows_progress_and_downloads_the_files(target: str, http_base: str, clip: Path, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    out_dir = tmp_path / "out"
    assert cli(target, "job", os.fspath(clip), "--style", "calm", "--seed", "1",
               "--download", os.fspath(out_dir), "--http-base", http_base) == 0
    out = capsys.readouterr().out
    started = re.search(r"^job (\S+): started \(score\)$", out, re.M)
    assert started is not None
    lines = progress(out)
    assert lines and {ln[0] for ln in lines} == {started[1]}
    percents = [ln[3] for ln in lines]
    assert percents == sorted(percents) and lines[-1][1:] == ("done", "mux", 100)
    assert len(set(lines)) == len(lines)  # one line per change
    results = listed_results(out)
    assert {"video", "bgm"} <= set(results)
    files = downloaded(out)
    assert set(files) == set(results)
    for role, (file, size) in files.items():
        assert Path(file).parent == out_dir and Path(file).name == results[role].rsplit("/", 1)[1]
        assert os.path.getsize(file) == size > 0
    video, bgm = files["video"][0], files["bgm"][0]
    clip_s = duration_s(clip)
    assert clip_s > 2.5  # the clip is 1.5 s + 1.5 s
    assert abs(duration_s(video) - clip_s) < 0.1
    with av.open(video) as c:
        assert c.streams.video and c.streams.audio
        assert sum(1 for _ in c.decode(c.streams.audio[0])) > 0
    with wave.open(bgm) as w:
        assert abs(w.getnframes() / w.getframerate() - clip_s) < 0.1
    timeline = json.loads(Path(files["timeline"][0]).read_text())
    assert abs(timeline["duration_s"] - clip_s) < 0.1


def test_download_never_overwrites(target: str, http_base: str, scored: list[pb.JobStatus], tmp_path: Path,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    done = scored[-1]
    taken = done.results["video"].rsplit("/", 1)[1]
    (tmp_path / taken).write_bytes(b"mine, not the server's")
    before = os.stat(tmp_path / taken)
    rc = cli(target, "watch", done.id, "--download", os.fspath(tmp_path), "--http-base", http_base)
    err = capsys.readouterr().err
    assert rc == 3
    assert f"backscore: error: {tmp_path / taken} already exists: not overwriting" in err
    assert (tmp_path / taken).read_bytes() == b"mine, not the server's"
    assert os.stat(tmp_path / taken).st_mtime_ns == before.st_mtime_ns
    assert sorted(os.listdir(tmp_path)) == [taken]  # nothing else fetched either


def test_watch_a_finished_job_lists_its_results(target: str, scored: list[pb.JobStatus],
                                                capsys: pytest.CaptureFixture[str]) -> None:
    done = scored[-1]
    assert cli(target, "watch", done.id) == 0
    out = capsys.readouterr().out
    assert progress(out) == [(done.id, "done", "mux", 100)]
    assert listed_results(out) == dict(done.results)


def test_download_from_an_unreachable_server_fails_cleanly(target: str, scored: list[pb.JobStatus], tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    rc = cli(target, "watch", scored[-1].id, "--download", os.fspath(tmp_path / "d"),
             "--http-base", f"http://127.0.0.1:{free_port()}")
    assert rc == 1
    assert "backscore: error: download failed: cannot reach http://127.0.0.1:" in capsys.readouterr().err
    assert os.listdir(tmp_path / "d") == []


def test_from_job_renders_new_music_on_the_same_analysis(target: str, client: BackscoreClient,
                                                         scored: list[pb.JobStatus],
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    source = scored[-1].id
    assert cli(target, "job", "--from-job", source, "--style", "tense", "--seed", "4") == 0
    out = capsys.readouterr().out
    started = re.search(r"^job (\S+): started \(score\)$", out, re.M)
    assert started is not None and started[1] != source
    lines = progress(out)
    assert lines[-1][1:] == ("done", "mux", 100)
    assert {ln[2] for ln in lines} <= {"-", "compose", "mix", "mux"}  # no analysis
    last = list(client.watch_job(started[1]))[-1]
    assert list(last.stages_run) == ["compose", "mix", "mux"]
    status = json.loads(last.status_json)
    assert status["from_job"] == source and status["options"]["style"] == "tense" and status["options"]["seed"] == 4
    assert {"video", "bgm"} <= set(listed_results(out))


def test_cancel_ends_the_job_for_its_watchers(target: str, gateway: InProcessGateway, client: BackscoreClient,
                                              clip: Path, capsys: pytest.CaptureFixture[str]) -> None:
    g = gate(gateway)
    try:
        started = client.start_job(os.fspath(clip), {})
        assert g.entered.wait(WAIT_S)
        watching = client.watch_job(started.id)
        assert next(watching).state == "running"
        assert cli(target, "cancel", started.id) == 0
        assert progress(capsys.readouterr().out)[0][:2] == (started.id, "cancelled")
        rest = list(watching)
        assert rest and rest[-1].state == "cancelled" and rest[-1].error_type == "Cancelled"
        assert cli(target, "watch", started.id) == 1  # gone with its files
        assert "backscore: error: NOT_FOUND: " in capsys.readouterr().err
    finally:
        g.opened.set()
        gateway.job_store.work = JobWork()


class BrokenStream(MusicStream):
    def generate(self, control: Any, min_duration_s: float = 0.0) -> Any:
        raise EngineError("the test's music engine is broken")


class BrokenEngine(MusicEngine):
    """A music engine that fails (the server's side of a failing job; the client is what is under test)."""

    name = "procedural"

    def open_stream(self, options: MusicStreamOptions) -> MusicStream:
        return BrokenStream()


def test_a_failed_job_prints_its_error_and_exits_non_zero(target: str, gateway: InProcessGateway,
                                                          scored: list[pb.JobStatus],
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    gateway.job_store.work = JobWork(music_engine=lambda name, weights: BrokenEngine())
    try:
        rc = cli(target, "job", "--from-job", scored[-1].id, "--seed", "9")
    finally:
        gateway.job_store.work = JobWork()
    captured = capsys.readouterr()
    assert rc == 1
    assert progress(captured.out)[-1][1] == "failed"
    assert re.search(r"backscore: error: job \S+ failed: EngineError: the test's music engine is broken",
                     captured.err)
    assert "results:" not in captured.out


@pytest.mark.parametrize(("argv", "message"), [
    (["job", "{clip}", "--options", "{not json"], "--options is not valid JSON"),
    (["job", "{clip}", "--options", "[1, 2]"], "--options must be a JSON object"),
    (["job", "/nonexistent/clip.mp4"], "cannot read /nonexistent/clip.mp4"),
    (["job"], "job needs a video (or --from-job ID)"),
    (["job", "{clip}", "--from-job", "abc"], "give a VIDEO or --from-job, not both"),
    (["job", "{clip}", "--top-k", "3"], "--top-k applies to recommend jobs, not score"),
    (["job", "{clip}", "--download", "d", "--http-base", "ftp://x"], "--http-base must be an http"),
    (["watch"], "watch needs a job id"),
    (["cancel"], "cancel needs a job id"),
])
def test_bad_arguments_exit_2_with_a_message(target: str, clip: Path, argv: list[str], message: str,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        cli(target, *(a.replace("{clip}", os.fspath(clip)) for a in argv))
    assert info.value.code == 2
    assert message in capsys.readouterr().err


def test_what_the_server_refuses_is_its_grpc_status(target: str, clip: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(target, "job", os.fspath(clip), "--options", '{"style": "nope"}') == 1
    assert "backscore: error: INVALID_ARGUMENT: " in capsys.readouterr().err
    assert cli(target, "job", os.fspath(clip), "--options", '{"colour": "red"}') == 1
    assert "backscore: error: INVALID_ARGUMENT: colour" in capsys.readouterr().err
    assert cli(target, "cancel", "nope") == 1
    assert "backscore: error: NOT_FOUND: " in capsys.readouterr().err
    assert cli(target, "watch", "nope", key=new_key()) == 1
    assert "backscore: error: UNAUTHENTICATED: " in capsys.readouterr().err


def test_a_file_that_is_not_a_video_is_refused_before_a_job(target: str, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "clip.mp4"
    bad.write_bytes(b"not a video" * 100)
    assert cli(target, "job", os.fspath(bad)) == 1
    assert "backscore: error: INVALID_ARGUMENT: " in capsys.readouterr().err
