"""MusicGen models with random weights of the real transformers classes: nothing downloaded.

``"small"`` has facebook/musicgen-small's architecture (for benchmarks: speed does not depend on
the weights); ``"tiny"`` is the debug model every test and CPU run uses (2-layer T5, 2-layer 32-wide
decoder, 4 codebooks of 64, 32 kHz mono EnCodec), in the manner of audiocraft's debug models. The
word-level tokenizer knows the words :func:`~engines.musicgen.prompts.describe` uses, so two moods
are two different texts. Imports torch, transformers and tokenizers only (runs on a bare GPU box).
"""

from __future__ import annotations

from typing import Any

#: The words of the mood descriptions (so the debug tokenizer tells two moods apart).
MOOD_WORDS = (  # noqa: SIM905 - a word list reads better as text
    "lofi hip hop sad piano ballad upbeat pop epic orchestral ambient dark suspense cinematic film score "
    "happy joyful exciting energetic relaxing peaceful neutral easy-going melancholic tense suspenseful "
    "fearful eerie bright mellow electric soft drums warm bass acoustic guitar claps big brass strings choir "
    "pads gentle no low pulsing synth ticking percussion solo timpani slow moderate tempo upbeat fast bpm"
).split()


def musicgen_config(size: str, *, text_vocab: int = 100, text_width: int = 32) -> Any:
    """A ``MusicgenConfig`` of the given size (see the module doc). The pad/start token is the codebook size."""
    from transformers import EncodecConfig, MusicgenConfig, MusicgenDecoderConfig, T5Config

    if size == "tiny":
        text = T5Config(vocab_size=text_vocab, d_model=text_width, d_kv=8, d_ff=64, num_layers=2, num_heads=4,
                        pad_token_id=0, eos_token_id=1)
        codec = EncodecConfig(sampling_rate=32000, audio_channels=1, hidden_size=16, num_filters=4,
                              upsampling_ratios=[8, 5, 4, 4], codebook_size=64, target_bandwidths=[1.2],
                              num_lstm_layers=1, normalize=False, chunk_length_s=None)
        dec = MusicgenDecoderConfig(vocab_size=64, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                    ffn_dim=64, num_codebooks=4, pad_token_id=64, bos_token_id=64,
                                    max_position_embeddings=2048)
    elif size == "small":
        text = T5Config(vocab_size=32128, d_model=768, d_kv=64, d_ff=3072, num_layers=12, num_heads=12)
        codec = EncodecConfig(sampling_rate=32000, hidden_size=128, num_filters=64, upsampling_ratios=[8, 5, 4, 4],
                              codebook_size=2048, target_bandwidths=[2.2], num_lstm_layers=2, compress=2,
                              norm_type="weight_norm", chunk_length_s=None)
        dec = MusicgenDecoderConfig(vocab_size=2048, hidden_size=1024, num_hidden_layers=24, num_attention_heads=16,
                                    ffn_dim=4096, num_codebooks=4, pad_token_id=2048, bos_token_id=2048,
                                    max_position_embeddings=2048)
    else:
        raise ValueError(f"size must be tiny or small, got {size!r}")
    return MusicgenConfig(text_encoder=text.to_dict(), audio_encoder=codec.to_dict(), decoder=dec.to_dict())


def random_musicgen(config: Any) -> Any:
    """``MusicgenForConditionalGeneration`` with random weights, its generation config set to start and pad
    with the decoder's pad token."""
    from transformers import MusicgenForConditionalGeneration

    model = MusicgenForConditionalGeneration(config).eval()
    pad = config.decoder.pad_token_id
    gc = model.generation_config
    gc.decoder_start_token_id = gc.pad_token_id = gc.bos_token_id = pad
    return model


def word_tokenizer(words: list[str] | tuple[str, ...] = ()) -> Any:
    """A word-level tokenizer (pad 0, eos 1, unk 2) that knows ``words``, their dash-separated parts and
    the numbers 40..195 (tempos)."""
    from tokenizers import Tokenizer, pre_tokenizers
    from tokenizers.models import WordLevel
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2}
    for w in words:
        for piece in [*w.split("-"), w]:
            vocab.setdefault(piece, len(vocab))
    if words:
        for n in range(40, 200, 5):
            vocab.setdefault(str(n), len(vocab))
    tk = Tokenizer(WordLevel(vocab, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=tk, pad_token="<pad>", eos_token="</s>", unk_token="<unk>")


def init_codebooks(model: Any) -> None:
    """EnCodec codebooks start as zeros (every code decodes alike): seed each residual codebook
    with encoder frames of random audio, as k-means initialisation would, so codes carry the audio."""
    import numpy as np
    import torch

    gen = torch.Generator().manual_seed(1)
    t = torch.arange(32000 * 2) / 32000
    noise = torch.randn(8, 1, t.numel(), generator=gen) * torch.linspace(0.05, 0.8, 8)[:, None, None]
    tones = torch.stack([0.5 * torch.sin(2 * np.pi * f * t) for f in (55, 110, 220, 440, 880, 1760, 3520, 7040)])
    with torch.no_grad():
        frames = model.audio_encoder.encoder(torch.cat([noise, tones[:, None]]))  # (B, D, T)
        residual = frames.transpose(1, 2).reshape(-1, frames.shape[1])
        for layer in model.audio_encoder.quantizer.layers:
            book = layer.codebook
            pick = torch.randperm(residual.shape[0], generator=gen)[: book.embed.shape[0]]
            book.embed.copy_(residual[pick])
            book.embed_avg.copy_(book.embed)
            residual = residual - book.decode(book.encode(residual))


def build_model(size: str, *, mood_words: bool = True, seed: int = 0) -> tuple[Any, Any]:
    """A random-weight MusicGen of ``size`` and its processor (the word tokenizer of :data:`MOOD_WORDS`)."""
    import torch
    from transformers import EncodecFeatureExtractor, MusicgenProcessor

    torch.manual_seed(seed)
    tokenizer = word_tokenizer(MOOD_WORDS if mood_words else ())
    model = random_musicgen(musicgen_config(size, text_vocab=max(100, len(tokenizer))))
    if size == "tiny":
        init_codebooks(model)
    return model, MusicgenProcessor(EncodecFeatureExtractor(feature_size=1, sampling_rate=32000), tokenizer)
