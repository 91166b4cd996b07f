"""Windows of pictures and sound -> affect -> mood; the offline job and live sessions share all of it.

* ``engines`` -- the engines an analysis uses, bundled (embedded defaults or ``--affect-engine``).
* ``windows`` -- window bounds, the per-frame feature table, the picture features of one window.
* ``frame_workers`` -- face and image-model workers over decoded frames, threaded with the decode.
* ``sound`` -- the soundtrack's features per window, speech over time, loudness.
* ``cuts`` -- the adaptive shot-cut detector.
* ``mood`` -- the rolling mood tracker (smoothing, hysteresis) and mood segments.
* ``analyze`` -- a whole video file analysed (the first half of ``backscore score``).
"""
