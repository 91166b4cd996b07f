"""Where the MusicGen weights come from, and the messages when they are missing.

``MusicGenEngine.from_pretrained(weights)`` reads a local directory, else ``$BACKSCORE_MUSICGEN_WEIGHTS``,
else the Hugging Face cache entry of ``facebook/musicgen-small``, always offline unless
``allow_download=True`` (:data:`WEIGHTS`, an :class:`engines.weights.HFModelSpec`).
"""

from __future__ import annotations

from engines.weights import HFModelSpec

MODEL_ID = "facebook/musicgen-small"
WEIGHTS_ENV = "BACKSCORE_MUSICGEN_WEIGHTS"
#: The MusicGen checkpoint: where it is looked up, how it loads, what the errors say.
WEIGHTS = HFModelSpec("MusicGen weights", MODEL_ID, WEIGHTS_ENV, f"--weights DIR or {WEIGHTS_ENV}=DIR",
                      "the MusicGen engine", needs="transformers", source="--weights")
INSTALL_HINT = WEIGHTS.install_hint

#: ``(path or None, where)``: where MusicGen weights would be read from, without importing transformers.
find_weights = WEIGHTS.find
#: The one message for missing MusicGen weights (``where`` from :func:`find_weights`).
missing_weights_message = WEIGHTS.missing_message
