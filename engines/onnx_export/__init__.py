"""ONNX export of the neural engines' models, with dynamic batch and time axes.

Each model is wrapped in a small ``torch.nn.Module`` that takes plain tensors and returns one
tensor (:class:`ExportSpec` holds the wrapper, example inputs, tensor names, the dynamic axes
and a ``(min, opt, max)`` range per dynamic axis for TensorRT optimisation profiles):

* :mod:`.specs` -- one spec per model the engines export (:func:`clip_image_spec`,
  :func:`clip_text_spec`, :func:`wav2vec2_spec`, :func:`musicgen_text_encoder_spec`,
  :func:`musicgen_decoder_spec`, :func:`encodec_decoder_spec`) and their wrapper modules;
* :mod:`.export` -- :class:`ExportSpec`, the export itself (:func:`export_graph`,
  :func:`export_spec`) and the on-disk cache keyed by :func:`export_key`.
"""

from .export import (
    EXPORT_VERSION,
    INSTALL_HINT,
    OPSET,
    AxisRange,
    ExportSpec,
    cache_dir,
    export_graph,
    export_key,
    export_spec,
    weights_hash,
)
from .specs import (
    clip_image_spec,
    clip_text_spec,
    encodec_decoder_spec,
    musicgen_decoder_spec,
    musicgen_specs,
    musicgen_text_encoder_spec,
    wav2vec2_spec,
    wrapper,
)

__all__ = [
    "EXPORT_VERSION",
    "INSTALL_HINT",
    "OPSET",
    "AxisRange",
    "ExportSpec",
    "cache_dir",
    "clip_image_spec",
    "clip_text_spec",
    "encodec_decoder_spec",
    "export_graph",
    "export_key",
    "export_spec",
    "musicgen_decoder_spec",
    "musicgen_specs",
    "musicgen_text_encoder_spec",
    "wav2vec2_spec",
    "weights_hash",
    "wrapper",
]
