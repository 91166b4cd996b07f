"""Window datasets for the AMT (``engines/amt.py``): read/write, labels, export from videos.

File format (CSV, or Parquet when pandas and pyarrow are installed): one row per analysis
window, ``video_id, start_s, end_s, <feature columns...>, valence, arousal[, emotion]``.

* ``video_id`` groups the windows of one video (their order is ``start_s``).
* Feature columns are every column not named above; an empty cell (or ``nan``) is a missing
  feature. Names are those of ``backscore analyze``'s window features (``brightness``,
  ``motion``, ``loudness_db``, ``face_happy``, ``clip_sad``, ``w2v_hap``, ...).
* ``valence`` and ``arousal`` are in [-1, 1]; an empty cell leaves the window unlabelled (it is
  still context for its neighbours, but has no loss). ``emotion`` (optional) is one of
  :data:`~engines.base.EMOTIONS` or an alias in :data:`EMOTION_ALIASES`.

Any problem raises :class:`~pipelines.errors.DataError` naming the file, line (row for
Parquet) and column.

Labels file (for :func:`export_features`): ``video`` plus ``valence``/``arousal`` and/or
``emotion``, optionally ``start_s``/``end_s`` (a time range; without them the label holds for
the whole clip). A window takes the overlap-weighted mean of the ranges it overlaps (emotion:
the range with the largest overlap). A clip with only an emotion gets that emotion's
prototype valence/arousal (:data:`engines.affect.PROTOTYPES`, an approximation).
"""

from __future__ import annotations

import csv
import math
import os
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from engines.affect import PROTOTYPES
from engines.base import EMOTIONS
from pipelines.errors import DataError, OptionError

if TYPE_CHECKING:
    from pipelines.analysis.engines import Engines

#: Columns that are not features.
RESERVED: tuple[str, ...] = ("video_id", "start_s", "end_s", "valence", "arousal", "emotion")
REQUIRED: tuple[str, ...] = ("video_id", "start_s", "end_s", "valence", "arousal")

#: Category names of public emotion sets -> ours (RAVDESS, CREMA-D, IEMOCAP, FER spellings).
EMOTION_ALIASES: dict[str, str] = {
    "neu": "neutral", "calm": "relaxing", "relaxed": "relaxing", "hap": "happy", "happiness": "happy",
    "joy": "happy", "sadness": "sad", "ang": "tense", "angry": "tense", "anger": "tense", "fea": "fearful",
    "fear": "fearful", "dis": "tense", "disgust": "tense", "sur": "exciting", "surprise": "exciting",
    "surprised": "exciting", "excited": "exciting", "exc": "exciting",
}

#: RAVDESS file names: modality-channel-EMOTION-intensity-statement-repetition-actor (3rd field).
RAVDESS_CODES: dict[str, str] = {"01": "neutral", "02": "calm", "03": "happy", "04": "sad", "05": "angry",
                                 "06": "fearful", "07": "disgust", "08": "surprised"}
#: CREMA-D file names: actor_sentence_EMOTION_level (3rd field).
CREMA_D_CODES: dict[str, str] = {"ANG": "angry", "DIS": "disgust", "FEA": "fearful", "HAP": "happy",
                                 "NEU": "neutral", "SAD": "sad"}
DATASETS: tuple[str, ...] = ("ravdess", "crema-d")


def map_emotion(label: str) -> str | None:
    """Our emotion for ``label`` (case-insensitive, aliases mapped), ``None`` if empty; ``ValueError`` if unknown."""
    key = label.strip().lower()
    if not key:
        return None
    if key in EMOTIONS:
        return key
    if key in EMOTION_ALIASES:
        return EMOTION_ALIASES[key]
    raise ValueError(f"unknown emotion {label.strip()!r}; use one of {', '.join(EMOTIONS)} "
                     f"(or {', '.join(sorted(EMOTION_ALIASES))})")


@dataclass(frozen=True, eq=False)
class VideoWindows:
    """The windows of one video, in time order."""

    video_id: str
    start_s: np.ndarray  # (T,)
    end_s: np.ndarray  # (T,)
    features: np.ndarray  # (T, F) float64, NaN = missing
    va: np.ndarray  # (T, 2) float64, NaN = unlabelled
    emotion: np.ndarray  # (T,) int64 index into EMOTIONS, -1 = unlabelled

    def __len__(self) -> int:
        return len(self.start_s)

    def windows(self, names: Sequence[str]) -> list[dict[str, float]]:
        """The rows as feature mappings (missing features absent), as the affect models take them."""
        return [{n: float(x) for n, x in zip(names, row, strict=True) if math.isfinite(x)} for row in self.features]


