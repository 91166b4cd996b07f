"""The offline job: a video in, mood-following BGM under it, a video out.

* ``score`` -- the job: validate, analyse, compose, mix, write every output atomically.
* ``compose`` -- the music plan: a music stream driven chunk by chunk through the mood segments
  (one loop, :func:`~pipelines.offline.compose.compose_chunks`, for the whole piece and for
  streamed answers), sections, fitting a library track to the video.
* ``mix`` -- loudness (BS.1770), the BGM level, ducking under speech, the limiter.
* ``timeline`` / ``plot`` -- the ``--timeline`` JSON and the ``--plot`` PNG.
* ``jobs`` -- the offline jobs as request/response functions the HTTP and gRPC front ends share.
"""
