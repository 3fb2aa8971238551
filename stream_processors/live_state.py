"""Per-key processor state kept decoded in memory, snapshotted to a durable table.

Decoding a session's state from the changelogged table and encoding it back on every
chunk cost more than the gait maths (the state holds seconds of signal history), and
wrote the whole state to Kafka twice a second per patient. ``LiveStates`` keeps the
decoded states of the keys this worker owns and writes a key's state to the table every
``snapshot_every`` successful updates (and at once when ``force`` says the update matters,
e.g. a fall-risk change).

Trade-off, until exactly-once recovery (a later issue): Faust commits offsets as chunks are
processed, so a worker that dies, or hands a partition over, leaves a state up to
``snapshot_every`` chunks older than the committed offset. The next owner resumes from that
snapshot; the chunks in between are not replayed, which the gait code sees as a gap in the
data (it restarts detection, as after any gap). Nothing crashes and no chunk is counted
twice.
"""

from __future__ import annotations

from collections.abc import Callable, MutableMapping
from typing import Generic, TypeVar

S = TypeVar("S")


class LiveStates(Generic[S]):
    """Decoded states by key, backed by ``table`` (key -> encoded state)."""

    def __init__(
        self,
        table: MutableMapping[str, str],
        *,
        new: Callable[[], S],
        load: Callable[[str], S],
        dump: Callable[[S], str],
        snapshot_every: int,
    ) -> None:
        if snapshot_every < 1:
            raise ValueError("snapshot_every must be at least 1")
        self.table = table
        self.new = new
        self.load = load
        self.dump = dump
        self.snapshot_every = snapshot_every
        self.live: dict[str, S] = {}
        self.pending: dict[str, int] = {}
        self.snapshots_ = 0

    def get(self, key: str) -> S:
        """The key's state: in memory, else the last snapshot, else a new one."""
        state = self.live.get(key)
        if state is None:
            saved = self.table.get(key)
            state = self.new() if saved is None else self.load(saved)
            self.live[key] = state
            self.pending[key] = 0
        return state

    def done(self, key: str, *, force: bool = False) -> None:
        """Count a successful update of ``key``; snapshot it when due (or ``force``)."""
        n = self.pending.get(key, 0) + 1
        if force or n >= self.snapshot_every:
            self.table[key] = self.dump(self.live[key])
            self.snapshots_ += 1
            n = 0
        self.pending[key] = n

    def release(self, key: str) -> None:
        """Snapshot ``key`` now and drop it from memory.

        For a state that will not change soon (a session that ended or went quiet); the
        next ``get`` reloads that snapshot.
        """
        self.table[key] = self.dump(self.live[key])
        self.snapshots_ += 1
        self.discard(key)

    def discard(self, key: str) -> None:
        """Forget the in-memory state after a failed update (the next get reloads)."""
        self.live.pop(key, None)
        self.pending.pop(key, None)

    def clear(self) -> None:
        """Forget every in-memory state (partitions were revoked)."""
        self.live.clear()
        self.pending.clear()
