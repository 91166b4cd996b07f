"""The streaming MusicGen engine on the CPU with the tiny random-weight model of the real classes.

What a GPU replica relies on, checked where no GPU is: the preallocated decoder computes what
transformers computes; greedy streams equal ``generate``; a stream's music is the same alone and in
a crowd that joins and leaves mid-chunk; a text change keeps the music so far and conditions the
rest; the window slide is a restart from the last tokens; streams hand over audio at their rate.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("transformers")

import torch
from transformers.modeling_outputs import BaseModelOutput

from engines.base import MoodControl, MusicStreamOptions
from engines.musicgen import MusicGenOptions
from engines.musicgen.debug_models import build_model
from engines.musicgen.prompts import describe
from engines.musicgen.sampling import pick, uniforms
from engines.musicgen.scheduled import SchedulerFull
from engines.musicgen.scheduler import MusicGenScheduler
from engines.musicgen.static_decoder import StaticDecoder
from engines.musicgen.streaming import StreamingMusicGenEngine, StreamingOptions

K = 4
SAD = MoodControl(valence=-0.7, arousal=-0.6, emotion="sad")
HAPPY = MoodControl(valence=0.7, arousal=0.6, emotion="happy")
GREEDY = MusicGenOptions(do_sample=False, guidance_scale=3.0, context_s=0.6, decode_context_s=0.1)
SAMPLED = MusicGenOptions(do_sample=True, top_k=50, guidance_scale=3.0, context_s=0.6, decode_context_s=0.2)


@pytest.fixture(scope="module")
def tiny() -> tuple[object, object]:
    return build_model("tiny")


def _frames(sch: MusicGenScheduler, st: object, n: int) -> torch.Tensor:
    """The first ``n`` frames of a stream that never slid, un-delayed: ``(K, n)``."""
    cols = sch.cols[st.slot]  # type: ignore[attr-defined]
    return torch.stack([cols[k, 1 + k : 1 + k + n] for k in range(K)])


def _drive(sch: MusicGenScheduler, streams: list, frames: int, rounds: int = 500) -> None:
    for _ in range(rounds):
        for st in streams:
            st.target_frames = max(st.target_frames, frames)
        sch.run_once()
        if all(sch._complete(st) >= frames for st in streams):
            return
    raise AssertionError("the scheduler did not make the frames asked for")


def test_static_decoder_equals_the_transformers_decoder(tiny) -> None:
    model, processor = tiny
    texts = [describe(SAD, None), describe(HAPPY, "epic")]
    tok = processor.tokenizer(texts, padding=True, return_tensors="pt")
    torch.manual_seed(3)
    p = 12
    seq = torch.randint(0, 64, (2, K, p))
    seq[:, :, 0] = model.config.decoder.pad_token_id
    with torch.inference_mode():
        hidden = model.text_encoder(**tok).last_hidden_state
        dec = StaticDecoder(model, capacity=3, max_positions=32, guidance_scale=3.0)
        for s in range(2):
            dec.set_text(s, hidden[s], tok["attention_mask"][s])
            dec.reset(s)
        ours = torch.stack([dec.step(2, seq[:, :, t]) for t in range(p)], 2)  # (2, K, P, V)
        h2 = torch.cat([hidden, torch.zeros_like(hidden)])
        a2 = torch.cat([tok["attention_mask"], torch.zeros_like(tok["attention_mask"])])
        out = model(attention_mask=a2, encoder_outputs=BaseModelOutput(last_hidden_state=h2),
                    decoder_input_ids=seq.reshape(2 * K, p).repeat(2, 1))
        lg = out.logits.reshape(4, K, p, -1).float()
        ref = lg[2:] + (lg[:2] - lg[2:]) * 3.0
        torch.testing.assert_close(ours, ref, atol=1e-5, rtol=1e-5)
        # the window slide's prefill of the same sequence ends where the steps did
        dec.set_text(2, hidden[0], tok["attention_mask"][0])
        torch.testing.assert_close(dec.prefill(2, seq[0]), ref[0, :, -1], atol=1e-5, rtol=1e-5)
        assert int(dec.pos[2]) == p and dec.bytes_per_slot() > 0


def test_greedy_stream_equals_transformers_generate(tiny) -> None:
    model, processor = tiny
    sch = MusicGenScheduler(model, processor, GREEDY, capacity=2, slide_s=10.0, sub_frames=5, lead_frames=0)
    text = describe(HAPPY, None)
    st = sch.open(1, text)
    n = 20
    _drive(sch, [st], n)
    with torch.inference_mode():
        ours = model.audio_encoder.decode(_frames(sch, st, n)[None, None], audio_scales=[None]).audio_values
        ref = model.generate(**processor(text=[text], return_tensors="pt"), do_sample=False, guidance_scale=3.0,
                             max_new_tokens=n + K - 1)
    np.testing.assert_allclose(ours[0, 0].numpy(), ref[0, 0].numpy(), atol=1e-6)


def test_a_stream_is_the_same_alone_and_in_a_crowd(tiny) -> None:
    """Counter-based sampling and per-row state: others joining and leaving change nothing for a stream."""
    model, processor = tiny
    n = 30
    alone = MusicGenScheduler(model, processor, SAMPLED, capacity=8, slide_s=10.0, sub_frames=5, lead_frames=0)
    me = alone.open(42, describe(SAD, None))
    _drive(alone, [me], n)
    ref = _frames(alone, me, n).clone()

    crowd = MusicGenScheduler(model, processor, SAMPLED, capacity=8, slide_s=10.0, sub_frames=5, lead_frames=0)
    others = [crowd.open(i, describe(HAPPY if i % 2 else SAD, "epic")) for i in range(3)]
    _drive(crowd, others, 7)  # the crowd is ahead when we join
    me2 = crowd.open(42, describe(SAD, None))
    _drive(crowd, [me2, *others], 12)
    crowd.close(others[0])  # one leaves mid-chunk (its slot is taken by the last active stream)
    late = [crowd.open(100 + i, describe(HAPPY, "lofi")) for i in range(4)]  # and more join
    _drive(crowd, [me2, *others[1:], *late], n)
    assert len(crowd.active) == 7
    assert torch.equal(_frames(crowd, me2, n), ref)


def test_a_text_change_keeps_the_music_so_far(tiny) -> None:
    model, processor = tiny
    runs = []
    for change in (False, True):
        sch = MusicGenScheduler(model, processor, GREEDY, capacity=2, slide_s=10.0, sub_frames=5, lead_frames=0)
        st = sch.open(0, describe(SAD, None))
        _drive(sch, [st], 10)
        if change:
            sch.set_text(st, describe(HAPPY, "epic"))
        _drive(sch, [st], 30)
        runs.append(_frames(sch, st, 30))
    same, changed = runs
    assert torch.equal(same[:, :10], changed[:, :10])  # what was made before the change stays
    assert not torch.equal(same[:, 14:], changed[:, 14:])  # the new text conditions what follows


def test_the_window_slides_from_the_last_tokens(tiny) -> None:
    """When a stream's positions run out it restarts from its last ``context`` frames: the slid stream goes on
    exactly as a fresh stream primed with those frames would (prefill == stepping through them)."""
    model, processor = tiny
    sch = MusicGenScheduler(model, processor, GREEDY, capacity=2, slide_s=0.2, sub_frames=5, lead_frames=0)
    st = sch.open(0, describe(SAD, None))
    keep_cols = sch.ctx_frames + K
    _drive(sch, [st], sch.max_positions - K + 1)  # positions full: the next round slides
    before = sch.cols[st.slot].clone()
    pos = sch._pos[st.slot]
    sch.run_once()
    assert sch.stats.slides == 1 and st.frame_base == pos + 1 - keep_cols
    after = sch.cols[st.slot]
    shift = st.frame_base
    for k in range(K):  # the kept frames are the last frames, shifted to the start; the rest is padding
        assert torch.equal(after[k, 1 + k : keep_cols], before[k, 1 + k + shift : keep_cols + shift])
        assert (after[k, : 1 + k] == sch.pad).all()
    # a fresh slot stepped through the same columns predicts the same next column
    fresh = MusicGenScheduler(model, processor, GREEDY, capacity=2, slide_s=10.0, sub_frames=5, lead_frames=0)
    twin = fresh.open(0, describe(SAD, None))
    fresh.run_once()  # admit and set the text
    with torch.inference_mode():
        fresh.decoder.reset(twin.slot)
        for c in range(keep_cols):
            logits = fresh.decoder.step(1, after[:, c][None])
    assert torch.equal(logits.argmax(-1)[0], after[:, keep_cols])
    _drive(sch, [st], st.frame_base + keep_cols + 10)  # and it goes on making music


def test_admission_control_says_when_the_replica_is_full(tiny) -> None:
    model, processor = tiny
    sch = MusicGenScheduler(model, processor, GREEDY, capacity=2, slide_s=1.0)
    a, b = sch.open(0, "x"), sch.open(1, "y")
    with pytest.raises(SchedulerFull, match="all 2 MusicGen streams"):
        sch.open(2, "z")
    sch.close(a)
    sch.run_once()
    assert sch.open(3, "w") and len(sch.active) == 1 and b.slot == 0


def test_uniforms_depend_on_seed_step_and_codebook_only() -> None:
    seeds = torch.tensor([1, 2, 1, 1])
    steps = torch.tensor([5, 5, 6, 5])
    u = uniforms(seeds, steps, 4)
    assert u.shape == (4, 4) and float(u.min()) >= 0 and float(u.max()) < 1
    assert torch.equal(u[0], u[3]) and not torch.equal(u[0], u[1]) and not torch.equal(u[0], u[2])
    assert len(set(u[0].tolist())) == 4  # codebooks differ
    many = uniforms(torch.arange(2000), torch.zeros(2000, dtype=torch.long), 1)
    assert abs(float(many.mean()) - 0.5) < 0.03  # roughly uniform
    logits = torch.tensor([[[0.0, 5.0, 0.0, 0.0]]])
    assert int(pick(logits, seeds[:1], steps[:1], do_sample=False)) == 1
    assert int(pick(logits * 10, seeds[:1], steps[:1], top_k=2)) == 1


def test_engine_streams_audio_that_follows_the_mood(tiny) -> None:
    model, processor = tiny
    eng = StreamingMusicGenEngine(model, processor, SAMPLED,
                                  StreamingOptions(capacity=4, chunk_s=0.2, lead_s=0.2, slide_s=0.4, threaded=True),
                                  device="cpu")
    try:
        streams = [eng.open_stream(MusicStreamOptions(sample_rate=48000, seed=i)) for i in range(2)]
        chunks = [[s.generate(SAD if c < 3 else HAPPY) for c in range(8)] for s in streams]
        for cs in chunks:
            assert all(c.audio.shape == (9600, 2) and c.sample_rate == 48000 for c in cs)
            assert [c.start_s for c in cs] == pytest.approx([0.2 * i for i in range(8)])
            assert [c.bars[0].section for c in cs] == [0, 0, 0, 1, 1, 1, 1, 1]
            audio = np.concatenate([c.audio[:, 0] for c in cs])
            assert np.all(np.isfinite(audio)) and float(np.sqrt(np.mean(audio**2))) > 1e-4
            # block-wise resampling joins without clicks: no jump at a chunk edge beyond the signal's own
            steps = np.abs(np.diff(audio))
            edges = [9600 * i - 1 for i in range(1, 8)]
            assert steps[edges].max() <= 4 * np.percentile(steps, 99.9) + 1e-6
        assert eng.scheduler.stats.slides >= 2  # 1.6 s of music in 0.4 s windows
        for s in streams:
            s.close()
    finally:
        eng.close()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs and bf16 need a CUDA device")
def test_cuda_graph_steps_equal_eager_steps(tiny) -> None:  # pragma: no cover - GPU machines only
    model, processor = tiny
    eager = MusicGenScheduler(model, processor, SAMPLED, capacity=4, slide_s=0.4, device="cuda",
                              dtype=torch.float32, sub_frames=5, lead_frames=0)
    graph = MusicGenScheduler(model, processor, SAMPLED, capacity=4, slide_s=0.4, device="cuda",
                              dtype=torch.float32, sub_frames=5, lead_frames=0, cuda_graphs=True)
    for sch in (eager, graph):  # as many streams as the largest graph: the same kernels run, bit for bit
        sts = [sch.open(i, describe(SAD, None)) for i in range(4)]
        _drive(sch, sts, 40)
    assert graph.graphs_error is None and graph.graphs.ladder == [1, 2, 4]
    assert torch.equal(eager.cols, graph.cols)


def test_registry_creates_the_streaming_engine(tmp_path) -> None:
    from engines.base import EngineUnavailable
    from engines.registry import create_music_engine

    model, processor = build_model("tiny")
    model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    eng = create_music_engine("musicgen", str(tmp_path), backend="torch-cpu")
    try:
        assert isinstance(eng, StreamingMusicGenEngine) and eng.scheduler.device.type == "cpu"
        chunk = eng.open_stream(MusicStreamOptions(sample_rate=48000)).generate(SAD)
        assert chunk.audio.shape == (24000, 2)
    finally:
        eng.close()
    with pytest.raises(EngineUnavailable, match="musicgen-chunked"):
        create_music_engine("musicgen", str(tmp_path), backend="ort-cpu")
