"""Streaming walking-bout (gait sequence) assembly from initial contacts.

Mobilise-D defines a walking bout from the steps themselves (Kirk et al. 2024, Sci Rep
14:1754; Micó-Amigo et al. 2023): a run of consecutive strides in which no break exceeds a
maximum (3 s) and with a minimum number of strides; the bout starts at its first and ends at
its last initial contact. The same rule is applied here, streaming, to the detected ICs:

- ICs closer than ``max_break_s`` form a chain; a larger gap ends it;
- a chain becomes a bout once it holds ``min_ics`` ICs (two strides of both feet = 5 ICs in
  Mobilise-D's stride-based rule; 4 here, since the first IC of a bout is often missed);
  its ICs are then released as steps, later ICs as they come;
- a chain that ends shorter is discarded (activity that is not walking).

``max_break_s`` is 2.2 s rather than 3 s so that a bout is closed, and every verdict is
final, at most 3 s after the last IC (2.2 s + the IC detector's 0.55 s look-ahead).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class BoutState:
    """Per-stream state of ``BoutAssembler``."""

    chain: list[list[Any]] = field(default_factory=list)
    """ICs of the open chain as [sample, side]."""
    confirmed: bool = False
    next_bout: int = 0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready representation."""
        return {"chain": [list(c) for c in self.chain], "confirmed": self.confirmed,
                "next_bout": self.next_bout}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> BoutState:
        """Inverse of ``to_dict``."""
        return cls(chain=[[int(c[0]), str(c[1])] for c in d["chain"]],
                   confirmed=bool(d["confirmed"]), next_bout=int(d["next_bout"]))


@dataclass(frozen=True, slots=True)
class AssemblyOutput:
    """Steps released (sample, side, bout index) and bouts closed (their [sample, side])."""

    steps: list[tuple[int, str, int]]
    closed: list[tuple[int, list[tuple[int, str]]]]


class BoutAssembler:
    """Groups labelled ICs into walking bouts; see the module docstring."""

    def __init__(self, *, max_break_s: float = 2.2, min_ics: int = 4) -> None:
        self.max_break_s = max_break_s
        self.min_ics = min_ics

    def initial_state(self) -> BoutState:
        """State before any data."""
        return BoutState()

    def decided_until(self, state: BoutState, final_until: int) -> int:
        """Sample index before which the set of released steps will not change."""
        if state.chain and not state.confirmed:
            return min(final_until, int(state.chain[0][0]))
        return final_until

    def process(self, state: BoutState, ics: list[tuple[int, str]], final_until: int,
                sample_rate_hz: float) -> AssemblyOutput:
        """Add ICs (sorted); ``final_until``: no later IC will lie before this index."""
        gap = self.max_break_s * sample_rate_hz
        steps: list[tuple[int, str, int]] = []
        closed: list[tuple[int, list[tuple[int, str]]]] = []
        for ic, side in ics:
            if state.chain and ic - state.chain[-1][0] > gap:
                self._close(state, closed)
            state.chain.append([int(ic), side])
            if state.confirmed:
                steps.append((int(ic), side, state.next_bout))
            elif len(state.chain) >= self.min_ics:
                state.confirmed = True
                steps.extend((int(c[0]), str(c[1]), state.next_bout) for c in state.chain)
        if state.chain and final_until - state.chain[-1][0] > gap:
            self._close(state, closed)
        return AssemblyOutput(steps, closed)

    def flush(self, state: BoutState) -> AssemblyOutput:
        """Close the open chain (end of data)."""
        closed: list[tuple[int, list[tuple[int, str]]]] = []
        if state.chain:
            self._close(state, closed)
        return AssemblyOutput([], closed)

    @staticmethod
    def _close(state: BoutState, closed: list[tuple[int, list[tuple[int, str]]]]) -> None:
        if state.confirmed:
            closed.append((state.next_bout, [(int(c[0]), str(c[1])) for c in state.chain]))
            state.next_bout += 1
        state.chain = []
        state.confirmed = False
