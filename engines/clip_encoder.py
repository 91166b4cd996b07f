"""ClipFrameEncoder: zero-shot emotion probabilities of video frames with CLIP (``openai/clip-vit-base-patch32``).

Video2Music (Kang, Poria & Herremans 2024) describes each video frame with CLIP by comparing
its image embedding with text embeddings of emotion words. This encoder does the same for
:data:`~engines.base.EMOTIONS` (Video2Music's six words -- exciting, fearful, tense, sad,
relaxing, neutral -- plus ``happy``):

* **Prompts.** Every emotion word is put into each of :data:`TEMPLATES`
  (``"a {} scene"``, ``"a photo of a {} moment"``, ``"a still from a {} film"``). The
  L2-normalised text embeddings of one word's prompts are averaged and normalised again
  (the prompt ensembling of Radford et al. 2021, "Learning Transferable Visual Models From
  Natural Language Supervision", sec. 3.1.4). They are computed once, when the encoder is
  built.
* **Probabilities.** ``softmax(logit_scale * img @ text.T)`` over the seven emotions, with
  the model's own learnt ``logit_scale`` (100 for the released CLIP), as CLIP's zero-shot
  classifier does. ``img`` is the L2-normalised projected image embedding.

:meth:`ClipFrameEncoder.encode` returns those probabilities as the columns ``clip_<emotion>``
(:data:`FEATURE_NAMES`, in :data:`EMOTIONS` order; each row sums to 1). :meth:`ClipFrameEncoder.embed`
returns the L2-normalised image embeddings themselves (512 dimensions for ViT-B/32), e.g.
for similarity search. Frames are independent: ``previous`` is accepted for the
:class:`~engines.base.FrameEncoder` interface and ignored, and a batch gives the same rows
as the frames one by one (up to float noise).

Backend (``backend=``, :mod:`engines.backends`): the **image tower** -- the per-frame work --
runs on the chosen backend (``auto``: TensorRT, ONNX Runtime CUDA, torch CUDA, ONNX Runtime CPU,
torch CPU, the first that can run here, or ``$BACKSCORE_BACKEND``), through
:func:`engines.onnx_export.clip_image_spec` (exported once per weights, cached on disk). The
**text tower stays in torch** (on the CPU, or on the GPU beside a GPU backend when torch sees
one): it runs once, when the encoder is built, on 21 prompts, so an export (seconds to tens of
seconds for ViT-B/32) and a second inference session would cost more than they save.
:attr:`ClipFrameEncoder.backend` names the backend the image tower runs on. ONNX Runtime CPU
gives the torch rows within 1e-4 (``tests/test_neural_encoders.py``).

Weights: :meth:`ClipFrameEncoder.from_pretrained` reads a local directory, else
``$BACKSCORE_CLIP_WEIGHTS``, else the Hugging Face cache entry of ``openai/clip-vit-base-patch32``,
always offline unless ``allow_download=True`` (:data:`WEIGHTS`, an :class:`engines.weights.HFModelSpec`).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import numpy as np

from engines.base import EMOTIONS, FrameEncoder
from engines.weights import HFModelSpec

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

MODEL_ID = "openai/clip-vit-base-patch32"
WEIGHTS_ENV = "BACKSCORE_CLIP_WEIGHTS"
#: The CLIP checkpoint: where it is looked up, how it loads, what the errors say.
WEIGHTS = HFModelSpec("CLIP weights", MODEL_ID, WEIGHTS_ENV, f"--weights clip=DIR or {WEIGHTS_ENV}=DIR",
                      "the CLIP frame encoder")
INSTALL_HINT = WEIGHTS.install_hint

#: Prompt templates; each emotion's text embedding is the mean over these.
TEMPLATES: tuple[str, ...] = ("a {} scene", "a photo of a {} moment", "a still from a {} film")

#: Columns of :meth:`ClipFrameEncoder.encode`.
FEATURE_NAMES: tuple[str, ...] = tuple(f"clip_{e}" for e in EMOTIONS)


def prompts_for(word: str) -> list[str]:
    """The prompts of one emotion word (one per :data:`TEMPLATES` entry)."""
    return [t.format(word) for t in TEMPLATES]


# --------------------------------------------------------------------------- weights


#: ``(path or None, where)``: where the CLIP weights would be read from, without importing transformers.
find_weights = WEIGHTS.find
#: The one message for missing CLIP weights (``where`` from :func:`find_weights`).
missing_weights_message = WEIGHTS.missing_message


def _features(out: Any) -> torch.Tensor:
    """``get_*_features`` returns a tensor (transformers 4) or an output with ``pooler_output`` (5)."""
    import torch

    return out if isinstance(out, torch.Tensor) else out.pooler_output


# --------------------------------------------------------------------------- encoder


class ClipFrameEncoder(FrameEncoder):
    """CLIP zero-shot emotion probabilities per frame (see the module doc).

    Build it with :meth:`from_pretrained`, or from a ``CLIPModel`` and ``CLIPProcessor`` in memory.
    ``backend``: ``"auto"`` or a name of :data:`engines.backends.BACKENDS` (the image tower's);
    ``device``: the torch device of the text tower (and of the image tower on a torch backend),
    default from the backend. Raises :class:`EngineUnavailable` for a named backend that cannot
    run here.
    """

    feature_names: tuple[str, ...] = FEATURE_NAMES

    def __init__(self, model: Any, processor: Any, device: str | None = None, batch_size: int = 32,
                 backend: str = "auto") -> None:
        import torch

        from engines.backends import model_runner, resolve_backend, torch_device
        from engines.onnx_export import clip_image_spec

        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        chosen, pinned = resolve_backend(backend)
        self.device = torch.device(torch_device(chosen, device))
        self.model = model.to(self.device).eval()
        self.processor = processor
        self.batch_size = batch_size
        self.logit_scale = float(model.logit_scale.detach().exp().item())
        texts = [p for word in EMOTIONS for p in prompts_for(word)]
        tok = processor.tokenizer(texts, padding=True, return_tensors="pt")
        with torch.inference_mode():
            emb = _features(model.get_text_features(input_ids=tok["input_ids"].to(self.device),
                                                    attention_mask=tok["attention_mask"].to(self.device)))
            emb = torch.nn.functional.normalize(emb.float(), dim=-1)
            emb = emb.reshape(len(EMOTIONS), len(TEMPLATES), -1).mean(dim=1)
            #: (E, D) L2-normalised text embedding per emotion, in EMOTIONS order.
            self.text_embeddings = torch.nn.functional.normalize(emb, dim=-1)
        spec = clip_image_spec(self.model, batch=(1, batch_size, batch_size))
        #: numpy ``pixel_values`` (N, 3, S, S) -> (N, D) L2-normalised image embeddings, on :attr:`backend`.
        self.image_runner = model_runner(spec, chosen, pinned, device=str(self.device))
        #: The backend the image tower runs on (:data:`engines.backends.BACKENDS`).
        self.backend: str = self.image_runner.backend

    # ------------------------------------------------------------------ loading
    @classmethod
    def from_pretrained(cls, weights: str | None = None, device: str | None = None, allow_download: bool = False,
                        batch_size: int = 32, backend: str = "auto") -> ClipFrameEncoder:
        """Load model and processor from ``weights`` / ``$BACKSCORE_CLIP_WEIGHTS`` / the HF cache.

        Never touches the network unless ``allow_download`` (then the hub id is used when no
        local copy is found). Raises :class:`EngineUnavailable` saying how to provide the
        weights, or how to install transformers, or that a named ``backend`` cannot run here
        (checked before the weights are read).
        """
        model, processor, path = WEIGHTS.load("CLIPModel", "CLIPProcessor", weights,
                                              allow_download=allow_download, backend=backend)
        enc = cls(model, processor, device, batch_size, backend)
        log.info("clip: loaded %s, image tower on %s, text tower on torch %s", path, enc.backend, enc.device)
        return enc

    # ------------------------------------------------------------------ inference
    def embed(self, frames: np.ndarray) -> np.ndarray:
        """``(N, D)`` ``float32`` L2-normalised image embeddings of ``(N, H, W, 3)`` ``uint8`` RGB frames."""
        import torch

        x = np.asarray(frames)
        if x.ndim != 4 or x.shape[-1] != 3:
            raise ValueError(f"frames must have shape (N, H, W, 3), got {x.shape}")
        if x.dtype != np.uint8:
            raise ValueError(f"frames must be uint8, got {x.dtype}")
        dim = int(self.text_embeddings.shape[1])
        if len(x) == 0:
            return np.zeros((0, dim), np.float32)
        out = []
        for i in range(0, len(x), self.batch_size):
            batch = [f for f in x[i : i + self.batch_size]]
            pix = self.processor.image_processor(images=batch, return_tensors="pt")["pixel_values"]
            pixels = pix.numpy() if isinstance(pix, torch.Tensor) else np.asarray(pix)
            out.append(np.asarray(self.image_runner(pixels.astype(np.float32, copy=False)), np.float32))
        return np.concatenate(out).astype(np.float32)

    def probabilities(self, embeddings: np.ndarray) -> np.ndarray:
        """``(N, E)`` zero-shot emotion probabilities of L2-normalised image embeddings."""
        import torch

        img = torch.from_numpy(np.asarray(embeddings, np.float32)).to(self.device)
        logits = self.logit_scale * img @ self.text_embeddings.T
        return torch.softmax(logits, dim=-1).cpu().numpy().astype(np.float32)

    def encode(self, frames: np.ndarray, previous: np.ndarray | None = None) -> np.ndarray:
        """``(N, 7)`` ``float32``: columns ``clip_<emotion>`` (:data:`FEATURE_NAMES`); ``previous`` is ignored."""
        emb = self.embed(frames)
        if len(emb) == 0:
            return np.zeros((0, len(FEATURE_NAMES)), np.float32)
        return self.probabilities(emb)
