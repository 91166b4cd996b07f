"""The work behind the HTTP job endpoints: upload -> job on the pool -> JSON, a file, or a streamed WAV.

Each request gets a private folder (:class:`serve.jobs.Workdirs`); the upload is streamed into it
(:mod:`serve.http.uploads`), the blocking job runs on the gateway's pool (:class:`serve.jobs.JobRunner`)
and the folder is removed when the answer is finished -- also after an error or a client
disconnect. Error messages name the client's file, never this server's temporary paths.
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import anyio
from fastapi import Request
from fastapi.responses import Response

from pipelines.errors import BackscoreError
from pipelines.offline import jobs
from pipelines.options import JobOptions
from serve.core import GatewayCore
from serve.http.protocol import ScoreOutput
from serve.http.responses import CleanupFileResponse, CleanupStreamingResponse
from serve.http.uploads import Upload, receive_upload
from serve.jobs import scrub


class HttpServing:
    """The HTTP jobs of one gateway (see the module doc)."""

    def __init__(self, core: GatewayCore) -> None:
        self.core = core

    @contextlib.asynccontextmanager
    async def _client_paths(self, work: str, upload: Upload) -> AsyncIterator[None]:
        """Errors name the client's file, never this server's temporary paths."""
        try:
            yield
        except BackscoreError as exc:
            message = scrub(str(exc), {upload.path: upload.filename or "the upload", work + os.sep: ""})
            if message == str(exc):
                raise
            raise type(exc)(message) from exc

    async def _receive(self, request: Request, work: str) -> Upload:
        with self.core.upload_slots.slot():  # 503 at once when every upload slot is taken
            return await receive_upload(request, work, self.core.max_upload_bytes)

    async def json_job(self, request: Request, fn: Callable[[str, JobOptions], dict[str, Any]],
                       options: JobOptions) -> dict[str, Any]:
        """Analyze / recommend: the upload through ``fn`` on the job pool."""
        work = self.core.workdirs.create()
        try:
            upload = await self._receive(request, work)
            async with self._client_paths(work, upload):
                return await self.core.jobs.run(fn, upload.path, options)
        finally:
            await self.core.workdirs.remove(work)

    async def score(self, request: Request, opts: JobOptions, output: ScoreOutput, stream: bool) -> Response:
        """The scored MP4 or the BGM as WAV (``stream``: sent chunk by chunk as it is composed)."""
        work = self.core.workdirs.create()

        async def cleanup() -> None:
            await self.core.workdirs.remove(work)

        try:
            upload = await self._receive(request, work)
            if output == "bgm" and stream:
                return await self._stream_bgm(work, upload, opts, cleanup)
            if output in jobs.EXPORTS:
                async with self._client_paths(work, upload):
                    path = await self.core.jobs.run(jobs.score_export_file, upload.path, work, opts, output)
                name, media_type = jobs.EXPORTS[output]
                return CleanupFileResponse(path, cleanup, media_type=media_type,
                                           filename=f"{Path(upload.filename).stem or 'video'}.{name}")
            bgm_only = output == "bgm"
            out = os.path.join(work, "bgm.wav" if bgm_only else "scored.mp4")
            async with self._client_paths(work, upload):
                await self.core.jobs.run(functools.partial(jobs.score_file, bgm_only=bgm_only), upload.path, out,
                                         opts)
            stem = Path(upload.filename).stem or "video"
            name = f"{stem}.bgm.wav" if bgm_only else f"{stem}.scored.mp4"
            return CleanupFileResponse(out, cleanup, media_type="audio/wav" if bgm_only else "video/mp4",
                                       filename=name)
        except BaseException:
            with anyio.CancelScope(shield=True):
                await cleanup()
            raise

    async def _stream_bgm(self, work: str, upload: Upload, opts: JobOptions,
                          cleanup: Callable[[], Any]) -> Response:
        chunks = self.core.jobs.iterate(jobs.bgm_chunks(upload.path, opts))
        try:
            async with self._client_paths(work, upload):
                first = await chunks.next()  # analysis errors surface here, as a 4xx
        except BaseException:
            await chunks.aclose()
            raise

        async def body() -> AsyncIterator[bytes]:
            try:
                yield jobs.wav_header()
                chunk = first
                while chunk is not None:
                    yield chunk.pcm
                    chunk = await chunks.next()
            finally:
                with anyio.CancelScope(shield=True):
                    await chunks.aclose()

        async def close_all() -> None:
            await chunks.aclose()
            await cleanup()

        return CleanupStreamingResponse(body(), close_all, media_type="audio/wav",
                                        headers={"Cache-Control": "no-store"})
