"""``make bench-gpu``: MusicGen chunked continuation throughput, and the encoders per inference backend.

**MusicGen.** Builds the MusicGen architecture from config values (``--size small`` is facebook/musicgen-small:
T5-base text encoder, 24-layer 1024-wide decoder, 4 x 2048 codebooks, 32 kHz EnCodec;
``--size tiny`` is a test-sized model) with random weights -- no download -- and measures, per
number of concurrent streams (batched into one decoding pass): time to the first chunk, and
seconds of audio generated per second for 2 s chunks once each stream has 10 s of context.
Runs on CUDA when available (``--device``), else on the CPU (use ``--size tiny`` there).

**Encoders per backend.** The CLIP image tower (``get_image_features`` + L2 normalisation) and the
wav2vec2 emotion classifier, random weights, on every backend of :mod:`engines.backends` that can
run here (torch and ONNX Runtime on the CPU; on a CUDA machine also ONNX Runtime CUDA, torch CUDA
and TensorRT FP16 when installed): CLIP frames per second (batches of 32) and wav2vec2 2 s windows
per second (batches of 8, 16 kHz), the one-time setup (ONNX export / TensorRT build, or a cache
hit) and the max abs difference from the torch module on the same device. ``--encoder-size base``
(default on CUDA) is openai/clip-vit-base-patch32 and wav2vec2-base (superb-er head);
``tiny`` (default on the CPU) the test-sized models.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from typing import Any

from engines.musicgen.debug_models import build_model
from pipelines.devtools.report import replace_section
from pipelines.frames import AUDIO_RATE

BEGIN = "<!-- bench:musicgen:begin -->"
END = "<!-- bench:musicgen:end -->"
ENC_BEGIN = "<!-- bench:encoders:begin -->"
ENC_END = "<!-- bench:encoders:end -->"


def measure(size: str, batches: list[int], device: str, label: str, chunk_s: float = 2.0,
            context_s: float = 10.0) -> list[str]:
    from engines.base import MoodControl, MusicStreamOptions
    from engines.musicgen import MusicGenEngine, MusicGenOptions

    model, processor = build_model(size)
    n_params = sum(p.numel() for p in model.parameters()) / 1e6
    engine = MusicGenEngine(model, processor, MusicGenOptions(chunk_s=chunk_s, context_s=context_s), device)
    control = MoodControl(0.3, 0.2, "happy")
    rows = [f"| streams | first chunk (s) | audio s per s, {chunk_s:.0f} s chunks, {context_s:.0f} s context "
            "| x real time per stream |", "|---|---|---|---|"]
    for batch in batches:
        streams = [engine.open_stream(MusicStreamOptions(sample_rate=AUDIO_RATE, seed=i)) for i in range(batch)]
        t = time.perf_counter()
        generated = engine.generate_batch([(s, control) for s in streams])[0].duration_s
        first = time.perf_counter() - t
        while generated < context_s:  # fill the context the way a live stream does
            generated += engine.generate_batch([(s, control) for s in streams])[0].duration_s
        t = time.perf_counter()
        chunks = engine.generate_batch([(s, control) for s in streams])
        dt = time.perf_counter() - t
        audio = sum(c.duration_s for c in chunks)
        rows.append(f"| {batch} | {first:.2f} | {audio / dt:.2f} | {audio / dt / batch:.2f} |")
        print(rows[-1], flush=True)
    head = (f"MusicGen `{size}` architecture ({n_params:.2f} M parameters, random weights), device {label}, "
            f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores, guidance 3.0, sampling.")
    return [head, "", *rows]


# --------------------------------------------------------------------------- encoders per backend


def build_clip(size: str) -> Any:
    """Random-weight ``CLIPModel``: ``base`` is openai/clip-vit-base-patch32's configuration, ``tiny`` the tests'."""
    import torch
    from transformers import CLIPConfig, CLIPModel

    torch.manual_seed(0)
    if size == "tiny":
        text = dict(vocab_size=40, hidden_size=32, intermediate_size=48, num_hidden_layers=1, num_attention_heads=4,
                    max_position_embeddings=16, projection_dim=16)
        vision = dict(hidden_size=32, intermediate_size=48, num_hidden_layers=1, num_attention_heads=4,
                      image_size=32, patch_size=8, projection_dim=16)
        proj = 16
    else:
        text = dict(vocab_size=49408, hidden_size=512, intermediate_size=2048, num_hidden_layers=12,
                    num_attention_heads=8, max_position_embeddings=77, projection_dim=512)
        vision = dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
                      image_size=224, patch_size=32, projection_dim=512)
        proj = 512
    return CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=proj)).eval()


def build_wav2vec2(size: str) -> Any:
    """Random-weight ``Wav2Vec2ForSequenceClassification``: ``base`` is wav2vec2-base with the superb-er head."""
    import torch
    from transformers import Wav2Vec2Config, Wav2Vec2ForSequenceClassification

    torch.manual_seed(0)
    labels = {0: "neu", 1: "hap", 2: "ang", 3: "sad"}
    if size == "tiny":
        cfg = Wav2Vec2Config(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
                             conv_dim=(16, 16, 16), conv_stride=(5, 4, 4), conv_kernel=(10, 4, 4),
                             num_conv_pos_embeddings=8, num_conv_pos_embedding_groups=2, classifier_proj_size=8,
                             vocab_size=8, id2label=labels, label2id={v: k for k, v in labels.items()})
    else:  # Wav2Vec2Config's defaults are wav2vec2-base
        cfg = Wav2Vec2Config(classifier_proj_size=256, use_weighted_layer_sum=True, id2label=labels,
                             label2id={v: k for k, v in labels.items()})
    return Wav2Vec2ForSequenceClassification(cfg).eval()


def _time_runner(runner: Any, x: Any, min_s: float) -> float:
    """Seconds per call (median of timed calls after a warm-up, at least ``min_s`` in all)."""
    import statistics

    runner(x)
    times: list[float] = []
    t_all = time.perf_counter()
    while time.perf_counter() - t_all < min_s or len(times) < 3:
        t = time.perf_counter()
        runner(x)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def measure_encoders(size: str, device: str, min_s: float = 3.0) -> list[str]:
    """Rows of frames/windows per second per backend that can run here (see the module doc)."""
    import numpy as np
    import torch

    from engines.backends import backend_statuses, spec_runner
    from engines.onnx_export import clip_image_spec, wav2vec2_spec

    statuses = backend_statuses()
    wanted = [b for b in statuses if b.available and b.device == device]
    skipped = [f"{b.name} ({b.reason})" for b in statuses if not b.available]
    clip, w2v = build_clip(size), build_wav2vec2(size)
    side = int(clip.config.vision_config.image_size)
    rng = np.random.default_rng(0)
    cases = [
        ("CLIP image tower", clip_image_spec(clip), rng.standard_normal((32, 3, side, side)).astype(np.float32),
         "frames/s", sum(p.numel() for p in clip.vision_model.parameters()) / 1e6),
        ("wav2vec2 classifier", wav2vec2_spec(w2v), rng.standard_normal((8, 32_000)).astype(np.float32),
         "2 s windows/s", sum(p.numel() for p in w2v.parameters()) / 1e6),
    ]
    rows = ["| model | backend | per second | batch | ms per batch | setup s | max abs diff vs torch |",
            "|---|---|---|---|---|---|---|"]
    for label, spec, x, unit, n_params in cases:
        ref: Any = None
        for b in sorted(wanted, key=lambda b: b.runtime != "torch"):  # torch first: the reference
            t = time.perf_counter()
            runner = spec_runner(spec, b, precision="fp16")
            setup = time.perf_counter() - t
            out = runner(x)
            ref = out if ref is None else ref
            diff = float(np.abs(out - ref).max())
            dt = _time_runner(runner, x, min_s)
            rows.append(f"| {label} ({n_params:.3g} M parameters) | {b.name} | {len(x) / dt:.1f} {unit} | {len(x)} | "
                        f"{dt * 1000:.1f} | {setup:.2f} | {diff:.1e} |")
            print(rows[-1], flush=True)
            del runner
            if device == "cuda":
                torch.cuda.empty_cache()
    gpu = f"cuda ({torch.cuda.get_device_name(0)})" if device == "cuda" else "cpu"
    cpu = platform.processor() or platform.machine()
    head = (f"Encoders `{size}` (random weights) per backend, device {gpu}, {cpu}, {os.cpu_count()} CPU cores, "
            f"torch {torch.__version__} ({torch.get_num_threads()} threads). TensorRT runs FP16, the others FP32.")
    lines = [head, "", *rows]
    if skipped:
        lines += ["", "Not available here: " + "; ".join(skipped) + "."]
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--size", choices=("tiny", "small"), default=None, help="default: small on CUDA, tiny on CPU")
    ap.add_argument("--batches", default=None, help="comma-separated stream counts (default 1,4,16,64 on CUDA)")
    ap.add_argument("--device", default=None, help="cuda or cpu (default: cuda if available)")
    ap.add_argument("--out", help="Markdown file to update (e.g. BENCHMARKS.md)")
    ap.add_argument("--part", choices=("all", "musicgen", "encoders"), default="all")
    ap.add_argument("--encoder-size", choices=("tiny", "base"), default=None,
                    help="default: base on CUDA, tiny on CPU")
    args = ap.parse_args(argv)
    import torch

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    label = f"cuda ({torch.cuda.get_device_name(0)})" if device == "cuda" else "cpu"
    if args.part in ("all", "musicgen"):
        size = args.size or ("small" if device == "cuda" else "tiny")
        default = "1,4,16,64" if device == "cuda" else "1,4"
        batches = [int(b) for b in (args.batches or default).split(",")]
        text = "\n".join(measure(size, batches, device, label))
        print(text)
        if args.out:
            replace_section(args.out, BEGIN, END, "MusicGen chunked continuation (`make bench-gpu`)", text)
    if args.part in ("all", "encoders"):
        enc_size = args.encoder_size or ("base" if device == "cuda" else "tiny")
        text = "\n".join(measure_encoders(enc_size, device))
        print(text)
        if args.out:
            replace_section(args.out, ENC_BEGIN, ENC_END, "Encoders per inference backend (`make bench-gpu`)", text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
