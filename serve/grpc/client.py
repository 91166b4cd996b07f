"""A small client of the ``backscore.v1.Backscore`` gRPC service (for the CLI, the load test and the tests).

Offline jobs (blocking)::

    with BackscoreClient("localhost:9000") as c:
        reply = c.analyze("clip.mp4")
        for chunk in c.score("clip.mp4", style="lofi"):
            ...  # chunk.pcm: s16le 48 kHz stereo

Live (asyncio): :func:`stream_file` plays a video file into ``Stream`` at real time (analysis
thumbnails + 100 ms PCM chunks, made by :mod:`pipelines.live.ingest` as the WebRTC path does)
and yields the :class:`LiveOutput` messages (music chunks, mood reports) as they come.

Command line (``python -m serve.grpc_client ...``, the older module name, works the same)::

    python -m serve.grpc.client analyze clip.mp4 --target localhost:9000
    python -m serve.grpc.client recommend clip.mp4 --top-k 5
    python -m serve.grpc.client score clip.mp4 --wav bgm.wav
    python -m serve.grpc.client stream clip.mp4 --wav live.wav
    python -m serve.grpc.client health
    python -m serve.grpc.client job clip.mp4 --style lofi --download out/   # an async job (serve/grpc/job_client.py)
    python -m serve.grpc.client watch JOB_ID; python -m serve.grpc.client cancel JOB_ID
    BACKSCORE_API_KEY=bsk_... python -m serve.grpc.client analyze clip.mp4   # a server with API keys (or --api-key)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
import wave
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from typing import Any

import av
import grpc
import grpc.aio
import numpy as np

from pipelines.frames import AUDIO_RATE
from pipelines.live.ingest import AudioIngest, VideoSampler, timed_frames
from serve.grpc.job_client import JOB_COMMANDS, add_job_arguments, check_job_args, check_readable, run_job_command
from serve.proto.backscore.v1 import backscore_pb2 as pb
from serve.proto.backscore.v1 import backscore_pb2_grpc as pb_grpc

#: Channel options: uploads and long timelines are larger than gRPC's 4 MiB default.
CHANNEL_OPTIONS = [
    ("grpc.max_send_message_length", 512 * 1024 * 1024),
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
]
#: Live audio is sent in chunks of this many samples (100 ms).
AUDIO_CHUNK_SAMPLES = AUDIO_RATE // 10


def _metadata(application: str | None, api_key: str | None = None) -> list[tuple[str, str]] | None:
    """The call metadata: Serve's ``application`` and, for a server with API keys, ``authorization``."""
    md = [("application", application)] if application else []
    if api_key:
        md.append(("authorization", f"Bearer {api_key}"))
    return md or None


def media_request(path: str, style: str | None = None, seed: int = 0, faces: bool = True) -> pb.MediaRequest:
    with open(path, "rb") as fh:
        data = fh.read()
    return pb.MediaRequest(video=data, filename=os.path.basename(path),
                           options=pb.JobOptions(style=style or "", seed=seed, faces=faces))


