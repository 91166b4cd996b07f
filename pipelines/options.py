"""One parser and validator for what a user chooses about a job or a live session, on every transport.

The CLI (``--style``, ``--seed``, ...), HTTP query parameters, gRPC messages and WebRTC offers all
go through these functions, so a bad value gets the same :class:`~pipelines.errors.OptionError`
message wherever it comes from (and the same status: see :mod:`pipelines.errors`).

* :func:`parse_style` -- ``None``/``""``/``"auto"`` (the mood picks the style) or one of
  :data:`engines.base.STYLES`, case and surrounding spaces ignored.
* :func:`parse_seed` -- an integer in ``[0, MAX_SEED]`` (the composer's random generators need a
  non-negative seed).
* :func:`parse_top_k` -- how many recommendations, 1..:data:`MAX_TOP_K`.
* :func:`parse_music_engine` -- a name of :data:`engines.registry.MUSIC_ENGINES`.
* :func:`parse_loudness` -- ``None``/``""``/``"none"`` (no preset: the mix as it is) or a name of
  :data:`pipelines.offline.loudness_presets.PRESETS` (youtube, tiktok, broadcast, podcast).
* :func:`parse_session_fields` -- the per-session fields of a live request (style, seed,
  mix_original, engine) from a JSON object or a message, as changes to apply to the server's defaults.
* :class:`JobOptions` -- the options of an offline job (analyze, recommend, score) shared by
  the HTTP and gRPC front ends, validated when made.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from engines.base import STYLES
from pipelines.errors import OptionError

#: The style value that lets the mood choose.
AUTO_STYLE = "auto"
MAX_SEED = 2**31 - 1
MAX_TOP_K = 100


def parse_style(value: object, what: str = "style") -> str | None:
    """A style name, or ``None`` for automatic (see the module doc); :class:`OptionError` otherwise."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise OptionError(f"{what} must be a string: auto or one of {', '.join(STYLES)}")
    style = value.strip().lower()
    if style in ("", AUTO_STYLE):
        return None
    if style not in STYLES:
        raise OptionError(f"unknown style {value!r}; choose one of: {AUTO_STYLE}, {', '.join(STYLES)}")
    return style


def parse_seed(value: object, what: str = "seed") -> int:
    """A random seed: an integer in ``[0, MAX_SEED]`` (``True``/``False`` are not integers here)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise OptionError(f"{what} must be an integer (got {value!r})")
    if not 0 <= value <= MAX_SEED:
        raise OptionError(f"{what} must be between 0 and {MAX_SEED} (got {value})")
    return value


def parse_top_k(value: object, what: str = "top_k") -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise OptionError(f"{what} must be an integer (got {value!r})")
    if not 1 <= value <= MAX_TOP_K:
        raise OptionError(f"{what} must be between 1 and {MAX_TOP_K} (got {value})")
    return value


def parse_music_engine(value: object) -> str:
    from engines.registry import MUSIC_ENGINES

    if not isinstance(value, str) or value not in MUSIC_ENGINES:
        raise OptionError(f"unknown music engine {value!r}; expected one of {', '.join(MUSIC_ENGINES)}")
    return value


def parse_loudness(value: object, what: str = "loudness") -> str | None:
    """A loudness preset name, or ``None`` for none (see the module doc); :class:`OptionError` otherwise."""
    from pipelines.offline.loudness_presets import PRESETS

    if value is None:
        return None
    if not isinstance(value, str):
        raise OptionError(f"{what} must be a string: one of {', '.join(PRESETS)}")
    name = value.strip().lower()
    if name in ("", "none"):
        return None
    if name not in PRESETS:
        raise OptionError(f"unknown {what} preset {value!r}; choose one of: {', '.join(PRESETS)}")
    return name


def check_music_engine(name: str | None, available: tuple[str, ...] | list[str]) -> None:
    """A live session's engine (None: the server's) must be one the server runs."""
    if name is not None and name not in available:
        raise OptionError(f"this server has no {name} engine; it runs {', '.join(available)}")


def parse_session_fields(fields: Mapping[str, Any]) -> dict[str, Any]:
    """``style``, ``seed``, ``mix_original`` and ``engine`` of a live request, validated, as changes to the
    server's :class:`~pipelines.live.options.LiveOptions` (absent, ``null`` or empty fields change nothing)."""
    changes: dict[str, Any] = {}
    if fields.get("engine"):
        changes["engine"] = parse_music_engine(fields["engine"])
    if fields.get("style") is not None:
        changes["style"] = parse_style(fields["style"])
    if fields.get("seed") is not None:
        changes["seed"] = parse_seed(fields["seed"])
    if fields.get("mix_original") is not None:
        if not isinstance(fields["mix_original"], bool):
            raise OptionError("mix_original must be true or false")
        changes["mix_original"] = fields["mix_original"]
    return changes


@dataclass(frozen=True)
class JobOptions:
    """What an offline job (analyze, recommend, score) was asked to do; validated when made."""

    style: str | None = None
    seed: int = 0
    faces: bool = True
    top_k: int = 5
    per_segment: bool = False
    #: A library spec (``"catalog"`` or an SQLite path the server offers).
    library: str = "catalog"
    #: Music engine name (engines.registry) for score jobs, and its weights directory.
    engine: str = "procedural"
    weights: str | None = None
    #: Loudness preset of a score job's mix (pipelines.offline.loudness_presets), None: none.
    loudness: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "style", parse_style(self.style))
        object.__setattr__(self, "loudness", parse_loudness(self.loudness))
        parse_seed(self.seed)
        parse_top_k(self.top_k)
        parse_music_engine(self.engine)
