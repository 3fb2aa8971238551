"""Streaming gait pipeline: bouts, steps, cadence, variability, speed, stride length, turns.

``GaitPipeline`` chains the I/O-free streaming stages of this package for one lower-back
IMU stream (wire axes: x up, y right, z forward; SI units):

``VerticalProjection`` -> ``IcDetector`` (+ ``TransferGate``) -> ``LrClassifier`` ->
``BoutAssembler``, with
``StepLengthEstimator`` (Zijlstra & Hof 2003) and ``TurnDetector`` (El-Gohary et al. 2014)
alongside, and the temporal/variability formulas of ``variability``.

It is a pure reducer: ``initial_state()``, ``process(state, acc, gyr, sample_rate_hz)`` ->
``PipelineOutput`` of what became final, ``flush(state)`` at the end of a recording. The
state round-trips exactly through ``to_dict``/``from_dict``; feeding a recording whole or in
chunks of any size gives identical output. Times are sample indices of the stream, and
device time (us) = ``t0_us`` + index / rate.

Emitted (plain dataclasses):

- ``StepResult`` per initial contact inside a walking bout (side, step/stride time, step
  and stride length, stride speed), released when its bout is confirmed;
- ``WindowResult`` per tumbling event-time window of ``window_s`` (aligned to multiples of
  the window since the epoch): steps, cadence, step/stride time, stride-time CV, step-time
  asymmetry, step/stride regularity, stride length, walking speed, turns;
- ``BoutResult`` per walking bout when it ends: the same parameters over the bout;
- ``TurnResult`` per turn.

Bout and window values are means over the strides (cadence = mean of 120 / stride time,
stride length and speed likewise), the definition of the INDIP reference (Kirk et al. 2024).
``robust_params=True`` instead averages Hampel-filtered step values as mobgap's CadFromIc
and SlZijlstra do; against the reference that is worse (cadence MAE 6.5 vs 5.6 steps/min on
the Mobilise-D recordings), since a real pause inside a bout is part of the reference value.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from justwalk.gait._streaming import History
from justwalk.gait.gsd import BoutAssembler, BoutState
from justwalk.gait.icd import IcDetector, IcState
from justwalk.gait.lr import LrClassifier, LrState
from justwalk.gait.orientation import ProjectionState, VerticalProjection
from justwalk.gait.spatial import SpatialState, StepLengthEstimator
from justwalk.gait.transfers import TransferGate, TransferState
from justwalk.gait.turns import TurnDetector, TurnState
from justwalk.gait.variability import (
    cadence_spm,
    cv_pct,
    hampel,
    regularity,
    step_time_asymmetry_pct,
    step_times_s,
    stride_times_s,
)

FloatArray = npt.NDArray[np.float64]


def _nanmean(x: list[float]) -> float:
    v = [a for a in x if math.isfinite(a)]
    return float(np.mean(v)) if v else math.nan


@dataclass(frozen=True, slots=True)
class StepResult:
    """One initial contact inside a walking bout."""

    t_us: int
    sample: int
    side: str
    bout_index: int
    step_time_s: float
    stride_time_s: float
    step_length_m: float
    stride_length_m: float
    stride_speed_mps: float


@dataclass(frozen=True, slots=True)
class GaitParameters:
    """Gait parameters over a set of steps (a bout or a window); NaN = not available."""

    n_steps: int
    cadence_spm: float
    step_time_s: float
    stride_time_s: float
    stride_time_cv_pct: float
    step_time_asymmetry_pct: float
    step_regularity: float
    stride_regularity: float
    stride_length_m: float
    walking_speed_mps: float


@dataclass(frozen=True, slots=True)
class WindowResult:
    """One tumbling event-time window."""

    window_start_us: int
    window_s: float
    walking: bool
    params: GaitParameters
    n_turns: int


@dataclass(frozen=True, slots=True)
class BoutResult:
    """One walking bout, from its first to its last initial contact."""

    bout_index: int
    start_us: int
    end_us: int
    start_sample: int
    end_sample: int
    duration_s: float
    params: GaitParameters
    n_turns: int
    turn_angle_deg: float
    """Sum of absolute turn angles inside the bout."""


@dataclass(frozen=True, slots=True)
class TurnResult:
    """One turn (angle positive to the left)."""

    start_us: int
    end_us: int
    start_sample: int
    end_sample: int
    duration_s: float
    angle_deg: float
    peak_rate_dps: float


@dataclass(frozen=True, slots=True)
class PipelineOutput:
    """What one chunk made final."""

    steps: list[StepResult]
    windows: list[WindowResult]
    bouts: list[BoutResult]
    turns: list[TurnResult]


@dataclass
class PipelineState:
    """All per-stream state of ``GaitPipeline`` (JSON-serialisable, exact round trip)."""

    sample_rate_hz: float = 0.0
    t0_us: int = 0
    n_seen: int = 0
    projection: ProjectionState = field(default_factory=ProjectionState)
    icd: IcState = field(default_factory=IcState)
    lr: LrState = field(default_factory=LrState)
    bouts: BoutState = field(default_factory=BoutState)
    spatial: SpatialState = field(default_factory=SpatialState)
    turns: TurnState = field(default_factory=TurnState)
    transfers: TransferState = field(default_factory=TransferState)
    transfer_ics: list[int] = field(default_factory=list)
    """Detected ICs, not yet assembled, that follow a postural transition."""
    acc_v: History = field(default_factory=lambda: History(0))
    steps: list[list[Any]] = field(default_factory=list)
    """Released steps of the open bout and of open windows: [sample, side, bout, step_len]."""
    recent_turns: list[list[Any]] = field(default_factory=list)
    """[start, end, angle] of recent turns."""
    open_window: int | None = None
    """Start (device time, us) of the oldest window not emitted."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready representation."""
        return {
            "sample_rate_hz": self.sample_rate_hz, "t0_us": self.t0_us, "n_seen": self.n_seen,
            "projection": self.projection.to_dict(), "icd": self.icd.to_dict(),
            "lr": self.lr.to_dict(), "bouts": self.bouts.to_dict(),
            "spatial": self.spatial.to_dict(), "turns": self.turns.to_dict(),
            "transfers": self.transfers.to_dict(), "transfer_ics": list(self.transfer_ics),
            "acc_v": self.acc_v.to_dict(),
            # a step length is NaN when unknown; strict JSON (orjson) has no NaN: None
            "steps": [[s[0], s[1], s[2], s[3] if math.isfinite(s[3]) else None]
                      for s in self.steps],
            "recent_turns": [list(t) for t in self.recent_turns],
            "open_window": self.open_window,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PipelineState:
        """Inverse of ``to_dict``."""
        return cls(
            sample_rate_hz=float(d["sample_rate_hz"]), t0_us=int(d["t0_us"]),
            n_seen=int(d["n_seen"]), projection=ProjectionState.from_dict(d["projection"]),
            icd=IcState.from_dict(d["icd"]), lr=LrState.from_dict(d["lr"]),
            bouts=BoutState.from_dict(d["bouts"]), spatial=SpatialState.from_dict(d["spatial"]),
            turns=TurnState.from_dict(d["turns"]),
            transfers=(TransferState.from_dict(d["transfers"]) if "transfers" in d
                       else TransferState()),
            transfer_ics=[int(v) for v in d.get("transfer_ics", [])],
            acc_v=History.from_dict(d["acc_v"]),
            steps=[[int(s[0]), str(s[1]), int(s[2]), math.nan if s[3] is None else float(s[3])]
                   for s in d["steps"]],
            recent_turns=[[int(t[0]), int(t[1]), float(t[2])] for t in d["recent_turns"]],
            open_window=d["open_window"],
        )


class GaitPipeline:
    """The streaming gait pipeline for one lower-back IMU; see the module docstring."""

    def __init__(
        self,
        *,
        sensor_height_m: float,
        window_s: float = 10.0,
        projection: VerticalProjection | None = None,
        icd: IcDetector | None = None,
        lr: LrClassifier | None = None,
        bouts: BoutAssembler | None = None,
        spatial: StepLengthEstimator | None = None,
        turns: TurnDetector | None = None,
        transfers: TransferGate | None = None,
        max_step_time_s: float = 1.5,
        max_stride_time_s: float = 3.0,
        regularity_history_s: float = 30.0,
        regularity_max_s: float = 12.0,
        robust_params: bool = False,
    ) -> None:
        self.sensor_height_m = sensor_height_m
        self.window_s = window_s
        self.projection = projection or VerticalProjection()
        self.icd = icd or IcDetector()
        self.lr = lr or LrClassifier()
        self.bouts = bouts or BoutAssembler()
        self.spatial = spatial or StepLengthEstimator()
        self.turns = turns or TurnDetector()
        self.transfers = transfers or TransferGate()
        self.max_step_time_s = max_step_time_s
        self.max_stride_time_s = max_stride_time_s
        self.regularity_history_s = regularity_history_s
        self.regularity_max_s = regularity_max_s
        self.robust_params = robust_params

    # ------------------------------------------------------------------ state

    def initial_state(self, *, t0_us: int, sample_rate_hz: float) -> PipelineState:
        """State of a stream whose first sample is at device time ``t0_us``."""
        fs = sample_rate_hz
        w = round(self.window_s * 1e6)
        return PipelineState(
            sample_rate_hz=fs, t0_us=t0_us,
            projection=self.projection.initial_state(), icd=self.icd.initial_state(fs),
            lr=self.lr.initial_state(fs), bouts=self.bouts.initial_state(),
            spatial=self.spatial.initial_state(fs), turns=self.turns.initial_state(),
            transfers=self.transfers.initial_state(fs),
            acc_v=History(round(self.regularity_history_s * fs)),
            open_window=(t0_us // w) * w,
        )

    def time_us(self, state: PipelineState, sample: int) -> int:
        """Device time of a stream sample index."""
        return state.t0_us + round(sample * 1e6 / state.sample_rate_hz)

    # ------------------------------------------------------------------ processing

    def process(self, state: PipelineState, acc_mps2: npt.ArrayLike, gyr_radps: npt.ArrayLike,
                ) -> PipelineOutput:
        """Consume the next chunk (n, 3) + (n, 3); ``state`` is updated in place."""
        fs = state.sample_rate_hz
        acc = np.asarray(acc_mps2, dtype=np.float64)
        gyr = np.asarray(gyr_radps, dtype=np.float64)
        if acc.shape != gyr.shape or acc.ndim != 2 or acc.shape[1] != 3:
            raise ValueError(f"acc {acc.shape} and gyr {gyr.shape} must both be (n, 3)")
        acc_v, yaw, tilt_rate, up = self.projection.process(state.projection, acc, gyr, fs)
        tilt, ups = self.transfers.process(state.transfers, tilt_rate, up, fs)
        av = state.acc_v.extend(acc_v)
        state.n_seen += acc.shape[0]
        position, heading = self.spatial.process(state.spatial, acc_v, fs, yaw)
        new_ics = [ic for ic in self.icd.process(state.icd, acc_v, fs).tolist()
                   if self.transfers.upright(state.transfers, ups, ic)]
        state.transfer_ics += [ic for ic in new_ics if not self.transfers.accept(tilt, ic, fs)]
        labelled = self.lr.process(state.lr, acc[:, 1], new_ics, fs)
        final = self.icd.final_until(state.icd, fs)
        if state.lr.pending:
            final = min(final, state.lr.pending[0])
        asm = self.bouts.process(state.bouts, labelled, final, fs, state.transfer_ics)
        done = labelled[-1][0] if labelled else -1
        state.transfer_ics = [ic for ic in state.transfer_ics if ic > done]
        turns_out = self._turns(state, self.turns.process(state.turns, yaw, fs))
        steps = self._release(state, asm.steps, position, heading)
        bouts = [self._bout(state, idx, chain, av) for idx, chain in asm.closed]
        windows = self._windows(state, self.bouts.decided_until(state.bouts, final), av)
        return PipelineOutput(steps, windows, bouts, turns_out)

    def flush(self, state: PipelineState) -> PipelineOutput:
        """End of the stream: close the open bout and the windows holding data."""
        asm = self.bouts.flush(state.bouts)
        bouts = [self._bout(state, idx, chain, state.acc_v) for idx, chain in asm.closed]
        windows = self._windows(state, state.n_seen, state.acc_v, include_partial=True)
        return PipelineOutput([], windows, bouts, [])

    # ------------------------------------------------------------------ helpers

    def _turns(self, state: PipelineState, turns: list[Any]) -> list[TurnResult]:
        fs = state.sample_rate_hz
        out = []
        for t in turns:
            state.recent_turns.append([t.start, t.end, t.angle_deg])
            out.append(TurnResult(self.time_us(state, t.start), self.time_us(state, t.end),
                                  t.start, t.end, t.duration_s(fs), t.angle_deg,
                                  t.peak_rate_dps))
        horizon = state.n_seen - round(120 * fs)
        state.recent_turns = [t for t in state.recent_turns if t[1] >= horizon]
        return out

    def _release(self, state: PipelineState, steps: list[tuple[int, str, int]],
                 position: History, heading: History) -> list[StepResult]:
        fs = state.sample_rate_hz
        out = []
        for ic, side, bout in steps:
            prev = [s for s in state.steps if s[2] == bout]
            step_len = math.nan
            step_t = stride_t = stride_len = speed = math.nan
            if prev:
                p1 = prev[-1]
                dt = (ic - p1[0]) / fs
                if dt <= self.max_step_time_s:
                    step_t = dt
                    stride_start = prev[-2][0] if len(prev) >= 2 and (
                        ic - prev[-2][0]) <= self.max_stride_time_s * fs else None
                    step_len = self.spatial.step_length_m(position, p1[0], ic, fs,
                                                          self.sensor_height_m, heading,
                                                          stride_start)
                if len(prev) >= 2:
                    p2 = prev[-2]
                    st = (ic - p2[0]) / fs
                    if st <= self.max_stride_time_s:
                        stride_t = st
                        stride_len = step_len + p1[3]
                        speed = stride_len / st
            state.steps.append([ic, side, bout, step_len])
            out.append(StepResult(self.time_us(state, ic), ic, side, bout, step_t, stride_t,
                                  step_len, stride_len, speed))
        return out

    def _params(self, state: PipelineState, steps: list[list[Any]], lo: int, hi: int,
                acc_v: History) -> GaitParameters:
        """Parameters of ``steps`` (bout-contiguous) with signal range [lo, hi).

        Regularity uses at most the last ``regularity_max_s`` of the range, so that the
        result does not depend on how much history a chunk boundary left in memory.
        """
        fs = state.sample_rate_hz
        ics = [s[0] for s in steps]
        sides = [s[1] for s in steps]
        st = step_times_s(ics, fs, self.max_step_time_s)
        sr = stride_times_s(ics, fs, self.max_stride_time_s)
        lengths: list[float] = []
        speeds: list[float] = []
        for k in range(2, len(steps)):
            d = (ics[k] - ics[k - 2]) / fs
            if d <= self.max_stride_time_s:
                sl = steps[k][3] + steps[k - 1][3]
                lengths.append(sl)
                speeds.append(sl / d)
        step_mean = float(st.mean()) if st.size else math.nan
        lo = max(lo, hi - round(self.regularity_max_s * fs))
        reg = regularity(acc_v.slice(lo, hi), step_mean, fs)
        cadence = cadence_spm(sr)
        stride_length = _nanmean(lengths)
        speed = _nanmean(speeds)
        if self.robust_params and st.size:
            # Mobilise-D style (CadFromIc, SlZijlstra): step-level values cleaned with a
            # Hampel filter, so one missed or extra IC does not bias the bout value.
            cadence = 60.0 / float(np.mean(hampel(st)))
            sl = np.asarray([s[3] for s in steps[1:]], dtype=np.float64)
            sl = sl[np.isfinite(sl)]
            stride_length = 2.0 * float(np.mean(hampel(sl))) if sl.size else math.nan
            speed = stride_length * cadence / 120.0
        return GaitParameters(
            n_steps=len(steps), cadence_spm=cadence, step_time_s=step_mean,
            stride_time_s=float(sr.mean()) if sr.size else math.nan,
            stride_time_cv_pct=cv_pct(sr),
            step_time_asymmetry_pct=step_time_asymmetry_pct(ics, sides, fs,
                                                             self.max_step_time_s),
            step_regularity=reg[0], stride_regularity=reg[1],
            stride_length_m=stride_length, walking_speed_mps=speed,
        )

    def _bout(self, state: PipelineState, idx: int, chain: list[tuple[int, str]],
              acc_v: History) -> BoutResult:
        fs = state.sample_rate_hz
        mine = [s for s in state.steps if s[2] == idx]
        start, end = chain[0][0], chain[-1][0]
        params = self._params(state, mine, start, end + 1, acc_v)
        turns = [t for t in state.recent_turns if t[1] >= start and t[0] <= end]
        self._prune(state)
        return BoutResult(idx, self.time_us(state, start), self.time_us(state, end), start, end,
                          (end - start) / fs, params, len(turns),
                          float(sum(abs(t[2]) for t in turns)))

    def _first_sample_at(self, state: PipelineState, t_us: int) -> int:
        """Index of the first sample at or after device time ``t_us``."""
        return math.ceil((t_us - state.t0_us) * state.sample_rate_hz / 1e6 - 1e-9)

    def _prune(self, state: PipelineState) -> None:
        """Forget steps needed neither by the open bout nor by open windows."""
        assert state.open_window is not None
        keep_from = self._first_sample_at(state, state.open_window) - round(
            self.max_stride_time_s * state.sample_rate_hz)
        open_bout = state.bouts.next_bout if state.bouts.confirmed else None
        state.steps = [s for s in state.steps if s[0] >= keep_from or s[2] == open_bout]

    def _windows(self, state: PipelineState, decided: int, acc_v: History, *,
                 include_partial: bool = False) -> list[WindowResult]:
        out: list[WindowResult] = []
        if state.open_window is None:
            return out
        w_us = round(self.window_s * 1e6)
        while True:
            start_us = state.open_window
            lo = self._first_sample_at(state, start_us)
            hi = self._first_sample_at(state, start_us + w_us)
            if lo >= state.n_seen or (hi > decided and not include_partial):
                break
            inside = [s for s in state.steps if lo <= s[0] < hi]
            ctx = list(inside)
            if inside:
                before = [s for s in state.steps if s[0] < lo and s[2] == inside[0][2]]
                ctx = before[-2:] + inside
            params = self._params(state, ctx, max(lo, 0), hi, acc_v)
            n_turns = sum(1 for t in state.recent_turns if lo <= t[1] < hi)
            out.append(WindowResult(start_us, self.window_s, len(inside) >= 3,
                                    _with_n(params, len(inside)), n_turns))
            state.open_window = start_us + w_us
            self._prune(state)
        return out


def _with_n(p: GaitParameters, n: int) -> GaitParameters:
    return GaitParameters(n, p.cadence_spm, p.step_time_s, p.stride_time_s,
                          p.stride_time_cv_pct, p.step_time_asymmetry_pct, p.step_regularity,
                          p.stride_regularity, p.stride_length_m, p.walking_speed_mps)