@dataclass(frozen=True, eq=False)
class WindowData:
    feature_names: tuple[str, ...]
    videos: list[VideoWindows]
    source: str = ""

    @property
    def n_windows(self) -> int:
        return sum(len(v) for v in self.videos)

    def subset(self, idx: Iterable[int]) -> WindowData:
        return WindowData(self.feature_names, [self.videos[i] for i in idx], self.source)


# --------------------------------------------------------------------------- reading


def _cells(path: Path) -> tuple[list[str], Iterable[tuple[str, Sequence[Any]]]]:
    """Header and ``(where, row)`` pairs of a CSV or Parquet file."""
    name = path.name
    if path.suffix.lower() in (".parquet", ".pq"):
        try:
            import pandas as pd
        except ImportError:
            raise DataError(f"{name}: reading Parquet needs pandas and pyarrow (pip install pandas pyarrow); "
                            "or save the table as CSV") from None
        try:
            df = pd.read_parquet(path)
        except ImportError as exc:
            raise DataError(f"{name}: reading Parquet needs pyarrow (pip install pyarrow): {exc}") from None
        except Exception as exc:
            raise DataError(f"{name}: cannot read Parquet: {exc}") from exc
        header = [str(c) for c in df.columns]
        return header, ((f"row {i + 1}", list(r)) for i, r in enumerate(df.itertuples(index=False, name=None)))
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            rows = list(csv.reader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"{name}: cannot read: {exc}") from exc
    if not rows:
        raise DataError(f"{name}: empty file (expected a header line)")
    return [c.strip() for c in rows[0]], ((f"line {i}", r) for i, r in enumerate(rows[1:], start=2) if any(
        str(c).strip() for c in r))


def _number(cell: Any, where: str, column: str, *, missing_ok: bool) -> float:
    """A finite float, or NaN for an empty/``nan`` cell when ``missing_ok``."""
    if cell is None or (isinstance(cell, str) and not cell.strip()):
        if missing_ok:
            return math.nan
        raise DataError(f"{where}, column {column!r}: empty (a number is required)")
    try:
        x = float(cell.strip() if isinstance(cell, str) else cell)
    except (TypeError, ValueError):
        raise DataError(f"{where}, column {column!r}: {cell!r} is not a number") from None
    if math.isnan(x):
        if missing_ok:
            return math.nan
        raise DataError(f"{where}, column {column!r}: NaN (a number is required)")
    if not math.isfinite(x):
        raise DataError(f"{where}, column {column!r}: {cell!r} is not a finite number")
    return x


