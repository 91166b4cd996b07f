"""What a media file may ask of the decoder: duration, picture size and frame rate, checked before and
while decoding.

A file is refused (:class:`~pipelines.errors.LimitError`: HTTP 413, gRPC RESOURCE_EXHAUSTED, CLI exit 2)
when its container *declares* more than the limit -- before anything is decoded -- and also when its
frames are *stamped* past it while decoding (a few frames stamped at 0, 30 and 60 minutes declare
what they like), or when more frames arrive than the duration and frame-rate limits allow. Memory and
time of a job grow with the media duration, so bounding it bounds them.

The service reads its limits from ``BACKSCORE_MAX_MEDIA_S``, ``BACKSCORE_MAX_PIXELS_PER_S``,
``BACKSCORE_MAX_FRAME_PIXELS`` and ``BACKSCORE_MAX_TRACK_S`` (:meth:`MediaLimits.for_service`); the
command line allows longer media (``BACKSCORE_CLI_MAX_MEDIA_S``, :meth:`MediaLimits.for_cli`).
"""

from __future__ import annotations

from dataclasses import dataclass

from pipelines.errors import LimitError

#: No real video has more frames per second than this; more is a hostile or broken file.
MAX_FPS = 240.0


@dataclass(frozen=True)
class MediaLimits:
    #: Longest media, seconds (declared or stamped).
    max_duration_s: float = 4 * 3600.0
    #: Decoded pixels per second of media: width x height x frame rate (4K at 60 fps is ~5e8).
    max_pixels_per_s: float = 1e9
    #: Largest picture, width x height (one decoded 8192 x 8192 frame is ~100 MB).
    max_frame_pixels: float = 8192 * 8192
    #: Longest music track (library track, user's own music), seconds.
    max_track_s: float = 1800.0

    @classmethod
    def for_service(cls) -> MediaLimits:
        from engines.settings import settings

        s = settings()
        return cls(max_duration_s=s.max_media_s, max_pixels_per_s=s.max_pixels_per_s,
                   max_frame_pixels=s.max_frame_pixels, max_track_s=s.max_track_s)

    @classmethod
    def for_cli(cls) -> MediaLimits:
        from engines.settings import settings

        s = settings()
        return cls(max_duration_s=s.cli_max_media_s, max_pixels_per_s=s.max_pixels_per_s,
                   max_frame_pixels=s.max_frame_pixels, max_track_s=s.max_track_s)

    @property
    def max_frames(self) -> int:
        return int(self.max_duration_s * MAX_FPS) + 1

    def check_declared(self, name: str, duration_s: float, width: int, height: int, fps: float) -> None:
        """Refuse what the container says before decoding it."""
        if duration_s > self.max_duration_s:
            raise LimitError(f"{name} lasts {_minutes(duration_s)}; at most {_minutes(self.max_duration_s)} "
                             "is accepted")
        if width * height > self.max_frame_pixels:
            raise LimitError(f"{name} is {width}x{height} ({width * height / 1e6:.0f} Mpx a picture); at most "
                             f"{self.max_frame_pixels / 1e6:.0f} Mpx is accepted")
        rate = width * height * min(fps, MAX_FPS)
        if rate > self.max_pixels_per_s:
            raise LimitError(f"{name} is {width}x{height} at {fps:.0f} fps ({rate / 1e6:.0f} Mpx/s); at most "
                             f"{self.max_pixels_per_s / 1e6:.0f} Mpx/s is accepted")

    def check_stamp(self, name: str, t: float) -> None:
        """Refuse a frame stamped past the duration limit while decoding."""
        if t > self.max_duration_s + 1.0:
            raise LimitError(f"{name} has frames stamped at {_minutes(t)}; at most "
                             f"{_minutes(self.max_duration_s)} of media is accepted")


    def check_frames(self, name: str, n: int) -> None:
        """Refuse a file with more frames than its duration limit allows at :data:`MAX_FPS`."""
        if n > self.max_frames:
            raise LimitError(f"{name} has more than {self.max_frames} frames; at most "
                             f"{_minutes(self.max_duration_s)} at {MAX_FPS:.0f} fps is accepted")

    def check_track(self, name: str, samples: int, sample_rate: int) -> None:
        """Refuse a music track longer than :attr:`max_track_s` (checked while it decodes)."""
        if samples > self.max_track_s * sample_rate:
            raise LimitError(f"{name} is longer than {_minutes(self.max_track_s)}, the longest track accepted "
                             "(BACKSCORE_MAX_TRACK_S)")


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min" if seconds >= 120 else f"{seconds:.0f} s"
