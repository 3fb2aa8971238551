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
  deviates from the chain's median step time by more than a factor ``lead_factor``
  (default: ``edge_factor``) either way is dropped before confirmation; once confirmed, an
  IC whose interval to its predecessor deviates by more than ``edge_factor`` is held back
  until an IC with a regular interval follows it (then it is released) or the bout closes
  (then it is dropped); held-back ICs are final at most ``max_hold_s`` after they occur.
  ``edge_factor`` 2 (a missed or an extra step) is the value leave-one-participant-out
  chose in every fold (``justwalk.evaluation.gait``); normal step-to-step variability is a
  few % (stride-time CV 2-4 % in people with MS, Moon et al. 2016, Gait Posture 47:65-70);
- ICs that follow a postural transition (``transfers``: standing up, bending) cannot start
  a chain: the unconfirmed chain they would join is discarded;
- the stopping step is not part of the bout: the reference bouts end with the last complete
  stride (Kirk et al. 2024), and on every one of the 18 INDIP bouts of the Mobilise-D
  recordings the last IC detected from the trunk is one after the reference's last (the
  foot brought alongside the other). The newest ``drop_last_ics`` (1) ICs of a confirmed
  chain are therefore released only when a further IC follows, and dropped when the bout
  closes; their verdict is final ``max_break_s`` after them.

``max_break_s`` is 2.2 s rather than 3 s so that a bout is closed, and every verdict is
final, at most 3 s after the last IC (2.2 s + the IC detector's 0.55 s look-ahead).
"""

from __future__ import annotations

from collections.abc import Collection
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
    n_released: int = 0
    """How many ICs at the start of ``chain`` have been released as steps."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready representation."""
        return {"chain": [list(c) for c in self.chain], "confirmed": self.confirmed,
                "next_bout": self.next_bout, "held": [list(c) for c in self.held],
                "n_released": self.n_released}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> BoutState:
        """Inverse of ``to_dict``."""
        chain = [[int(c[0]), str(c[1])] for c in d["chain"]]
        confirmed = bool(d["confirmed"])
        return cls(chain=chain, confirmed=confirmed, next_bout=int(d["next_bout"]),
                   held=[[int(c[0]), str(c[1])] for c in d.get("held", [])],
                   n_released=int(d.get("n_released", len(chain) if confirmed else 0)))


@dataclass(frozen=True, slots=True)
class AssemblyOutput:
    """Steps released (sample, side, bout index) and bouts closed (their [sample, side])."""

    steps: list[tuple[int, str, int]]
    closed: list[tuple[int, list[tuple[int, str]]]]


class BoutAssembler:
    """Groups labelled ICs into walking bouts; see the module docstring."""

    def __init__(self, *, max_break_s: float = 2.2, min_ics: int = 4,
                 min_bout_ics: int = 6, edge_factor: float | None = 2.0,
                 max_hold_s: float = 2.0, drop_last_ics: int = 1,
                 lead_factor: float | None = None) -> None:
        self.max_break_s = max_break_s
        self.min_ics = min_ics
        self.min_bout_ics = min_bout_ics
        self.edge_factor = edge_factor
        self.max_hold_s = max_hold_s
        self.drop_last_ics = drop_last_ics
        self.lead_factor = lead_factor if lead_factor is not None else edge_factor

    def initial_state(self) -> BoutState:
        """State before any data."""
        return BoutState()

    def decided_until(self, state: BoutState, final_until: int) -> int:
        """Sample index before which the set of released steps will not change."""
        if state.chain and not state.confirmed:
            return min(final_until, int(state.chain[0][0]))
        if state.n_released < len(state.chain):
            return min(final_until, int(state.chain[state.n_released][0]))
        if state.held:
            return min(final_until, int(state.held[0][0]))
        return final_until

    def _irregular(self, d: float, med: float, factor: float | None = None) -> bool:
        f = self.edge_factor if factor is None else factor
        return f is not None and (d > f * med or d * f < med)

    def process(self, state: BoutState, ics: list[tuple[int, str]], final_until: int,
                sample_rate_hz: float, transfer: Collection[int] = ()) -> AssemblyOutput:
        """Add ICs (sorted); ``final_until``: no later IC will lie before this index.

        ICs in ``transfer`` follow a postural transition (``transfers``): they cannot start
        or grow an unconfirmed chain, which is discarded; a confirmed bout keeps them.
        """
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
            if not state.confirmed and ic in transfer:
                state.chain = []
                continue
            if state.confirmed:
                med = float(np.median(np.diff([c[0] for c in state.chain])))
                prev = state.held[-1][0] if state.held else state.chain[-1][0]
                if self._irregular(ic - prev, med):
                    state.held.append([int(ic), side])
                else:
                    state.chain.extend([*state.held, [int(ic), side]])
                    state.held = []
                    self._release(state, steps)
                continue
            state.chain.append([int(ic), side])
            if len(state.chain) >= self.min_ics:
                self._trim_leading(state)
            if len(state.chain) >= self.min_ics:
                state.confirmed = True
                self._release(state, steps)
        self._release_old(state, steps, final_until - hold)
        last = state.held[-1][0] if state.held else (state.chain[-1][0] if state.chain else None)
        if last is not None and final_until - last > gap:
            self._close(state, closed)
        return AssemblyOutput(steps, closed)

    def _trim_leading(self, state: BoutState) -> None:
        while len(state.chain) >= 3:
            d = np.diff([c[0] for c in state.chain])
            if not self._irregular(float(d[0]), float(np.median(d)), self.lead_factor):
                return
            state.chain.pop(0)

    def _release_old(self, state: BoutState, steps: list[tuple[int, str, int]],
                     before: float) -> None:
        """Release held ICs once they are ``max_hold_s`` old (bounded latency)."""
        while state.held and state.held[0][0] < before:
            state.chain.append(state.held.pop(0))
        self._release(state, steps)

    def _release(self, state: BoutState, steps: list[tuple[int, str, int]]) -> None:
        """Release the chain's ICs except its newest ``drop_last_ics`` (the stopping step)."""
        if not state.confirmed:
            return
        upto = len(state.chain) - self.drop_last_ics
        while state.n_released < upto:
            c = state.chain[state.n_released]
            steps.append((int(c[0]), str(c[1]), state.next_bout))
            state.n_released += 1

    def flush(self, state: BoutState) -> AssemblyOutput:
        """Close the open chain (end of data)."""
        closed: list[tuple[int, list[tuple[int, str]]]] = []
        if state.chain:
            self._close(state, closed)
        return AssemblyOutput([], closed)

    def _close(self, state: BoutState, closed: list[tuple[int, list[tuple[int, str]]]]) -> None:
        if state.confirmed:
            kept = state.chain[:state.n_released]
            if len(kept) >= self.min_bout_ics:
                closed.append((state.next_bout, [(int(c[0]), str(c[1])) for c in kept]))
            state.next_bout += 1
        state.chain = []
        state.held = []
        state.n_released = 0
        state.confirmed = False
