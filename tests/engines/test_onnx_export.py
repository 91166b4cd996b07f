"""ONNX export of the neural models (tiny random-weight real transformers classes), run with ONNX
Runtime on the CPU at two batch sizes and two lengths, against torch. Max abs errors are printed
(``pytest -s``) and bounded."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")
pytest.importorskip("transformers")
torch = pytest.importorskip("torch")

from engines.backends import OrtRunner  # noqa: E402
from engines.onnx_export import (  # noqa: E402
    ExportSpec,
    clip_image_spec,
    clip_text_spec,
    encodec_decoder_spec,
    export_key,
    export_spec,
    musicgen_decoder_spec,
    musicgen_text_encoder_spec,
    wav2vec2_spec,
)
from tests.neural_tiny import CLIP_VOCAB, K, tiny_clip, tiny_musicgen, tiny_wav2vec2  # noqa: E402

#: Max abs error allowed, relative to the largest reference value (floor 1).
TOL = 1e-4


@pytest.fixture(autouse=True)
def _cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BACKSCORE_CACHE", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def clip() -> Any:
    return tiny_clip()


@pytest.fixture(scope="module")
def w2v() -> Any:
    return tiny_wav2vec2()


@pytest.fixture(scope="module")
def musicgen() -> Any:
    return tiny_musicgen()


def _ort_vs_torch(spec: ExportSpec, cases: Iterable[tuple[Any, ...]],
                  dynamic: Callable[[tuple[Any, ...]], str]) -> float:
    """Export, run every case with ONNX Runtime (CPU) and torch; returns the worst max abs error."""
    path = export_spec(spec)
    runner = OrtRunner(path, spec.input_names, "cpu", threads=1)
    worst = scale = 0.0
    shapes = set()
    for args in cases:
        with torch.inference_mode():
            ref = spec.module(*args).numpy()
        out = runner(*(a.numpy() for a in args))
        assert out.shape == ref.shape, (out.shape, ref.shape)
        assert np.isfinite(out).all()
        err = float(np.abs(out - ref).max())
        assert err <= TOL * max(1.0, float(np.abs(ref).max())), (spec.name, dynamic(args), err)
        worst = max(worst, err)
        scale = max(scale, float(np.abs(ref).max()))
        shapes.add(dynamic(args))
    print(f"\n{spec.name}: ONNX Runtime CPU vs torch, max abs error {worst:.2e} (max |torch| {scale:.2e}) "
          f"over {sorted(shapes)}")
    return worst


def test_clip_image_tower(clip: Any) -> None:
    spec = clip_image_spec(clip)
    gen = torch.Generator().manual_seed(0)
    cases = [(torch.randn(b, 3, 32, 32, generator=gen),) for b in (1, 5)]
    with torch.inference_mode():  # the wrapper is get_image_features + L2 normalisation
        x = cases[1][0]
        feats = clip.get_image_features(pixel_values=x)
        feats = feats if isinstance(feats, torch.Tensor) else feats.pooler_output
        torch.testing.assert_close(spec.module(x), torch.nn.functional.normalize(feats, dim=-1))
    _ort_vs_torch(spec, cases, lambda a: f"batch {a[0].shape[0]}")


def _clip_ids(b: int, t: int, gen: Any) -> tuple[Any, Any]:
    ids = torch.randint(3, CLIP_VOCAB - 1, (b, t), generator=gen)
    mask = torch.ones(b, t, dtype=torch.long)
    ids[:, -1] = CLIP_VOCAB - 1  # end of text: the highest id, where CLIP pools
    if b > 1:  # a shorter row, right-padded
        ids[1, -3] = CLIP_VOCAB - 1
        ids[1, -2:] = 0
        mask[1, -2:] = 0
    return ids, mask


def test_clip_text_tower(clip: Any) -> None:
    spec = clip_text_spec(clip)
    gen = torch.Generator().manual_seed(0)
    cases = [_clip_ids(b, t, gen) for b in (1, 4) for t in (5, 12)]
    with torch.inference_mode():
        ids, mask = cases[-1]
        feats = clip.get_text_features(input_ids=ids, attention_mask=mask)
        feats = feats if isinstance(feats, torch.Tensor) else feats.pooler_output
        torch.testing.assert_close(spec.module(ids, mask), torch.nn.functional.normalize(feats, dim=-1))
    _ort_vs_torch(spec, cases, lambda a: f"batch {a[0].shape[0]} x {a[0].shape[1]} tokens")


def test_wav2vec2_logits(w2v: Any) -> None:
    spec = wav2vec2_spec(w2v)
    gen = torch.Generator().manual_seed(0)
    cases = [(torch.randn(b, n, generator=gen),) for b in (1, 3) for n in (3_200, 8_000)]
    _ort_vs_torch(spec, cases, lambda a: f"batch {a[0].shape[0]} x {a[0].shape[1]} samples")


def test_musicgen_text_encoder(musicgen: Any) -> None:
    spec = musicgen_text_encoder_spec(musicgen)
    gen = torch.Generator().manual_seed(0)
    cases = []
    for b in (1, 3):
        for t in (4, 11):
            mask = torch.ones(b, t, dtype=torch.long)
            mask[-1, t // 2 :] = 0
            cases.append((torch.randint(2, 100, (b, t), generator=gen), mask))
    _ort_vs_torch(spec, cases, lambda a: f"batch {a[0].shape[0]} x {a[0].shape[1]} tokens")


def test_musicgen_decoder_step(musicgen: Any) -> None:
    from transformers.modeling_outputs import BaseModelOutput

    spec = musicgen_decoder_spec(musicgen)
    assert spec.module.projection is not None  # text width 24 != decoder width 32
    gen = torch.Generator().manual_seed(0)
    cases = []
    for b in (1, 2):
        for t in (1, 9):
            ids = torch.randint(0, 65, (b * K, t), generator=gen)
            hidden = torch.randn(b, 7, 24, generator=gen)
            enc_mask = torch.ones(b, 7, dtype=torch.long)
            dec_mask = torch.ones(b, t, dtype=torch.long)
            enc_mask[-1, 5:] = 0
            if t > 2:
                dec_mask[-1, :2] = 0  # a left-padded row
            cases.append((ids, hidden, enc_mask, dec_mask))
    with torch.inference_mode():  # the wrapper is MusicgenForConditionalGeneration.forward after the text encoder
        ids, hidden, enc_mask, dec_mask = cases[-1]
        ref = musicgen(attention_mask=enc_mask, encoder_outputs=BaseModelOutput(last_hidden_state=hidden),
                       decoder_input_ids=ids, decoder_attention_mask=dec_mask, use_cache=False).logits
        torch.testing.assert_close(spec.module(*cases[-1]), ref)
    _ort_vs_torch(spec, cases, lambda a: f"batch {a[1].shape[0]} x {a[0].shape[1]} steps")


def test_encodec_decoder(musicgen: Any) -> None:
    spec = encodec_decoder_spec(musicgen)
    lo = spec.axis_ranges["frames"][0]
    assert lo == musicgen.audio_encoder.config.kernel_size
    gen = torch.Generator().manual_seed(0)
    cases = [(torch.randint(0, 64, (b, K, n), generator=gen),) for b in (1, 3) for n in (lo, 23)]
    with torch.inference_mode():
        codes = cases[-1][0]
        ref = musicgen.audio_encoder.decode(codes[None], [None]).audio_values
        torch.testing.assert_close(spec.module(codes), ref)
        assert not torch.allclose(ref[0], ref[1])  # codes matter
    _ort_vs_torch(spec, cases, lambda a: f"batch {a[0].shape[0]} x {a[0].shape[2]} frames")


def test_export_is_cached_by_weights(w2v: Any, tmp_path: Path) -> None:
    spec = wav2vec2_spec(w2v)
    path = export_spec(spec)
    assert Path(path).parent == tmp_path / "cache" / "onnx" and Path(path).name.startswith("wav2vec2-logits-")
    mtime = Path(path).stat().st_mtime_ns
    assert export_spec(wav2vec2_spec(w2v)) == path and Path(path).stat().st_mtime_ns == mtime
    assert [p.name for p in Path(path).parent.iterdir()] == [Path(path).name]  # no temporary left over
    other = tiny_wav2vec2()
    with torch.no_grad():
        other.classifier.bias.add_(1.0)
    assert export_key(wav2vec2_spec(other)) != export_key(spec)


def test_bad_range_is_refused(w2v: Any) -> None:
    with pytest.raises(ValueError, match="bad range"):
        wav2vec2_spec(w2v, samples=(8000, 400, 16000))
