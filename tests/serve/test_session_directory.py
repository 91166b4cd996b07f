"""The session directory's table: which replica holds which session, and the hang-ups filed for them."""

from __future__ import annotations

from serve.webrtc.directory import DirectoryTable


def test_sync_lists_exactly_the_held_sessions_and_hands_out_their_hang_ups() -> None:
    t = DirectoryTable()
    assert t.sync("a", ["s1", "s2"]) == [] and t.sync("b", ["s3"]) == []
    assert t.request_end("s2") and t.request_end("s3") and not t.request_end("s9")
    assert t.sync("b", ["s3"]) == ["s3"]
    assert t.sync("b", ["s3"]) == []  # handed out once
    # a's s2 ended on its own before a's next sync: the filed hang-up is not handed out for it
    assert t.sync("a", ["s1"]) == []
    assert t.owners == {"s1": "a", "s3": "b"}
    assert not t.request_end("s2")


def test_a_lost_table_heals_at_the_next_sync() -> None:
    """The actor went away with its replica: a new, empty one learns every owner's sessions again."""
    t = DirectoryTable()
    assert not t.request_end("s1")
    t.sync("a", ["s1"])
    assert t.request_end("s1") and t.sync("a", ["s1"]) == ["s1"]
