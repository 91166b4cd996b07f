"""The ``backscore`` command line: one module per command group (see :mod:`pipelines.cli.main`).

Process settings of the command (made here, when the command's process imports it):

* Library threads: the command's jobs keep the cores busy by themselves (the decoder's threads, the
  analysis' sound and face threads, worker processes), and what they hand to OpenBLAS and OpenCV is small.
  Those libraries' own thread pools would only add to it -- OpenBLAS's threads spin-wait for more work after
  every call: ~1.5 CPU-s of a 60 s ``backscore score`` on 2 cores -- with the same results. So the command
  runs them on one thread each unless ``OPENBLAS_NUM_THREADS`` / ``OPENCV_FOR_THREADS_NUM`` say otherwise
  (set before numpy and OpenCV are loaded: they read them then).
* Exit: the interpreter's last garbage collections walk every object of every module loaded (~0.1 s after a
  score job, scipy's alone are tens of thousands); the objects are frozen out of them when the process ends
  (everything is written and closed by then; the memory goes back with the process).
"""

import atexit
import gc
import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OPENCV_FOR_THREADS_NUM", "1")
atexit.register(gc.freeze)

from pipelines.cli.main import main  # noqa: E402 - after the thread counts

__all__ = ["main"]
