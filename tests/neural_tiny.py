"""Tiny random-weight models of the real transformers classes (CLIP, wav2vec2, MusicGen), built in
memory for the export/backend tests; configs as in engines/test_neural_encoders.py and
engines/test_musicgen.py; :func:`clip_tokenizer`, a word-level stand-in for CLIP's tokenizer."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from engines.base import EMOTIONS
from engines.clip_encoder import TEMPLATES

CLIP_VOCAB = 40
W2V_LABELS = {0: "neu", 1: "hap", 2: "ang", 3: "sad"}
K = 4  # MusicGen codebooks


def tiny_clip() -> Any:
    from transformers import CLIPConfig, CLIPModel

    torch.manual_seed(0)
    text = dict(vocab_size=CLIP_VOCAB, hidden_size=32, intermediate_size=48, num_hidden_layers=1,
                num_attention_heads=4, max_position_embeddings=16, projection_dim=16,
                pad_token_id=0, bos_token_id=2, eos_token_id=2)  # 2: pools at the argmax id, as the released config
    vision = dict(hidden_size=32, intermediate_size=48, num_hidden_layers=1, num_attention_heads=4,
                  image_size=32, patch_size=8, projection_dim=16)
    model = CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=16))
    with torch.no_grad():
        model.logit_scale.fill_(np.log(20.0))
    return model.eval()


def tiny_wav2vec2() -> Any:
    from transformers import Wav2Vec2Config, Wav2Vec2ForSequenceClassification

    torch.manual_seed(0)
    cfg = Wav2Vec2Config(
        hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
        conv_dim=(16, 16, 16), conv_stride=(5, 4, 4), conv_kernel=(10, 4, 4), num_conv_pos_embeddings=8,
        num_conv_pos_embedding_groups=2, classifier_proj_size=8, vocab_size=8, do_stable_layer_norm=False,
        feat_extract_norm="group", id2label=W2V_LABELS, label2id={v: k for k, v in W2V_LABELS.items()},
    )
    return Wav2Vec2ForSequenceClassification(cfg).eval()


def save_tiny_wav2vec2(d: Path) -> Path:
    """The tiny wav2vec2 classifier and its feature extractor, saved as a weights folder."""
    from transformers import Wav2Vec2FeatureExtractor

    tiny_wav2vec2().save_pretrained(d)
    Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=16000, padding_value=0.0, do_normalize=True,
                             return_attention_mask=False).save_pretrained(d)
    return d


@pytest.fixture(autouse=True, scope="module")
def isolated_onnx_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Exported graphs go to a temporary $BACKSCORE_CACHE; no $BACKSCORE_BACKEND from outside.

    Import it into a test module to apply it there (``from tests.neural_tiny import isolated_onnx_cache``).
    """
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("BACKSCORE_CACHE", str(tmp_path_factory.mktemp("cache")))
        mp.delenv("BACKSCORE_BACKEND", raising=False)
        yield


def tiny_musicgen(text_width: int = 24) -> Any:
    """A tiny MusicGen; ``text_width`` != 32 (the decoder's) exercises the enc_to_dec projection.
    The EnCodec codebooks (zeros at init: every code would decode alike) get random entries."""
    from engines.musicgen.debug_models import musicgen_config, random_musicgen

    torch.manual_seed(0)
    config = musicgen_config("tiny", text_width=text_width)
    assert config.decoder.num_codebooks == K
    model = random_musicgen(config)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for layer in model.audio_encoder.quantizer.layers:
            book = layer.codebook
            book.embed.copy_(torch.randn(book.embed.shape, generator=gen))
            book.embed_avg.copy_(book.embed)
    return model


def clip_tokenizer() -> Any:
    """Word-level stand-in for CLIP's BPE: ``<|startoftext|> ... <|endoftext|>`` with the end token
    having the highest id, as in the real vocabulary (CLIP pools the text at the argmax id)."""
    from tokenizers import Tokenizer, pre_tokenizers, processors
    from tokenizers.models import WordLevel
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "<unk>": 1, "<|startoftext|>": 2}
    for t in TEMPLATES:
        for w in t.replace("{}", "").split():
            vocab.setdefault(w, len(vocab))
    for e in EMOTIONS:
        vocab.setdefault(e, len(vocab))
    vocab["<|endoftext|>"] = len(vocab)
    tk = Tokenizer(WordLevel(vocab, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.Whitespace()
    tk.post_processor = processors.TemplateProcessing(
        single="<|startoftext|> $A <|endoftext|>",
        special_tokens=[("<|startoftext|>", vocab["<|startoftext|>"]), ("<|endoftext|>", vocab["<|endoftext|>"])],
    )
    return PreTrainedTokenizerFast(tokenizer_object=tk, pad_token="<pad>", bos_token="<|startoftext|>",
                                   eos_token="<|endoftext|>", unk_token="<unk>")
