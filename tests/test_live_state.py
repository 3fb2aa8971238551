"""The processor's in-memory state cache and its snapshots."""

from __future__ import annotations

import pytest

from stream_processors.live_state import LiveStates


def make(table, every=3):
    return LiveStates(table, new=lambda: {"n": 0}, load=lambda s: {"n": int(s)},
                      dump=lambda st: str(st["n"]), snapshot_every=every)


def test_snapshots_every_n_updates_and_when_forced():
    table: dict[str, str] = {}
    live = make(table)
    for _ in range(5):
        live.get("a")["n"] += 1
        live.done("a")
    assert table == {"a": "3"}  # written after the 3rd update, not yet after the 5th
    live.get("a")["n"] += 1
    live.done("a", force=True)
    assert table == {"a": "6"}
    assert live.snapshots_ == 2


def test_a_new_owner_resumes_from_the_last_snapshot():
    table: dict[str, str] = {"a": "41"}
    live = make(table)
    assert live.get("a") == {"n": 41}
    assert make({}).get("b") == {"n": 0}


def test_discard_after_a_failure_reloads_the_snapshot():
    table: dict[str, str] = {"a": "10"}
    live = make(table)
    live.get("a")["n"] = 999  # a failed update left it half changed
    live.discard("a")
    assert live.get("a") == {"n": 10}
    live.clear()
    assert live.live == {}


def test_release_snapshots_and_forgets():
    table: dict[str, str] = {}
    live = make(table, every=100)
    live.get("a")["n"] = 5
    live.release("a")  # e.g. a session that ended: stored now, not kept in memory
    assert table == {"a": "5"} and live.live == {} and live.snapshots_ == 1
    assert live.get("a") == {"n": 5}


def test_snapshot_every_must_be_positive():
    with pytest.raises(ValueError, match="at least 1"):
        make({}, every=0)
