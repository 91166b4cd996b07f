"""``make bench-gpu``: MusicGen chunked continuation throughput with random weights.

Builds the MusicGen architecture from config values (``--size small`` is facebook/musicgen-small:
T5-base text encoder, 24-layer 1024-wide decoder, 4 x 2048 codebooks, 32 kHz EnCodec;
``--size tiny`` is a test-sized model) with random weights -- no download -- and measures, per
number of concurrent streams (batched into one decoding pass): time to the first chunk, and
seconds of audio generated per second for 2 s chunks once each stream has 10 s of context.
Runs on CUDA when available (``--device``), else on the CPU (use ``--size tiny`` there).
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from typing import Any

from pipelines.bench import _replace_section

BEGIN = "<!-- bench:musicgen:begin -->"
END = "<!-- bench:musicgen:end -->"


def build_model(size: str) -> tuple[Any, Any]:
    """Random-weight MusicGen model and processor of the given size."""
    import torch
    from tokenizers import Tokenizer, pre_tokenizers
    from tokenizers.models import WordLevel
    from transformers import (
        EncodecConfig,
        EncodecFeatureExtractor,
        MusicgenConfig,
        MusicgenDecoderConfig,
        MusicgenForConditionalGeneration,
        MusicgenProcessor,
        PreTrainedTokenizerFast,
        T5Config,
    )

    torch.manual_seed(0)
    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2}
    tk = Tokenizer(WordLevel(vocab, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.Whitespace()
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, pad_token="<pad>", eos_token="</s>", unk_token="<unk>")
    if size == "tiny":
        text = T5Config(vocab_size=100, d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4)
        codec = EncodecConfig(sampling_rate=32000, hidden_size=16, num_filters=4, upsampling_ratios=[8, 5, 4, 4],
                              codebook_size=64, target_bandwidths=[1.2], num_lstm_layers=1)
        pad = 64
        dec = MusicgenDecoderConfig(vocab_size=64, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                    ffn_dim=64, num_codebooks=4, pad_token_id=pad, bos_token_id=pad,
                                    decoder_start_token_id=pad)  # type: ignore[call-arg]
    else:  # facebook/musicgen-small's configuration values
        text = T5Config(vocab_size=32128, d_model=768, d_kv=64, d_ff=3072, num_layers=12, num_heads=12)
        codec = EncodecConfig(sampling_rate=32000, hidden_size=128, num_filters=64, upsampling_ratios=[8, 5, 4, 4],
                              codebook_size=2048, target_bandwidths=[2.2], num_lstm_layers=2, compress=2,
                              norm_type="weight_norm", chunk_length_s=None)
        pad = 2048
        dec = MusicgenDecoderConfig(vocab_size=2048, hidden_size=1024, num_hidden_layers=24, num_attention_heads=16,
                                    ffn_dim=4096, num_codebooks=4, pad_token_id=pad, bos_token_id=pad,
                                    decoder_start_token_id=pad, max_position_embeddings=2048)  # type: ignore[call-arg]
    cfg = MusicgenConfig(text_encoder=text.to_dict(), audio_encoder=codec.to_dict(), decoder=dec.to_dict())
    model = MusicgenForConditionalGeneration(cfg).eval()
    gc = model.generation_config
    gc.decoder_start_token_id = gc.pad_token_id = gc.bos_token_id = pad
    return model, MusicgenProcessor(EncodecFeatureExtractor(feature_size=1, sampling_rate=32000), tok)


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
        streams = [engine.open_stream(MusicStreamOptions(sample_rate=48000, seed=i)) for i in range(batch)]
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


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--size", choices=("tiny", "small"), default=None, help="default: small on CUDA, tiny on CPU")
    ap.add_argument("--batches", default=None, help="comma-separated stream counts (default 1,4,16,64 on CUDA)")
    ap.add_argument("--device", default=None, help="cuda or cpu (default: cuda if available)")
    ap.add_argument("--out", help="Markdown file to update (e.g. BENCHMARKS.md)")
    args = ap.parse_args(argv)
    import torch

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    label = f"cuda ({torch.cuda.get_device_name(0)})" if device == "cuda" else "cpu"
    size = args.size or ("small" if device == "cuda" else "tiny")
    default = "1,4,16,64" if device == "cuda" else "1,4"
    batches = [int(b) for b in (args.batches or default).split(",")]
    lines = measure(size, batches, device, label)
    text = "\n".join(lines)
    print(text)
    if args.out:
        _replace_section(args.out, BEGIN, END, "MusicGen chunked continuation (`make bench-gpu`)", text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
