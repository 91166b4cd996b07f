"""Per-frame encoders run over decoded frames: picture features, face expressions and the image model.

:class:`FaceWorker` runs the face analyzer (or, as :func:`picture_worker`, an image model such as
CLIP) on the frames that carry its picture, in batches, threaded while the video is still
being decoded; :func:`encode_frames` builds the :class:`~pipelines.analysis.windows.FrameTable`.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from engines.base import FrameEncoder
from pipelines.analysis.engines import Engines, FaceAnalyzer
from pipelines.analysis.windows import FrameTable
from pipelines.frames import VideoFrame


def encode_frames(frames: Sequence[VideoFrame], engines: Engines, batch: int = 64,
                  faces: tuple[np.ndarray, np.ndarray] | None = None,
                  pictures: tuple[np.ndarray, np.ndarray] | None = None) -> FrameTable:
    """Picture features of every analysed frame; face rows (and the picture encoder's rows,
    when :attr:`Engines.picture` is set) are computed here unless given."""
    times = np.array([f.pts_s for f in frames], dtype=np.float64)
    rows: list[np.ndarray] = []
    prev: np.ndarray | None = None
    for i in range(0, len(frames), batch):
        arr = np.stack([f.rgb for f in frames[i : i + batch]])
        rows.append(engines.frame.encode(arr, prev))
        prev = arr[-1]
    values = np.concatenate(rows) if rows else np.zeros((0, len(engines.frame.feature_names)), np.float32)
    table = FrameTable(times, engines.frame.feature_names, values, np.zeros(0), (), np.zeros((0, 0), np.float32))
    if engines.faces is not None:
        if faces is None:
            faces = _run_worker(FaceWorker(engines.faces, threaded=False), frames)
        table.face_times, table.face_names, table.face_values = faces[0], engines.faces.feature_names, faces[1]
    if engines.picture is not None:
        if pictures is None:
            pictures = _run_worker(picture_worker(engines.picture, threaded=False), frames)
        table.picture_times, table.picture_names, table.picture_values = (
            pictures[0], engines.picture.feature_names, pictures[1])
    return table


def _run_worker(worker: FaceWorker, frames: Sequence[VideoFrame]) -> tuple[np.ndarray, np.ndarray]:
    for f in frames:
        worker.put(f)
    return worker.result()


class _PictureAnalyzer:
    """A :class:`FrameEncoder` seen as a :class:`FaceAnalyzer` (pictures in, rows out)."""

    def __init__(self, encoder: FrameEncoder) -> None:
        self._encoder = encoder

    @property
    def feature_names(self) -> tuple[str, ...]:
        return self._encoder.feature_names

    def analyze(self, gray_frames: np.ndarray) -> np.ndarray:
        return self._encoder.encode(gray_frames)


def picture_worker(encoder: FrameEncoder, threaded: bool = True) -> FaceWorker:
    """A worker running ``encoder`` (CLIP) on the frames that carry a ``picture``."""
    return FaceWorker(_PictureAnalyzer(encoder), batch=8, threaded=threaded, source="picture")


class FaceWorker:
    """Runs the face analyzer on the frames that carry a grey picture, in batches.

    Threaded, it works while the video is still being decoded (OpenCV and numpy release the
    GIL); ``result()`` waits for it and returns ``(times_s, rows)``. ``source="picture"`` runs it
    on the frames' RGB ``picture`` instead (see :func:`picture_worker`).
    """

    def __init__(self, analyzer: FaceAnalyzer, batch: int = 16, threaded: bool = True,
                 source: str = "gray") -> None:
        if source not in ("gray", "picture"):
            raise ValueError(f"source must be 'gray' or 'picture', got {source!r}")
        self._analyzer = analyzer
        self._source = source
        self._batch = batch
        self._times: list[float] = []
        self._rows: list[np.ndarray] = []
        self._pending: list[VideoFrame] = []
        # An analyzer that finds each frame's faces apart from classifying them (FaceExpressionAnalyzer.find /
        # .rows) gets every frame as it comes; the batch is then only for the classifier. The threaded
        # worker thus keeps up with the decoder and leaves one batch's classification, not its detections,
        # for the end. The rows are the same as analyze() of the batch.
        find, rows = getattr(analyzer, "find", None), getattr(analyzer, "rows", None)
        self._find: Callable[[np.ndarray], Any] | None = find if rows is not None else None
        self._found_rows: Callable[[list[Any]], np.ndarray] | None = rows if find is not None else None
        self._found: list[Any] = []
        self._queue: queue.Queue[VideoFrame | None] | None = None
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        if threaded:
            self._queue = queue.Queue(maxsize=256)
            name = "faces" if source == "gray" else "pictures"
            self._thread = threading.Thread(target=self._run, name=name, daemon=True)
            self._thread.start()

    def _image(self, frame: VideoFrame) -> np.ndarray | None:
        return frame.gray if self._source == "gray" else frame.picture

    def put(self, frame: VideoFrame) -> None:
        if self._image(frame) is None:
            return
        if self._queue is not None:
            self._queue.put(frame)
        else:
            self._add(frame)

    def _add(self, frame: VideoFrame) -> None:
        self._pending.append(frame)
        if self._find is not None:  # its faces found now, not when the batch is full: nothing left for the end
            image = self._image(frame)
            assert image is not None
            self._found.append(self._find(image))
        if len(self._pending) >= self._batch:
            self._flush()

    def _flush(self) -> None:
        if not self._pending:
            return
        if self._found_rows is not None:
            self._rows.append(self._found_rows(self._found))
            self._found = []
        else:
            images = [self._image(f) for f in self._pending]
            self._rows.append(self._analyzer.analyze(np.stack([x for x in images if x is not None])))
        self._times.extend(f.pts_s for f in self._pending)
        self._pending = []

    def _run(self) -> None:
        assert self._queue is not None
        while True:
            item = self._queue.get()
            if item is None:
                break
            if self._error is None:
                try:
                    self._add(item)
                except BaseException as exc:  # reported by result()
                    self._error = exc

    def result(self) -> tuple[np.ndarray, np.ndarray]:
        if self._queue is not None and self._thread is not None:
            self._queue.put(None)
            self._thread.join()
        if self._error is not None:
            raise self._error
        self._flush()
        width = len(self._analyzer.feature_names)
        rows = np.concatenate(self._rows) if self._rows else np.zeros((0, width), np.float32)
        return np.array(self._times, dtype=np.float64), rows
