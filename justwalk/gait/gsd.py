"""Streaming walking-bout (gait sequence) assembly from initial contacts.

Mobilise-D defines a walking bout from the steps themselves (Kirk et al. 2024, Sci Rep
14:1754; Micó-Amigo et al. 2023): a run of consecutive strides in which no break exceeds a
maximum (3 s) and with a minimum number of strides; the bout starts at its first and ends at
its last initial contact. The same rule is applied here, streaming, to the detected ICs:

- ICs closer than ``max_break_s`` form a chain; a larger gap ends it;
- a chain is confirmed as walking once it holds ``min_ics`` (4) ICs: its ICs are then
  released as steps, later ICs as they come, so a step is final about 3 step times after it;
- a confirmed chain is reported as a walking bout when it closes only if it holds at least
  ``min_bout_ics`` (6) ICs, i.e. 4 strides, Mobilise-D's MicroWB minimum (mobgap
  ``WbAssembly`` rule ``NStridesCriteria(min_strides=4)``, Kirk et al. 2024); the steps of a
  shorter chain stay released (with a bout index that gets no ``BoutResult``);
- a chain that ends shorter is discarded (activity that is not walking);
- edges are trimmed by step rhythm: gait initiation and termination, sit-to-stand,
  reaching and the like add "steps" before the first and after the last true stride whose
  intervals do not follow the bout's rhythm. A leading IC whose interval to the next
  deviates from the chain's median step time by more than a factor ``edge_factor`` (either
  way) is dropped before confirmation; once confirmed, an IC whose interval to its
  predecessor deviates like this is held back until an IC with a regular interval follows
  it (then it is released) or the bout closes (then it is dropped). The reference bouts
  start and end with complete strides (Kirk et al. 2024), so such edge events are not
  part of them. ``edge_factor`` 1.5 puts the limit far outside normal step-to-step
  variability (step-time CV of a few %, also in MS; Moon et al. 2016, Gait Posture
  47:65-70 report stride-time CV 2-4 % in PwMS); held-back ICs are final at most
  ``max_hold_s`` after they occur.

``max_break_s`` is 2.2 s rather than 3 s so that a bout is closed, and every verdict is
final, at most 3 s after the last IC (2.2 s + the IC detector's 0.55 s look-ahead).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class BoutState:
    """Per-stream state of ``BoutAssembler``."""

    chain: list[list[Any]] = field(default_factory=list)
    """ICs of the open chain as [sample, side]."""
    confirmed: bool = False
    next_bout: int = 0
    held: list[list[Any]] = field(default_factory=list)
    """ICs of a confirmed chain held back as possible trailing edge, as [sample, side]."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready representation."""
        return {"chain": [list(c) for c in self.chain], "confirmed": self.confirmed,
                "next_bout": self.next_bout, "held": [list(c) for c in self.held]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> BoutState:
        """Inverse of ``to_dict``."""
        return cls(chain=[[int(c[0]), str(c[1])] for c in d["chain"]],
                   confirmed=bool(d["confirmed"]), next_bout=int(d["next_bout"]),
                   held=[[int(c[0]), str(c[1])] for c in d.get("held", [])])


@dataclass(frozen=True, slots=True)
class AssemblyOutput:
    """Steps released (sample, side, bout index) and bouts closed (their [sample, side])."""

    steps: list[tuple[int, str, int]]
    closed: list[tuple[int, list[tuple[int, str]]]]


class BoutAssembler:
    """Groups labelled ICs into walking bouts; see the module docstring."""

    def __init__(self, *, max_break_s: float = 2.2, min_ics: int = 4,
                 min_bout_ics: int = 6, edge_factor: float | None = 1.5,
                 max_hold_s: float = 2.0) -> None:
        self.max_break_s = max_break_s
        self.min_ics = min_ics
        self.min_bout_ics = min_bout_ics
        self.edge_factor = edge_factor
        self.max_hold_s = max_hold_s

    def initial_state(self) -> BoutState:
        """State before any data."""
        return BoutState()

    def decided_until(self, state: BoutState, final_until: int) -> int:
        """Sample index before which the set of released steps will not change."""
        if state.chain and not state.confirmed:
            return min(final_until, int(state.chain[0][0]))
        if state.held:
            return min(final_until, int(state.held[0][0]))
        return final_until

    def _irregular(self, d: float, med: float) -> bool:
        f = self.edge_factor
        return f is not None and (d > f * med or d * f < med)

    def process(self, state: BoutState, ics: list[tuple[int, str]], final_until: int,
                sample_rate_hz: float) -> AssemblyOutput:
        """Add ICs (sorted); ``final_until``: no later IC will lie before this index."""
        gap = self.max_break_s * sample_rate_hz
        steps: list[tuple[int, str, int]] = []
        closed: list[tuple[int, list[tuple[int, str]]]] = []
        hold = self.max_hold_s * sample_rate_hz
        for ic, side in ics:
            last = state.held[-1][0] if state.held else (
                state.chain[-1][0] if state.chain else None)
            if last is not None and ic - last > gap:
                self._close(state, closed)
            self._release_old(state, steps, int(ic) - hold)
            if state.confirmed:
                med = float(np.median(np.diff([c[0] for c in state.chain])))
                prev = state.held[-1][0] if state.held else state.chain[-1][0]
                if self._irregular(ic - prev, med):
                    state.held.append([int(ic), side])
                else:
                    for c in [*state.held, [int(ic), side]]:
                        state.chain.append(c)
                        steps.append((int(c[0]), str(c[1]), state.next_bout))
                    state.held = []
                continue
            state.chain.append([int(ic), side])
            if len(state.chain) >= self.min_ics:
                self._trim_leading(state)
            if len(state.chain) >= self.min_ics:
                state.confirmed = True
                steps.extend((int(c[0]), str(c[1]), state.next_bout) for c in state.chain)
        self._release_old(state, steps, final_until - hold)
        last = state.held[-1][0] if state.held else (state.chain[-1][0] if state.chain else None)
        if last is not None and final_until - last > gap:
            self._close(state, closed)
        return AssemblyOutput(steps, closed)

    def _trim_leading(self, state: BoutState) -> None:
        while len(state.chain) >= 3:
            d = np.diff([c[0] for c in state.chain])
            if not self._irregular(float(d[0]), float(np.median(d))):
                return
            state.chain.pop(0)

    def _release_old(self, state: BoutState, steps: list[tuple[int, str, int]],
                     before: float) -> None:
        """Release held ICs once they are ``max_hold_s`` old (bounded latency)."""
        while state.held and state.held[0][0] < before:
            c = state.held.pop(0)
            state.chain.append(c)
            steps.append((int(c[0]), str(c[1]), state.next_bout))

    def flush(self, state: BoutState) -> AssemblyOutput:
        """Close the open chain (end of data)."""
        closed: list[tuple[int, list[tuple[int, str]]]] = []
        if state.chain:
            self._close(state, closed)
        return AssemblyOutput([], closed)

    def _close(self, state: BoutState, closed: list[tuple[int, list[tuple[int, str]]]]) -> None:
        if state.confirmed:
            if len(state.chain) >= self.min_bout_ics:
                closed.append((state.next_bout, [(int(c[0]), str(c[1])) for c in state.chain]))
            state.next_bout += 1
        state.chain = []
        state.held = []
        state.confirmed = False