def load_windows(path: str | os.PathLike[str]) -> WindowData:
    """Read a window dataset (format in the module doc); :class:`DataError` naming line and column."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"data file {path} not found")
    name = p.name
    header, rows = _cells(p)
    dupes = sorted({c for c in header if header.count(c) > 1})
    if dupes:
        raise DataError(f"{name} line 1: duplicate column(s) {', '.join(dupes)}")
    missing = [c for c in REQUIRED if c not in header]
    if missing:
        raise DataError(f"{name} line 1: missing column(s) {', '.join(missing)} (expected video_id,start_s,end_s,"
                        "<feature columns...>,valence,arousal[,emotion])")
    col = {c: i for i, c in enumerate(header)}
    feats = [c for c in header if c not in RESERVED]
    if not feats:
        raise DataError(f"{name} line 1: no feature columns (every column other than {', '.join(RESERVED)})")
    groups: dict[str, list[tuple[float, float, list[float], float, float, int]]] = {}
    for where_, row in rows:
        where = f"{name} {where_}"
        if len(row) != len(header):
            raise DataError(f"{where}: {len(row)} fields, the header has {len(header)}")
        vid = str(row[col["video_id"]]).strip()
        if not vid:
            raise DataError(f"{where}, column 'video_id': empty")
        s = _number(row[col["start_s"]], where, "start_s", missing_ok=False)
        e = _number(row[col["end_s"]], where, "end_s", missing_ok=False)
        if e <= s:
            raise DataError(f"{where}: end_s ({e}) must be after start_s ({s})")
        values = [_number(row[col[c]], where, c, missing_ok=True) for c in feats]
        va = [_number(row[col[c]], where, c, missing_ok=True) for c in ("valence", "arousal")]
        for c, x in zip(("valence", "arousal"), va, strict=True):
            if math.isfinite(x) and not -1.0 <= x <= 1.0:
                raise DataError(f"{where}, column {c!r}: {x} is outside [-1, 1] (rescale the annotations)")
        if math.isfinite(va[0]) != math.isfinite(va[1]):
            raise DataError(f"{where}: valence and arousal must both be given or both be empty")
        emo = -1
        if "emotion" in col and row[col["emotion"]] is not None:
            try:
                mapped = map_emotion(str(row[col["emotion"]]))
            except ValueError as exc:
                raise DataError(f"{where}, column 'emotion': {exc}") from None
            emo = EMOTIONS.index(mapped) if mapped else -1
        groups.setdefault(vid, []).append((s, e, values, va[0], va[1], emo))
    if not groups:
        raise DataError(f"{name}: no rows after the header")
    videos = []
    for vid, items in groups.items():
        items.sort(key=lambda r: r[0])
        videos.append(VideoWindows(
            vid, np.array([r[0] for r in items]), np.array([r[1] for r in items]),
            np.array([r[2] for r in items], dtype=np.float64).reshape(len(items), len(feats)),
            np.array([[r[3], r[4]] for r in items], dtype=np.float64),
            np.array([r[5] for r in items], dtype=np.int64)))
    return WindowData(tuple(feats), videos, os.fspath(p))


# --------------------------------------------------------------------------- writing


def _fmt(x: float | None) -> str:
    return "" if x is None or not math.isfinite(x) else f"{x:.6g}"


def write_windows(path: str | os.PathLike[str], feature_names: Sequence[str],
                  rows: Sequence[tuple[str, float, float, dict[str, float], float, float, str | None]]) -> None:
    """Write ``(video_id, start_s, end_s, features, valence, arousal, emotion)`` rows as CSV or
    Parquet (by extension), atomically."""
    from pipelines.media.outputs import atomic_output

    header = ["video_id", "start_s", "end_s", *feature_names, "valence", "arousal", "emotion"]
    table = [[vid, _fmt(s), _fmt(e), *(_fmt(f.get(n)) for n in feature_names), _fmt(v), _fmt(a), emo or ""]
             for vid, s, e, f, v, a, emo in rows]
    parquet = os.fspath(path).lower().endswith((".parquet", ".pq"))
    if parquet:
        try:
            import pandas as pd
        except ImportError:
            raise OptionError("writing Parquet needs pandas and pyarrow (pip install pandas pyarrow); "
                              "write a .csv instead") from None
    with atomic_output(os.fspath(path)) as tmp:
        if parquet:
            df = pd.DataFrame(table, columns=header)
            for c in header:
                if c not in ("video_id", "emotion"):
                    df[c] = pd.to_numeric(df[c].replace("", None), errors="coerce")
            df.to_parquet(tmp, index=False)
        else:
            with open(tmp, "w", newline="", encoding="utf-8") as f:
                w = csv.writer(f)
                w.writerow(header)
                w.writerows(table)


# --------------------------------------------------------------------------- labels


@dataclass(frozen=True)
class Label:
    video: str
    start_s: float  # -inf / +inf for a whole clip
    end_s: float
    valence: float  # NaN when not given
    arousal: float
    emotion: str | None


def load_labels(path: str | os.PathLike[str]) -> list[Label]:
    """Read a labels CSV (module doc); videos relative to the file's folder when they exist there."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"labels file {path} not found")
    name = p.name
    header, rows = _cells(p)
    col = {c.lower(): i for i, c in enumerate(header)}
    if "video" not in col:
        raise DataError(f"{name} line 1: missing column 'video' (expected video,valence,arousal[,emotion]"
                        "[,start_s,end_s])")
    if not ({"valence", "arousal"} <= col.keys() or "emotion" in col):
        raise DataError(f"{name} line 1: needs valence and arousal columns, or an emotion column")
    out: list[Label] = []
    for where_, row in rows:
        where = f"{name} {where_}"
        if len(row) != len(header):
            raise DataError(f"{where}: {len(row)} fields, the header has {len(header)}")

        def cell(c: str, row: Sequence[Any] = row) -> str:
            return str(row[col[c]]).strip() if c in col and row[col[c]] is not None else ""

        video = cell("video")
        if not video:
            raise DataError(f"{where}, column 'video': empty")
        local = p.parent / video
        video = os.fspath(local) if not os.path.isabs(video) and local.exists() else video
        v = _number(cell("valence"), where, "valence", missing_ok=True)
        a = _number(cell("arousal"), where, "arousal", missing_ok=True)
        for c, x in (("valence", v), ("arousal", a)):
            if math.isfinite(x) and not -1.0 <= x <= 1.0:
                raise DataError(f"{where}, column {c!r}: {x} is outside [-1, 1] (rescale the annotations)")
        try:
            emo = map_emotion(cell("emotion"))
        except ValueError as exc:
            raise DataError(f"{where}, column 'emotion': {exc}") from None
        if not (math.isfinite(v) and math.isfinite(a)):
            if emo is None:
                raise DataError(f"{where}: no valence/arousal and no emotion")
            v, a = PROTOTYPES[emo]
        s = _number(cell("start_s"), where, "start_s", missing_ok=True)
        e = _number(cell("end_s"), where, "end_s", missing_ok=True)
        s, e = (-math.inf if math.isnan(s) else s), (math.inf if math.isnan(e) else e)
        if e <= s:
            raise DataError(f"{where}: end_s must be after start_s")
        out.append(Label(video, s, e, v, a, emo))
    if not out:
        raise DataError(f"{name}: no labels after the header")
    return out


