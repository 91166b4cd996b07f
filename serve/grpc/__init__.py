"""gRPC transport: the ``backscore.v1.Backscore`` service (serve/proto/backscore/v1/backscore.proto) and its client.

Modules:

* :mod:`~serve.grpc.protocol` -- messages <-> the pipelines' types: job and live options, the
  replies, live frame validation and its limits (no calls, status codes or Ray).
* :mod:`~serve.grpc.servicer` -- :class:`GrpcMethods`, the methods the gateway replica inherits
  (Analyze, Recommend, Score, Stream, health Check), and the mapping of errors to status codes.
* :mod:`~serve.grpc.jobs` -- :class:`GrpcJobMethods` (mixed into GrpcMethods): the async jobs' StartJob,
  WatchJob (server streaming) and CancelJob, on the HTTP job API's store and rules.
* :mod:`~serve.grpc.client` -- :class:`BackscoreClient`, :func:`stream_file` and the command line
  (``python -m serve.grpc.client``; ``python -m serve.grpc_client`` is the older name).
* :mod:`~serve.grpc.job_client` -- the command line's async job commands (``job``, ``watch``, ``cancel``;
  result files fetched over HTTP).

One live ``Stream`` message to the music that goes back: Ray Serve's gRPC proxy hands the client's
``LiveInput`` stream to the replica's :meth:`GrpcMethods.Stream
<serve.grpc.servicer.GrpcMethods.Stream>`; its reader task checks each ``VideoFrame`` against the
limits (:func:`~serve.grpc.protocol.video_frame`) and calls :meth:`LiveSession.push_video
<pipelines.live.session.LiveSession.push_video>`. The session's analyser turns the filled windows
into a rolling mood on the live models, and its BGM player keeps music in that mood generated
ahead of the play head (a mood change is spliced in at the next beat). The pacer task takes 20 ms
frames on time from :func:`~pipelines.live.pacing.paced_frames` (:meth:`LiveSession.pull_frame
<pipelines.live.session.LiveSession.pull_frame>`), packs five into a ``MusicChunk`` (s16le) and
queues it in the call's outbox (a slow reader loses the oldest); ``Stream`` yields it as a
``LiveOutput``, and the proxy sends it back to the client. Mood reports take the same outbox.

The package is named ``serve.grpc``; inside it, ``import grpc`` is still grpcio (absolute imports).
"""
