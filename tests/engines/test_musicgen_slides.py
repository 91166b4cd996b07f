"""Window slides of the streaming MusicGen scheduler at scale, on the CPU with the tiny random-weight model.

Hundreds of streams that start together would all run out of positions in the same round and re-prime
one after another while every listener waits. So the slides due are re-primed in one batch (a batched
prefill computes what one slot at a time computes), at most ``slides_per_round`` a round, and a
stream's first slide comes early by a phase drawn from its seed. Neither may change a stream's music:
only when it is made.
"""

from __future__ import annotations

import itertools
import threading
import time
from typing import Any

import pytest

pytest.importorskip("transformers")

import torch

from engines.base import MoodControl
from engines.musicgen import MusicGenOptions
from engines.musicgen.debug_models import build_model
from engines.musicgen.prompts import describe
from engines.musicgen.scheduler import MusicGenScheduler
from engines.musicgen.static_decoder import StaticDecoder

K = 4
SAMPLED = MusicGenOptions(do_sample=True, top_k=50, guidance_scale=3.0, context_s=0.6, decode_context_s=0.2)
MOODS = [MoodControl(-0.7, -0.6, "sad"), MoodControl(0.7, 0.6, "happy"), MoodControl(0.1, 0.9, "tense")]


@pytest.fixture(scope="module")
def tiny() -> tuple[object, object]:
    return build_model("tiny")


