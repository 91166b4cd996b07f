"""MusicGenEngine: Meta's MusicGen (``facebook/musicgen-small``) through Hugging Face transformers.

A :class:`MusicGenStream` generates music chunk by chunk by *continuation*, from a text description
of the current mood and the tail of its own previous output; :class:`MusicGenEngine` advances
several streams in one batched decoding pass, on the inference backend of :mod:`engines.backends`.

Modules:

* :mod:`.engine` -- :class:`MusicGenEngine` and :class:`MusicGenStream`: chunks, prompts of past
  audio, crossfaded joins, resampling, the chunk's bar info;
* :mod:`.decoding` -- the decoding pass the engine runs (text encoder, classifier-free guidance,
  codebook delay pattern, KV-cached decoder loop, sampling, EnCodec), and which part runs on
  which backend;
* :mod:`.prompts` -- the text description of a mood (:func:`describe`);
* :mod:`.options` -- :class:`MusicGenOptions`;
* :mod:`.checkpoint` -- where the weights come from (:data:`WEIGHTS`).
"""

from .checkpoint import INSTALL_HINT, MODEL_ID, WEIGHTS, WEIGHTS_ENV, find_weights, missing_weights_message
from .engine import MusicGenEngine, MusicGenStream
from .options import MusicGenOptions
from .prompts import EMOTION_WORDS, STYLE_WORDS, describe, resolve_style, tempo_for, tempo_words

__all__ = [
    "EMOTION_WORDS",
    "INSTALL_HINT",
    "MODEL_ID",
    "STYLE_WORDS",
    "WEIGHTS",
    "WEIGHTS_ENV",
    "MusicGenEngine",
    "MusicGenOptions",
    "MusicGenStream",
    "describe",
    "find_weights",
    "missing_weights_message",
    "resolve_style",
    "tempo_for",
    "tempo_words",
]
