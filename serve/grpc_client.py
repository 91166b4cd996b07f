"""The older name of :mod:`serve.grpc.client`, kept for ``python -m serve.grpc_client ...`` and existing imports."""

from __future__ import annotations

import sys

from serve.grpc.client import (
    AUDIO_CHUNK_SAMPLES,
    CHANNEL_OPTIONS,
    BackscoreClient,
    audio_message,
    file_inputs,
    main,
    media_request,
    stream_file,
    thumbnail_message,
)

__all__ = ["AUDIO_CHUNK_SAMPLES", "CHANNEL_OPTIONS", "BackscoreClient", "audio_message", "file_inputs", "main",
           "media_request", "stream_file", "thumbnail_message"]

if __name__ == "__main__":
    sys.exit(main())
