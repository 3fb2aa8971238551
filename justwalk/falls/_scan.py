"""Common machinery of the detectors: state, candidate scanning, refractory period.

A candidate is a block holding a local maximum of the acceleration magnitude above a gate.
It is judged once ``lookahead_s`` of data after it has arrived (the detector's bounded
look-ahead); each detector supplies the features and the decision.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, TypeVar

import numpy as np
import numpy.typing as npt

from justwalk.falls import _features as ft
from justwalk.falls._frontend import BlockFrontEnd, Blocks
from justwalk.falls.base import FallEvent

FeaturesT = TypeVar("FeaturesT")


@dataclass
class DetectorState:
    """Per-stream state of a detector (packed by ``FallMonitorState.pack``)."""

    next_candidate: int = 0
    """Segment block index of the first block not yet judged."""
    quiet_until_us: int = -(2**62)
    """End of the refractory period after the last event."""
    n_events: int = 0


@dataclass(frozen=True, slots=True)
class Candidate(Generic[FeaturesT]):
    """A judged candidate: its peak, its features, and whether they make an event."""

    peak: ft.Peak
    detected_us: int
    features: FeaturesT
    accepted: bool
    event: FallEvent | None


class CandidateDetector(ABC, Generic[FeaturesT]):
    """Base of the detectors: judges candidates of block rows in time order."""

    decision_params: ClassVar[frozenset[str]] = frozenset()
    """Constructor parameters read only by ``accepts`` and the candidate gate: candidates
    scanned with a lower gate can be re-decided for any value of these without a rescan."""
    candidate_params: ClassVar[tuple[str, ...]] = ("gate_acc_mps2",)
    """Decision parameters that also select the candidates of a scan: a scan with smaller
    values finds a superset of the candidates, and ``accepts`` re-checks them, so it serves
    any larger values."""
    gate_acc_mps2: float
    peak_half_window_s: float
    lookahead_s: float
    """Data needed after a candidate before it is judged."""
    lookback_s: float
    """Data a judgement reads before a candidate."""
    refractory_s: float
    min_flush_after_s: float = math.inf
    """Data needed after a candidate for ``flush_blocks`` to judge it (none: never)."""

    @property
    def history_s(self) -> float:
        """Data a judgement reads around a candidate."""
        return self.lookback_s + self.lookahead_s

    def scan(
        self,
        samples: npt.ArrayLike,
        t0_us: int,
        sample_rate_hz: float,
        steps_us: npt.ArrayLike,
    ) -> list[Candidate[FeaturesT]]:
        """Every candidate of a whole recording, judged, with its features (no streaming).

        ``samples`` (n, 6) are acc (m/s^2) and gyr (rad/s); ``steps_us`` the device times of
        the recording's steps (``GaitPipeline``). Streams go through ``FallMonitor``; this
        serves tests and the evaluation.
        """
        blocks = BlockFrontEnd().blocks(samples, t0_us, sample_rate_hz, steps_us)
        return self.scan_blocks(DetectorState(), blocks)

    def scan_blocks(self, state: DetectorState, blocks: Blocks) -> list[Candidate[FeaturesT]]:
        """Judge the candidates of ``blocks`` (front-end output) whose look-ahead is complete.

        ``FallMonitor`` calls this for each chunk; the evaluation computes the front end of a
        recording once and calls this for each parameter setting.
        """
        ahead = ft.n_blocks(blocks, self.lookahead_s)
        last = blocks.first_index + blocks.rows.shape[0] - 1 - ahead
        out: list[Candidate[FeaturesT]] = []
        k0 = max(state.next_candidate, blocks.first_index)
        if k0 <= last:
            i0 = k0 - blocks.first_index
            gated = np.flatnonzero(blocks.rows[i0 : i0 + last - k0 + 1, ft.AMAX]
                                   >= self.gate_acc_mps2)
            for k in (gated + k0).tolist():
                if ft.is_local_max(blocks, k, self.peak_half_window_s):
                    out.append(self._judge(state, blocks, k, ahead))
        state.next_candidate = max(state.next_candidate, last + 1)
        return out

    def judge(self, state: DetectorState, blocks: Blocks, k: int) -> Candidate[FeaturesT]:
        """Judge the candidate at block ``k`` (its look-ahead is complete)."""
        return self._judge(state, blocks, k, ft.n_blocks(blocks, self.lookahead_s))

    def rejects_early(self, blocks: Blocks, k: int) -> bool:
        """Whether the candidate at ``k`` is surely rejected, from one cheap feature.

        Streaming skips its full features (a rejected candidate changes no state); never
        true for a candidate ``decide`` would accept. Default: no shortcut.
        """
        return False

    def flush_blocks(self, state: DetectorState, blocks: Blocks) -> list[Candidate[FeaturesT]]:
        """At the end of the data, judge the candidates whose look-ahead it cannot complete.

        ``blocks`` are all the rows known (the data ended after them). A candidate with at
        least ``min_flush_after_s`` of data after it is judged by ``truncated`` (a copy of
        this detector whose after-windows end where the data ends); one with less is left
        for data that may still continue the segment. A detector without ``truncated``
        judges nothing here.
        """
        if not math.isfinite(self.min_flush_after_s):
            return []
        n = blocks.first_index + blocks.rows.shape[0]
        k = max(state.next_candidate, blocks.first_index)
        last = n - 1 - ft.n_blocks(blocks, self.min_flush_after_s)
        out: list[Candidate[FeaturesT]] = []
        while k <= last:
            ahead = n - 1 - k
            judge = self.truncated((ahead + 1) * blocks.block_s)
            if judge is None:
                break
            if self._is_candidate(blocks, k):
                out.append(judge._judge(state, blocks, k, ahead))
            k += 1
        state.next_candidate = max(state.next_candidate, k)
        return out

    def _is_candidate(self, blocks: Blocks, k: int) -> bool:
        """Block ``k`` holds a peak at least the gate, the largest within its half window."""
        return bool(blocks.rows[k - blocks.first_index, ft.AMAX] >= self.gate_acc_mps2) and (
            ft.is_local_max(blocks, k, self.peak_half_window_s))

    def truncated(self, available_s: float) -> CandidateDetector[FeaturesT] | None:
        """A copy judging with ``available_s`` of data after a candidate, or None (default)."""
        return None

    def _judge(
        self, state: DetectorState, blocks: Blocks, k: int, ahead: int
    ) -> Candidate[FeaturesT]:
        peak = ft.peak_at(blocks, k)
        detected_us = blocks.time_us(k + ahead + 1)
        features = self.features(blocks, k)
        accepted = self.decide(features)
        event = None
        if accepted and peak.peak_us >= state.quiet_until_us:
            event = self.make_event(blocks, k, peak, detected_us, features)
            state.quiet_until_us = peak.peak_us + round(self.refractory_s * 1e6)
            state.n_events += 1
        return Candidate(peak, detected_us, features, accepted, event)

    @abstractmethod
    def features(self, blocks: Blocks, k: int) -> FeaturesT:
        """Features of the candidate at block ``k``."""

    def decide(self, features: FeaturesT) -> bool:
        """Whether the features make an event."""
        return bool(self.accepts(features))

    @abstractmethod
    def accepts(self, features: FeaturesT) -> Any:
        """``decide`` with element-wise operators only (``&``, ``np.abs``).

        It also takes features whose fields are arrays, one value per candidate, and then
        returns a mask: the evaluation scores many parameter settings that way.
        """

    @abstractmethod
    def make_event(
        self, blocks: Blocks, k: int, peak: ft.Peak, detected_us: int, features: FeaturesT
    ) -> FallEvent:
        """The event reported for an accepted candidate."""