class BackscoreClient:
    """Blocking client for Analyze / Recommend / Score, the async jobs (StartJob / WatchJob / CancelJob) and the
    health RPCs."""

    def __init__(self, target: str = "localhost:9000", *, application: str | None = None,
                 timeout_s: float | None = None, api_key: str | None = None) -> None:
        self.channel = grpc.insecure_channel(target, options=CHANNEL_OPTIONS)
        self.stub = pb_grpc.BackscoreStub(self.channel)
        #: Sent with every call (``api_key``: for a server with API keys; ``Check`` needs none but gets it too).
        self.metadata = _metadata(application, api_key)
        self.timeout_s = timeout_s

    def __enter__(self) -> BackscoreClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.channel.close()

    def analyze(self, path: str, *, style: str | None = None, seed: int = 0, faces: bool = True) -> pb.AnalyzeReply:
        reply: pb.AnalyzeReply = self.stub.Analyze(media_request(path, style, seed, faces), metadata=self.metadata,
                                                   timeout=self.timeout_s)
        return reply

    def recommend(self, path: str, *, top_k: int = 5, per_segment: bool = False, library: str = "",
                  faces: bool = True) -> pb.RecommendReply:
        request = pb.RecommendRequest(media=media_request(path, faces=faces), top_k=top_k, per_segment=per_segment,
                                      library=library)
        reply: pb.RecommendReply = self.stub.Recommend(request, metadata=self.metadata, timeout=self.timeout_s)
        return reply

    def score(self, path: str, *, style: str | None = None, seed: int = 0, faces: bool = True,
              loudness: str = "") -> Iterator[pb.BgmChunk]:
        """BGM chunks as the server composes them (cancel by closing the iterator); with a ``loudness`` preset
        the BGM as it sits in the preset's mix, sent once mixed."""
        call = self.stub.Score(pb.ScoreRequest(media=media_request(path, style, seed, faces), loudness=loudness),
                               metadata=self.metadata, timeout=self.timeout_s)
        try:
            yield from call
        finally:
            call.cancel()

    # -- async jobs (serve/grpc/jobs.py; the files they make are fetched over HTTP: serve/grpc/job_client.py)

    def start_job(self, path: str | None, options: Mapping[str, Any] | None = None) -> pb.JobStatus:
        """Start an async job (``StartJob``) and answer its status at once.

        ``options``: the fields of HTTP ``POST /v1/jobs`` (``kind``, ``style``, ``seed``, ``from_job``, ...).
        The video at ``path`` is sent inline, unless ``options`` names a ``from_job`` (an earlier job's video
        and analysis are reused; ``path`` must then be None). :class:`ValueError` for neither or both.
        """
        fields = dict(options or {})
        if fields.get("from_job"):
            if path is not None:
                raise ValueError("a job is made from a video or from an earlier job (from_job), not both")
            request = pb.StartJobRequest(options_json=json.dumps(fields))
        else:
            if not path:
                raise ValueError("a job needs a video (or options naming a from_job)")
            with open(path, "rb") as fh:
                data = fh.read()
            request = pb.StartJobRequest(video=data, filename=os.path.basename(path), options_json=json.dumps(fields))
        reply: pb.JobStatus = self.stub.StartJob(request, metadata=self.metadata, timeout=self.timeout_s)
        return reply

    def watch_job(self, job_id: str) -> Iterator[pb.JobStatus]:
        """The job's status now, then at every change until it ends (``WatchJob``; stop watching by closing the
        iterator: the job goes on)."""
        call = self.stub.WatchJob(pb.JobRef(id=job_id), metadata=self.metadata, timeout=self.timeout_s)
        try:
            yield from call
        finally:
            call.cancel()

    def cancel_job(self, job_id: str) -> pb.JobStatus:
        """Cancel the job and remove it with its files (``CancelJob``); answers its last status."""
        reply: pb.JobStatus = self.stub.CancelJob(pb.JobRef(id=job_id), metadata=self.metadata,
                                                  timeout=self.timeout_s)
        return reply

    def healthz(self) -> str:
        """Ray Serve's proxy health RPC (no replica involved)."""
        from ray.serve.generated import serve_pb2, serve_pb2_grpc

        stub = serve_pb2_grpc.RayServeAPIServiceStub(self.channel)
        request: Any = serve_pb2.HealthzRequest()  # type: ignore[attr-defined]
        reply = stub.Healthz(request, timeout=self.timeout_s or 10)
        return str(reply.message)

    def check(self, service: str = "") -> int:
        """``grpc.health.v1.Health/Check`` (answered by a replica): the status enum value (1 = SERVING)."""
        from grpc_health.v1 import health_pb2, health_pb2_grpc

        stub = health_pb2_grpc.HealthStub(self.channel)
        reply = stub.Check(health_pb2.HealthCheckRequest(service=service), metadata=self.metadata,
                           timeout=self.timeout_s or 10)
        return int(reply.status)


# ----------------------------------------------------------------------------- live


def thumbnail_message(t: float, rgb: np.ndarray, gray: np.ndarray | None) -> pb.LiveInput:
    h, w = rgb.shape[:2]
    frame = pb.VideoFrame(pts_s=t, width=w, height=h, rgb=np.ascontiguousarray(rgb, np.uint8).tobytes())
    if gray is not None:
        frame.gray = np.ascontiguousarray(gray, np.uint8).tobytes()
        frame.gray_height, frame.gray_width = gray.shape[:2]
    return pb.LiveInput(video=frame)


def audio_message(t: float, samples: np.ndarray) -> pb.LiveInput:
    pcm = (np.clip(samples, -1.0, 1.0) * 32767.0).astype("<i2").tobytes()
    return pb.LiveInput(audio=pb.AudioChunk(pts_s=t, pcm=pcm))


async def file_inputs(path: str, *, speed: float = 1.0, config: pb.StreamConfig | None = None,
                      max_s: float | None = None) -> AsyncIterator[pb.LiveInput]:
    """The LiveInput messages for a video file: the config, then thumbnails and 100 ms PCM chunks at ``speed`` x
    real time (``speed`` <= 0: as fast as possible)."""
    yield pb.LiveInput(config=config or pb.StreamConfig())
    sampler = VideoSampler()
    ingest = AudioIngest()
    pending: list[np.ndarray] = []
    pending_n = 0
    pending_t = 0.0
    start = time.monotonic()
    with av.open(path) as container:
        for t, frame in timed_frames(container):
            if max_s is not None and t > max_s:
                return
            if speed > 0:
                wait = start + t / speed - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
            if isinstance(frame, av.VideoFrame):
                vf = sampler.offer(frame, t)
                if vf is not None:
                    yield thumbnail_message(vf.pts_s, vf.rgb, vf.gray)
                continue
            for af in ingest.convert(frame, t):
                if not pending:
                    pending_t = af.pts_s
                pending.append(af.samples)
                pending_n += af.samples.shape[0]
                if pending_n >= AUDIO_CHUNK_SAMPLES:
                    yield audio_message(pending_t, np.concatenate(pending))
                    pending, pending_n = [], 0
    if pending:
        yield audio_message(pending_t, np.concatenate(pending))


