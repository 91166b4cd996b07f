"""The recommender's training data: the pairs CSV, the per-video analysis cache and the soft labels.

Pairs CSV (:func:`load_pairs`)
    ``video,track_id`` rows, videos relative to the CSV's folder; see :data:`REAL_PAIRS_HOWTO`.

Analysis cache (:func:`load_records`)
    Each distinct video is analysed once into a :class:`~pipelines.library.recommender.VideoRecord`
    and kept as ``<cache_dir>/<hash>.npz``, keyed by the video's path, size and mtime and
    :data:`~pipelines.library.recommender.FEATURE_VERSION`.

Soft labels
    The target for a pair (video, track ``t``) is a distribution over all tracks: ``1 - eps`` on
    ``t`` and ``eps`` spread over the others in proportion to
    ``(l_t . LABEL_SIMILARITY . l_u) * exp(-|va_t - va_u|^2 / (2 * SOFT_VA_SIGMA^2))``: label
    similarity of their emotion labels times valence-arousal proximity (:func:`soft_targets`;
    ``eps`` is :data:`~pipelines.library.recommender.SOFT_EPSILON`, recorded in the model's
    :class:`~pipelines.library.recommender.ModelConfig`). :mod:`pipelines.training.recommender`
    trains against them.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from pipelines.errors import DataError
from pipelines.library.profile import LABEL_SIMILARITY, VideoProfile
from pipelines.library.ranking import TrackMatrix
from pipelines.library.recommender import (
    FEATURE_VERSION,
    SOFT_EPSILON,
    VideoRecord,
    _id_span,
    record_from_analysis,
)

if TYPE_CHECKING:
    from pipelines.analysis.analyze import Analysis

log = logging.getLogger(__name__)

REAL_PAIRS_HOWTO = """\
### Training the recommender on real pairs

`backscore recommender train` learns which library track a person would put under a video.
It needs a CSV with the header `video,track_id`, one row per choice: the video file (relative
to the CSV's folder, or absolute) and the number of the track a human chose for it from the
same library the model will recommend from (`1..100` for the built-in catalog, or the ids of
your `backscore library index` database). Extra columns are ignored.

    video,track_id
    clips/beach_day.mp4,12
    clips/night_drive.mov,57

Sources of real pairs: a creators' own history (the videos they published and the library
track they used), or an annotation session in which editors pick the best of the top-10
tracks `backscore recommend` proposes. Aim for at least 5-10 videos per track you expect to
be chosen; the soft labels let neighbouring tracks (similar mood labels and valence-arousal)
share evidence, so tracks never chosen still get sensible scores.

    backscore recommender train pairs.csv -o model.pt          # analyses each video once (cached)
    backscore recommender eval held_out.csv --model model.pt  # accuracy, top-5, MRR vs the
                                                              # untrained affect-distance ranker
    backscore recommend VIDEO --model model.pt                # blends the model into the ranking

