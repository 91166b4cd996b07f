"""Media files in and out, through PyAV.

* ``decode`` -- a video file -> small analysis frames and its soundtrack at 48 kHz (only the frames
  analysed are converted, and small).
* ``mux`` -- a new soundtrack under a video: the video stream copied packet for packet.
* ``outputs`` -- outputs checked up front, written to a temporary sibling and renamed when complete.
"""
