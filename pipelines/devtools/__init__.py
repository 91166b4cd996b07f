"""Developer tools, not on the runtime path: benchmarks (``make bench``, ``make bench-gpu``, ranking)
and synthetic test videos whose mood changes at known times (tests, demo, ``backscore synth-video``)."""
