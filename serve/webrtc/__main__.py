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

from engines.settings import settings
from serve.access import AccessPolicy
from serve.webrtc.manager import WebRtcManager
from serve.webrtc.router import demo_router, webrtc_router


def create_app(manager: WebRtcManager, access: AccessPolicy | None = None) -> Any:
    """A FastAPI app with the demo page and the WebRTC endpoints (no Ray); ends all sessions on shutdown.

    ``access`` (default: the ``BACKSCORE_*`` variables' :class:`~serve.access.AccessPolicy`) guards
    ``/v1/*`` as in the gateway: origins, API keys when configured, live minutes.
    """
    from fastapi import FastAPI

    from serve.http.access import AccessControl

    policy = access if access is not None else AccessPolicy.from_settings()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> Any:
        yield
        await manager.close_all()

    app = FastAPI(title="backscore live (WebRTC dev server)", lifespan=lifespan)
    app.add_middleware(AccessControl, policy=policy)
    app.include_router(demo_router())
    app.include_router(webrtc_router(manager, access=policy))
    return app


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m serve.webrtc", description="WebRTC dev server with the demo page")
    p.add_argument("--host", default=None, help="address to listen on (default $BACKSCORE_HOST or 127.0.0.1; "
                   "other than loopback only with API keys)")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--max-sessions", type=int, default=4)
    p.add_argument("--media-timeout", type=float, default=10.0)
    p.add_argument("--no-faces", action="store_true", help="skip the face-expression model (less CPU)")
    p.add_argument("--ice-server", action="append", default=[], help="STUN/TURN URL (repeatable); none by default")
    p.add_argument("--log-level", default="info")
    a = p.parse_args(argv)
    from engines.base import EngineError
    from pipelines.access import is_loopback
    from pipelines.errors import BackscoreError

    try:
        host = a.host or settings().host
        access = AccessPolicy.from_settings()
    except (BackscoreError, EngineError) as exc:
        p.error(str(exc))
    if not access.enabled and not is_loopback(host):
        p.error(f"refusing to listen on {host} with no API keys: anyone who can reach it could use the service. "
                "Listen on 127.0.0.1, or add a key: backscore keys new NAME --file keys.json, then "
                "BACKSCORE_API_KEYS_FILE=keys.json")
    logging.basicConfig(level=a.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    import uvicorn

    from pipelines.live.models import InProcessModels

    models = InProcessModels.default(faces=not a.no_faces)
    manager = WebRtcManager(models, max_sessions=a.max_sessions, media_timeout_s=a.media_timeout,
                            ice_servers=a.ice_server)
    try:
        uvicorn.run(create_app(manager, access), host=host, port=a.port, log_level=a.log_level)
    finally:
        models.shutdown()


if __name__ == "__main__":
    main()
