"""WebRTC transport for live sessions: signalling over HTTP, media and mood reports over one peer connection.

The browser (or any WebRTC peer) POSTs an SDP offer to ``/v1/webrtc/offer`` and gets the answer
back in the response; the client's video and audio go up, one BGM audio track comes back, and a
``"mood"`` data channel carries a JSON :class:`~pipelines.live.reports.MoodReport` about once a
second (and answers ``{"type": "ping"}`` with ``{"type": "pong"}``, echoing ``"t"``).

Modules:

* :mod:`~serve.webrtc.protocol` -- what an offer request must contain (JSON body, SDP, per-session
  options), :class:`OfferError`, and the names both sides agree on.
* :mod:`~serve.webrtc.manager` -- :class:`WebRtcManager`: signalling, the session limit, directory
  sync, hang-up, close at shutdown.
* :mod:`~serve.webrtc.session` -- :class:`WebRtcSession`: one peer connection and its live session,
  the client track readers (bounded, drop-oldest queues), the data channel, and the watchdog that
  ends it on its :class:`WebRtcLimits`.
* :mod:`~serve.webrtc.track` -- :class:`BgmTrack`: the paced BGM audio track (20 ms frames, Opus).
* :mod:`~serve.webrtc.directory` -- which gateway replica holds which session (a hang-up reaching
  another replica still ends it).
* :mod:`~serve.webrtc.router` -- the HTTP routes: :func:`webrtc_router` and :func:`demo_router`.
* ``python -m serve.webrtc`` (:mod:`serve.webrtc.__main__`) -- a standalone dev server (no Ray)
  with the demo page at ``/``; the Ray Serve gateway mounts the same routers on its own app.

One client video frame to the BGM frame that goes back: aiortc decodes it from the client's video
track; the session's reader task queues it (dropping the oldest beyond ``video_queue``); the
consumer task stamps it in session media seconds from its pts and, when
:class:`~pipelines.live.ingest.VideoSampler` wants it, converts it in a worker thread and calls
:meth:`LiveSession.push_video <pipelines.live.session.LiveSession.push_video>`. The session's
analyser turns the filled windows into a rolling mood, and its BGM player keeps music in that mood
generated ahead of the play head (a mood change is spliced in at the next beat).
:class:`BgmTrack` asks the :class:`~pipelines.live.pacing.FramePacer` for frame ``k`` on time,
takes 20 ms of mixed audio from :meth:`LiveSession.pull_frame
<pipelines.live.session.LiveSession.pull_frame>`, encodes it to Opus and hands it to aiortc's
sender, which sends it back to the client over RTP.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from serve.webrtc.directory import LocalDirectory, RayDirectory, SessionDirectory
from serve.webrtc.manager import WebRtcManager
from serve.webrtc.protocol import DATA_CHANNEL_LABEL, TRANSPORT, OfferError
from serve.webrtc.router import STATIC_DIR, demo_router, webrtc_router
from serve.webrtc.session import WebRtcLimits, WebRtcSession
from serve.webrtc.track import BgmTrack

if TYPE_CHECKING:
    from serve.webrtc.__main__ import create_app

__all__ = [
    "DATA_CHANNEL_LABEL",
    "STATIC_DIR",
    "TRANSPORT",
    "BgmTrack",
    "LocalDirectory",
    "OfferError",
    "RayDirectory",
    "SessionDirectory",
    "WebRtcLimits",
    "WebRtcManager",
    "WebRtcSession",
    "create_app",
    "demo_router",
    "webrtc_router",
]


def __getattr__(name: str) -> Any:
    # create_app lives in __main__: importing that module here would make ``python -m serve.webrtc``
    # find it already imported (runpy warns and runs it twice), so it is imported on first use.
    if name == "create_app":
        from serve.webrtc.__main__ import create_app

        return create_app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