async def stream_file(path: str, target: str = "localhost:9000", *, style: str | None = None, seed: int = 0,
                      mix_original: bool = False, speed: float = 1.0, application: str | None = None,
                      tail_s: float = 0.0, max_s: float | None = None,
                      api_key: str | None = None) -> AsyncIterator[pb.LiveOutput]:
    """Play ``path`` into the live ``Stream`` RPC and yield what comes back.

    After the file has been sent, the stream stays open ``tail_s`` more seconds (to hear the
    music catch up), then half-closes; the server then ends the session.
    """
    config = pb.StreamConfig(style=style or "", seed=seed, mix_original=mix_original)

    async def inputs() -> AsyncIterator[pb.LiveInput]:
        async for msg in file_inputs(path, speed=speed, config=config, max_s=max_s):
            yield msg
        if tail_s > 0:
            await asyncio.sleep(tail_s)

    async with grpc.aio.insecure_channel(target, options=CHANNEL_OPTIONS) as channel:
        stub = pb_grpc.BackscoreStub(channel)
        call = stub.Stream(inputs(), metadata=_metadata(application, api_key))
        try:
            async for out in call:
                yield out
        finally:
            call.cancel()


# ----------------------------------------------------------------------------- CLI


def _write_wav(path: str, pcm_chunks: Sequence[bytes]) -> None:
    with wave.open(path, "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(AUDIO_RATE)
        for c in pcm_chunks:
            w.writeframes(c)


def _dump(msg: Any) -> str:
    from google.protobuf.json_format import MessageToDict

    return json.dumps(MessageToDict(msg, preserving_proto_field_name=True), indent=1)


async def _stream_cli(args: argparse.Namespace) -> None:
    pcm: list[bytes] = []
    async for out in stream_file(args.video, args.target, style=args.style, seed=args.seed or 0, speed=args.speed,
                                 application=args.application, tail_s=1.0, api_key=args.api_key):
        if out.WhichOneof("kind") == "music":
            pcm.append(out.music.pcm)
        else:
            m = out.mood
            print(f"{m.media_s:6.1f}s {m.emotion:10s} v={m.valence:+.2f} a={m.arousal:+.2f} "
                  f"buffer={m.buffer_s:.2f}s underruns={m.underruns} changes={m.mood_changes}", flush=True)
    if args.wav:
        _write_wav(args.wav, pcm)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m serve.grpc.client", description=__doc__.split("\n\n")[0])
    p.add_argument("command", choices=["analyze", "recommend", "score", "stream", "health", *JOB_COMMANDS])
    p.add_argument("video", nargs="?", metavar="VIDEO|JOB_ID", help="the video (watch, cancel: the job's id)")
    p.add_argument("--target", default="localhost:9000")
    p.add_argument("--application", default=None, help="Serve application name (only with several apps)")
    p.add_argument("--api-key", default=None, help="API key for a server that needs one (default $BACKSCORE_API_KEY)")
    p.add_argument("--style", default=None)
    p.add_argument("--seed", type=int, default=None, help="default 0")
    p.add_argument("--top-k", type=int, default=None, help="default 5")
    p.add_argument("--per-segment", action="store_true")
    p.add_argument("--library", default=None)
    p.add_argument("--speed", type=float, default=1.0, help="stream: playback speed (1 = real time)")
    p.add_argument("--wav", default=None, help="score/stream: write the music here")
    p.add_argument("--loudness", default="", help="score: a loudness preset (youtube, tiktok, broadcast, podcast)")
    add_job_arguments(p)
    args = p.parse_args(argv)
    if args.command in JOB_COMMANDS:
        check_job_args(p, args)
    elif args.command != "health":
        if not args.video:
            p.error(f"{args.command} needs a video")
        check_readable(p, args.video)
    seed, top_k = args.seed or 0, args.top_k if args.top_k is not None else 5
    if args.api_key is None:
        from engines.settings import settings

        args.api_key = settings().api_key
    try:
        with BackscoreClient(args.target, application=args.application, api_key=args.api_key) as c:
            if args.command == "health":
                print(c.healthz(), "| grpc.health.v1 status:", c.check())
            elif args.command in JOB_COMMANDS:
                return run_job_command(c, args)
            elif args.command == "analyze":
                print(_dump(c.analyze(args.video, style=args.style, seed=seed)))
            elif args.command == "recommend":
                print(_dump(c.recommend(args.video, top_k=top_k, per_segment=args.per_segment,
                                        library=args.library or "")))
            elif args.command == "score":
                chunks: list[bytes] = []
                for ch in c.score(args.video, style=args.style, seed=seed, loudness=args.loudness):
                    print(f"chunk {ch.index}: {ch.start_s:.2f}s +{ch.duration_s:.2f}s "
                          f"{ch.bars[0].emotion if ch.bars else ''}", flush=True)
                    chunks.append(ch.pcm)
                if args.wav:
                    _write_wav(args.wav, chunks)
            else:
                asyncio.run(_stream_cli(args))
    except grpc.RpcError as exc:
        print(f"backscore: error: {exc.code().name}: {exc.details()}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
