"""A live session: media pushed as it arrives, mood-following BGM pulled in paced 20 ms frames.

* ``session`` -- :class:`~pipelines.live.session.LiveSession`, what the transports use.
* ``analyzer`` -- the input side: media history, windows analysed as they fill, the rolling mood.
* ``bgm`` -- the output side: BGM kept ahead of the play head, mood changes spliced in on a beat.
* ``buffers`` -- the audio history ring and the playout buffer.
* ``pacing`` -- the one pacer of output frames (WebRTC's BGM track and gRPC's Stream).
* ``options`` / ``reports`` -- the session's options; its mood reports and metric hooks.
* ``models`` -- the seam to the models (:class:`~pipelines.live.models.LiveModels`), in process.
* ``inference`` -- the model calls as batch functions (what the Ray deployments run too).
* ``music`` -- the music worker side: streams kept per session, restored when lost.
* ``ingest`` -- PyAV frames (a file, a WebRTC track, a gRPC message) -> session input.

One live video frame: a transport decodes it, :class:`~pipelines.live.ingest.VideoSampler` keeps
it if the analysis rate wants it (as a 96 px thumbnail), :meth:`LiveSession.push_video` hands it to
the analyzer, which encodes it with the next window through the models, runs the window's affect
and mood tracker, and tells the BGM player of a confirmed mood change; the player asks the music
worker for a chunk in the new mood, splices it into the playout buffer at the next beat, and the
transport's pacer pulls it 20 ms at a time with :meth:`LiveSession.pull_frame`.
"""