def test_a_batched_prefill_equals_one_slot_at_a_time(tiny) -> None:
    model, processor = tiny
    texts = [describe(m, None) for m in MOODS[:2]]
    tok = processor.tokenizer(texts, padding=True, return_tensors="pt")
    torch.manual_seed(5)
    seqs = torch.randint(0, 64, (2, K, 16))
    seqs[:, :, 0] = model.config.decoder.pad_token_id
    with torch.inference_mode():
        hidden = model.text_encoder(**tok).last_hidden_state
        one, many = (StaticDecoder(model, capacity=4, max_positions=24, guidance_scale=3.0) for _ in range(2))
        for dec in (one, many):
            dec.set_text(3, hidden[0], tok["attention_mask"][0])
            dec.set_text(1, hidden[1], tok["attention_mask"][1])
        singles = torch.stack([one.prefill(3, seqs[0]), one.prefill(1, seqs[1])])
        batched = many.prefill_many([3, 1], seqs)
    torch.testing.assert_close(batched, singles, atol=1e-5, rtol=1e-5)
    assert many.pos.tolist() == one.pos.tolist() == [0, 16, 0, 16]
    for layer in range(len(one.layers)):  # the same keys and values written in the same rows
        for rows in (slice(2, 4), slice(6, 8)):
            torch.testing.assert_close(many.self_k[layer][rows, :, :16], one.self_k[layer][rows, :, :16],
                                       atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(many.self_v[layer][rows, :, :16], one.self_v[layer][rows, :, :16],
                                       atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="2 sequences for 1 slots"):
        many.prefill_many([0], seqs)


def _record(sch: MusicGenScheduler, streams: list, frames: int) -> tuple[dict[int, list[torch.Tensor]], list[int]]:
    """Drive ``streams`` until each has ``frames`` frames; every frame as it completes (slides drop the old
    ones from the slot), and how many slides each round made."""
    made: dict[int, list[torch.Tensor]] = {st.sid: [] for st in streams}
    slides_per_round: list[int] = []
    for _ in range(5000):
        for st in streams:
            st.target_frames = frames
        before = sch.stats.slides
        sch.run_once()
        slides_per_round.append(sch.stats.slides - before)
        for st in streams:
            got = made[st.sid]
            for f in range(len(got), min(frames, sch._complete(st))):
                c = f - st.frame_base + 1
                got.append(torch.stack([sch.cols[st.slot, k, c + k] for k in range(K)]))
        if all(len(made[st.sid]) >= frames for st in streams):
            return made, slides_per_round
    raise AssertionError("the scheduler did not make the frames asked for")


def test_slides_are_spread_and_capped_without_changing_any_stream(tiny) -> None:
    model, processor = tiny
    n_streams, frames = 6, 120

    def scheduler(**kw: object) -> MusicGenScheduler:
        return MusicGenScheduler(model, processor, SAMPLED, capacity=n_streams, slide_s=0.4, sub_frames=5,
                                 lead_frames=0, **kw)  # type: ignore[arg-type]

    crowd = scheduler(slides_per_round=2)
    streams = [crowd.open(seed, describe(MOODS[seed % 3], None)) for seed in range(n_streams)]
    made, per_round = _record(crowd, streams, frames)
    span = crowd.slider.span
    assert frames > 2 * span  # every stream slid at least twice
    assert max(per_round) <= 2 and crowd.stats.slides >= 2 * n_streams
    # started together, they first slide in different rounds: phases from their seeds
    first = [crowd.slider.phase(seed) for seed in range(n_streams)]
    assert len(set(first)) >= 4 and all(0 <= p < span for p in first)
    rounds_with_slides = sum(1 for n in per_round if n)
    assert rounds_with_slides > crowd.stats.slides / 2  # spread out, not in a burst per window

    # each stream alone (no cap, nobody else) makes exactly the same music
    for seed, st in enumerate(streams):
        alone = scheduler(slides_per_round=64)
        me = alone.open(seed, describe(MOODS[seed % 3], None))
        mine, _ = _record(alone, [me], frames)
        assert torch.equal(torch.stack(mine[me.sid]), torch.stack(made[st.sid])), f"stream {seed} changed"

    # without the stagger, streams started together slide in the same rounds, the cap queueing the rest
    burst = scheduler(slides_per_round=2, stagger_slides=False)
    _, burst_rounds = _record(burst, [burst.open(s, describe(MOODS[s % 3], None)) for s in range(n_streams)],
                              frames)
    assert max(burst_rounds) == 2 and sum(1 for n in burst_rounds if n) < rounds_with_slides


def test_what_a_stream_has_made_never_goes_back_for_a_reader_on_another_thread(tiny) -> None:
    """Metrics and consumers read a stream's progress under the scheduler's lock while its thread slides
    windows and moves slots: they must never see a new ``frame_base`` with an old position."""
    model, processor = tiny
    sch = MusicGenScheduler(model, processor, SAMPLED, capacity=4, slide_s=0.2, sub_frames=5, lead_frames=0)
    streams = [sch.open(seed, describe(MOODS[seed % 3], None)) for seed in range(4)]
    seen: list[list[int]] = []
    sch.start()
    try:
        for st in streams:
            sch.want_frames(st, 400)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            with sch._lock:
                seen.append([sch._complete(st) for st in streams])
            if min(seen[-1]) >= 400:
                break
            time.sleep(0.0002)
    finally:
        sch.stop()
    assert min(seen[-1]) >= 400 and sch.stats.slides >= 4 * 10
    for k in range(len(streams)):
        made = [row[k] for row in seen]
        assert all(b >= a for a, b in itertools.pairwise(made)), f"stream {k} went back"


def test_a_waiting_consumer_wakes_for_its_own_audio_only(tiny) -> None:
    """A replica serves hundreds of streams, each with a consumer thread waiting in ``take``: a hand-over
    wakes the one consumer it is for (waking them all on every hand-over costs a wake-up per stream per
    hand-over of any stream). Every consumer gets all its audio, and a consumer of a closed stream is told."""
    model, processor = tiny
    sch = MusicGenScheduler(model, processor, SAMPLED, capacity=8, slide_s=0.4, sub_frames=5, lead_frames=0)
    streams = [sch.open(seed, describe(MOODS[seed % 3], None)) for seed in range(6)]
    block = 3 * sch.hop + 7  # not a whole window: the consumer still gets it with no lead asked for
    got: dict[int, int] = {}
    closed: list[BaseException] = []

    def consume(st: Any) -> None:
        got[st.sid] = sum(len(sch.take(st, block, timeout=60)) for _ in range(12))

    def wait_until_closed(st: Any) -> None:
        try:
            sch.take(st, 10**9, timeout=60)
        except (RuntimeError, TimeoutError) as exc:
            closed.append(exc)

    sch.start()
    try:
        threads = [threading.Thread(target=consume, args=(st,)) for st in streams]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        # closing a stream wakes its waiting consumer (no more audio comes for it), which is told it is closed
        late = sch.open(99, describe(MOODS[0], None))
        waiter = threading.Thread(target=wait_until_closed, args=(late,))
        waiter.start()
        time.sleep(0.3)
        sch.close(late)
        waiter.join(timeout=90)
    finally:
        sch.stop()
    assert got == {st.sid: 12 * block for st in streams}
    for st in streams:
        handovers = st.emitted_frames // sch.sub_frames
        assert st.wakeups <= handovers + 2, (st.sid, st.wakeups, handovers)
    assert len(closed) == 1 and isinstance(closed[0], RuntimeError) and "closed" in str(closed[0])
