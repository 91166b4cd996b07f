"""``python -m serve.webrtc``: the WebRTC dev server (no Ray) with the demo page at ``/``.

Serves :func:`create_app` with uvicorn over :meth:`InProcessModels.default
<pipelines.live.models.InProcessModels.default>`; the Ray Serve gateway mounts the same routers on
its own app instead.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
from collections.abc import Sequence
from typing import Any

from serve.webrtc.manager import WebRtcManager
from serve.webrtc.router import demo_router, webrtc_router


def create_app(manager: WebRtcManager) -> Any:
    """A FastAPI app with the demo page and the WebRTC endpoints (no Ray); ends all sessions on shutdown."""
    from fastapi import FastAPI

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> Any:
        yield
        await manager.close_all()

    app = FastAPI(title="backscore live (WebRTC dev server)", lifespan=lifespan)
    app.include_router(demo_router())
    app.include_router(webrtc_router(manager))
    return app


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m serve.webrtc", description="WebRTC dev server with the demo page")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--max-sessions", type=int, default=4)
    p.add_argument("--media-timeout", type=float, default=10.0)
    p.add_argument("--no-faces", action="store_true", help="skip the face-expression model (less CPU)")
    p.add_argument("--ice-server", action="append", default=[], help="STUN/TURN URL (repeatable); none by default")
    p.add_argument("--log-level", default="info")
    a = p.parse_args(argv)
    logging.basicConfig(level=a.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    import uvicorn

    from pipelines.live.models import InProcessModels

    models = InProcessModels.default(faces=not a.no_faces)
    manager = WebRtcManager(models, max_sessions=a.max_sessions, media_timeout_s=a.media_timeout,
                            ice_servers=a.ice_server)
    try:
        uvicorn.run(create_app(manager), host=a.host, port=a.port, log_level=a.log_level)
    finally:
        models.shutdown()


if __name__ == "__main__":
    main()