Keep a held-out CSV of videos never used in training and compare the model with the
untrained ranker on it before relying on it. `backscore recommender make-data` writes a
synthetic set (mood-generated clips, labelled by a documented rule) to try the workflow.
"""

# --------------------------------------------------------------------------- pairs CSV


@dataclass(frozen=True)
class Pair:
    """One training/evaluation example: a video and the track a person (or a rule) chose."""

    video: str
    track_id: int
    line: int = 0


def load_pairs(csv_path: str | os.PathLike[str], library_ids: Sequence[int]) -> list[Pair]:
    """Read ``video,track_id`` rows; videos relative to the CSV's folder. Any problem ->
    :class:`DataError` naming the file and line."""
    path = Path(csv_path)
    name = path.name
    if not path.is_file():
        raise DataError(f"pairs file {csv_path} not found")
    ids = {int(i) for i in library_ids}
    base = path.parent
    pairs: list[Pair] = []
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            rows = list(csv.reader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"{name}: cannot read: {exc}") from exc
    if not rows or [c.strip().lower() for c in rows[0][:2]] != ["video", "track_id"]:
        raise DataError(f"{name} line 1: expected the header video,track_id")
    for lineno, row in enumerate(rows[1:], start=2):
        if not row or all(not c.strip() for c in row):
            continue
        pairs.append(_parse_row(row, lineno, name, base, ids))
    if not pairs:
        raise DataError(f"{name}: no pairs after the header")
    return pairs


def _parse_row(row: list[str], lineno: int, name: str, base: Path, ids: set[int]) -> Pair:
    if len(row) < 2 or not row[0].strip() or not row[1].strip():
        raise DataError(f"{name} line {lineno}: expected video,track_id, got {','.join(row)!r}")
    video, raw_id = row[0].strip(), row[1].strip()
    try:
        tid = int(raw_id)
    except ValueError:
        raise DataError(f"{name} line {lineno}: track id {raw_id!r} is not a whole number") from None
    if tid not in ids:
        raise DataError(f"{name} line {lineno}: track id {tid} is not in the library ({_id_span(sorted(ids))})")
    vpath = Path(video) if os.path.isabs(video) else base / video
    if not vpath.is_file():
        raise DataError(f"{name} line {lineno}: video {video} not found")
    return Pair(os.fspath(vpath), tid, lineno)


# --------------------------------------------------------------------------- per-video analysis cache


def _cache_path(cache_dir: str, video: str) -> str:
    st = os.stat(video)
    key = f"{os.path.abspath(video)}|{st.st_size}|{st.st_mtime_ns}|v{FEATURE_VERSION}"
    return os.path.join(cache_dir, hashlib.sha1(key.encode()).hexdigest()[:20] + ".npz")


def _save_record(path: str, rec: VideoRecord) -> None:
    tmp = path + ".partial.npz"
    np.savez(tmp, raw=rec.raw, affect=rec.affect, profile=np.array(json.dumps(rec.profile.to_json())))
    os.replace(tmp, path)


def _load_record(path: str) -> VideoRecord | None:
    try:
        with np.load(path) as z:
            return VideoRecord(z["raw"], z["affect"], VideoProfile.from_json(json.loads(str(z["profile"]))))
    except (OSError, ValueError, KeyError, DataError) as exc:
        log.warning("ignoring unreadable cache entry %s: %s", path, exc)
        return None


AnalyzeFn = Callable[[str], "Analysis"]


def default_analyze_fn() -> AnalyzeFn:
    """:func:`pipelines.analysis.analyze.analyze` with the default engines, loaded once."""
    from pipelines.analysis.analyze import analyze
    from pipelines.analysis.engines import default_engines

    engines = default_engines()
    return lambda path: analyze(path, engines)


def load_records(videos: Sequence[str], analyze_fn: AnalyzeFn | None = None, cache_dir: str | None = None,
                 progress: Callable[[str, float], None] | None = None) -> list[VideoRecord]:
    """Analyse each distinct video once (reusing ``cache_dir/*.npz`` keyed by path, size, mtime)."""
    fn = analyze_fn
    out: dict[str, VideoRecord] = {}
    distinct = list(dict.fromkeys(videos))
    if cache_dir:
        os.makedirs(cache_dir, exist_ok=True)
    for k, video in enumerate(distinct):
        cpath = _cache_path(cache_dir, video) if cache_dir else None
        rec = _load_record(cpath) if cpath and os.path.exists(cpath) else None
        if rec is None:
            if fn is None:
                fn = default_analyze_fn()
            rec = record_from_analysis(fn(video))
            if cpath:
                _save_record(cpath, rec)
        out[video] = rec
        if progress:
            progress("analyse", (k + 1) / len(distinct))
    return [out[v] for v in videos]


# --------------------------------------------------------------------------- soft labels

#: VA proximity width of the soft labels.
SOFT_VA_SIGMA = 0.35


def soft_targets(tracks: TrackMatrix, epsilon: float = SOFT_EPSILON, va_sigma: float = SOFT_VA_SIGMA) -> np.ndarray:
    """(T, T): row ``t`` is the target distribution when track ``t`` was chosen (see module doc)."""
    n = len(tracks)
    label_sim = tracks.labels @ LABEL_SIMILARITY @ tracks.labels.T
    va = np.stack([tracks.valence, tracks.arousal], axis=1).astype(np.float64)
    d2 = ((va[:, None, :] - va[None, :, :]) ** 2).sum(axis=-1)
    w = label_sim * np.exp(-d2 / (2 * va_sigma**2))
    np.fill_diagonal(w, 0.0)
    out = np.eye(n)
    if n == 1:
        return out
    sums = w.sum(axis=1, keepdims=True)
    spread = np.where(sums > 1e-12, w / np.maximum(sums, 1e-12), (1 - np.eye(n)) / (n - 1))
    return np.asarray((1.0 - epsilon) * np.eye(n) + epsilon * spread)