def window_label(labels: Sequence[Label], start_s: float, end_s: float) -> tuple[float, float, str | None]:
    """Overlap-weighted valence/arousal and the most-overlapping emotion; NaN/None when nothing overlaps."""
    best, best_w, acc_v, acc_a, total = None, 0.0, 0.0, 0.0, 0.0
    for lb in labels:
        w = min(end_s, lb.end_s) - max(start_s, lb.start_s)
        if w <= 0:
            continue
        acc_v, acc_a, total = acc_v + w * lb.valence, acc_a + w * lb.arousal, total + w
        if lb.emotion is not None and w > best_w:
            best, best_w = lb.emotion, w
    if total <= 0:
        return math.nan, math.nan, None
    return acc_v / total, acc_a / total, best


def labels_from_filenames(files: Sequence[str], dataset: str) -> list[tuple[str, str]]:
    """``(file, our emotion)`` from RAVDESS or CREMA-D file names (codes in :data:`RAVDESS_CODES`,
    :data:`CREMA_D_CODES`); files whose names do not follow the scheme are skipped."""
    if dataset not in DATASETS:
        raise OptionError(f"unknown dataset {dataset!r}; expected one of {', '.join(DATASETS)}")
    out: list[tuple[str, str]] = []
    for f in files:
        stem = Path(f).stem
        if dataset == "ravdess":
            m = re.fullmatch(r"(\d\d)-(\d\d)-(\d\d)-\d\d-\d\d-\d\d-\d\d", stem)
            raw = RAVDESS_CODES.get(m.group(3)) if m and m.group(1) in ("01", "02") else None
        else:
            parts = stem.split("_")
            raw = CREMA_D_CODES.get(parts[2].upper()) if len(parts) >= 3 else None
        if raw is not None:
            mapped = map_emotion(raw)
            assert mapped is not None
            out.append((f, mapped))
    return out


# --------------------------------------------------------------------------- export


def _labels_for(video: str, labels: Sequence[Label]) -> list[Label]:
    same = [lb for lb in labels if os.path.abspath(lb.video) == os.path.abspath(video)]
    return same or [lb for lb in labels if os.path.basename(lb.video) == os.path.basename(video)]


def export_features(videos: Sequence[str], out_path: str | os.PathLike[str], engines: Engines,
                    labels: Sequence[Label] | None = None,
                    progress: Callable[[int, int, str], None] | None = None) -> tuple[int, int]:
    """Analyse each video and write its windows (features + labels) to ``out_path``.

    Without ``labels`` the label columns are left empty to be filled in. Returns
    ``(videos, windows)``. A video with no label row when ``labels`` are given -> DataError.
    """
    from pipelines.analysis.analyze import analyze

    if not videos:
        raise OptionError("no videos to export (give VIDEO arguments or a --labels file)")
    plan: list[tuple[str, list[Label]]] = []
    for v in videos:
        own = _labels_for(v, labels) if labels is not None else []
        if labels is not None and not own:
            raise DataError(f"no label for {v} in the labels file")
        plan.append((v, own))
    rows: list[tuple[str, float, float, dict[str, float], float, float, str | None]] = []
    names: dict[str, None] = {}
    for k, (video, own) in enumerate(plan):
        analysis = analyze(video, engines)
        for w in analysis.windows:
            names.update(dict.fromkeys(w.features))
            val, aro, emo = window_label(own, w.start_s, w.end_s) if own else (math.nan, math.nan, None)
            rows.append((video, w.start_s, w.end_s, w.features, val, aro, emo))
        if progress:
            progress(k + 1, len(plan), video)
    write_windows(out_path, list(names), rows)
    return len(plan), len(rows)
