"""Streaming gait pipeline: bouts, steps, cadence, variability, speed, stride length, turns.

``GaitPipeline`` chains the I/O-free streaming stages of this package for one lower-back
IMU stream (wire axes: x up, y right, z forward; SI units):

``VerticalProjection`` -> ``IcDetector`` (+ ``TransferGate``) -> ``LrClassifier`` ->
``BoutAssembler``, with
``StepLengthEstimator`` (Zijlstra & Hof 2003) and ``TurnDetector`` (El-Gohary et al. 2014)
alongside, and the temporal/variability formulas of ``variability``.

It is a pure reducer: ``initial_state()``, ``process(state, acc, gyr)`` ->
``PipelineOutput`` of what became final, ``flush(state)`` at the end of a recording. Feeding
a recording whole or in chunks of any size gives bit-identical output. Times are sample
indices of the stream, and device time (us) = ``t0_us`` + index / rate.

Cost: every per-sample computation (projection, every filter, peak search, left/right,
transfer and posture gates, the step-length and turn signals) runs in one compiled call per
block of up to ``_kernels.MAX_BLOCK`` samples (``_kernels.pipeline_block``, numba); what is
left in Python is per event: ICs into bouts, steps released, windows, bouts and turns
summarised. Longer input is cut into such blocks, which does not change the output.

State: ``PipelineState``, fixed-size numpy rings (float32 for the signals read back later:
vertical acceleration for regularity, displacement and heading for step length) sized to
what is read, the filter states in float64, and the few open events. ``pack()`` gives its
compact msgpack-ready form (``justwalk.state_format``), holding only the samples a later
read can reach; ``PipelineState.unpack`` restores it, and the output continues bit for bit.

Emitted (plain dataclasses):

- ``StepResult`` per initial contact inside a walking bout (side, step/stride time, step
  and stride length, stride speed), released when its bout is confirmed, and per stopping
  step (``gsd``'s ``release_stop``: the step after the bout's last, its step time only),
  released once the walk is known to have stopped;
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
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt
from numba import typeof

from justwalk.gait import _kernels
from justwalk.gait._kernels import MAX_BLOCK
from justwalk.gait._rings import new_ring, pack_ring, pow2_at_least, unpack_ring
from justwalk.gait._running import HampelMean, RunningParams
from justwalk.gait.gsd import BoutAssembler, BoutState, ClosedBout
from justwalk.gait.icd import IcDetector, IcState
from justwalk.gait.lr import PENDING_ICS, SIDES, LrClassifier, LrState
from justwalk.gait.orientation import ProjectionState, VerticalProjection
from justwalk.gait.spatial import SpatialState, StepLengthEstimator
from justwalk.gait.transfers import TransferGate, TransferState
from justwalk.gait.turns import TurnDetector, TurnState
from justwalk.gait.variability import (
    hampel,
    regularity,
    step_times_s,
)
from justwalk.state_format import StateFormatError, check_version

FloatArray = npt.NDArray[np.float64]
STATE_VERSION = 1
"""Format version of ``PipelineState.pack``."""


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


class Reach(NamedTuple):
    """How far back (samples) later reads reach.

    Fixed per stream, kept in the state so that ``PipelineState.pack`` stores no more than
    what can still be read.
    """

    coarse_delay: int
    fine_delay: int
    icd_keep: tuple[int, int, int]
    """Coarse, threshold and fine samples a later block of the IC detector reads."""
    ic_final_lag: int
    """``IcDetector.final_until`` = next coarse index to judge - this."""
    lr_delay: int
    lr_lag: int
    transfer_window: int
    regularity: int
    """At most this many samples before a window's or bout's end enter its regularity."""
    bout_floor: int
    """A bout's regularity reads nothing older than its newest IC minus this."""
    window_us: int
    max_stride: int
    """Steps further apart than this are in no stride together."""
    turn_lag: int
    """A turn is known at most this many samples after its last sample."""


def first_sample_at(t0_us: int, sample_rate_hz: float, t_us: int) -> int:
    """Index of the first sample at or after device time ``t_us``."""
    return math.ceil((t_us - t0_us) * sample_rate_hz / 1e6 - 1e-9)


@dataclass
class PipelineState:
    """All per-stream state of ``GaitPipeline``; ``pack``/``unpack`` give its binary form."""

    sample_rate_hz: float
    t0_us: int
    reach: Reach
    projection: ProjectionState
    transfers: TransferState
    icd: IcState
    lr: LrState
    spatial: SpatialState
    turns: TurnState
    acc_v: npt.NDArray[np.float32]
    """Ring of the vertical acceleration (for step and stride regularity)."""
    n_seen: int = 0
    bouts: BoutState = field(default_factory=BoutState)
    steps: list[list[Any]] = field(default_factory=list)
    """Released steps open windows may use, and the open bout's last two:
    [sample, side, bout, step_len]."""
    sums: dict[int, RunningParams] = field(default_factory=dict)
    """Running parameters of the open bout (by bout index)."""
    recent_turns: list[list[Any]] = field(default_factory=list)
    """[start, end, angle, sample at which it was known, counted in the open bout's sums]
    of the turns the open bout or open windows may still count."""
    open_window: int | None = None
    """Start (device time, us) of the oldest window not emitted."""
    window_end: int = 0
    """First sample after ``open_window``'s window."""
    kernel_args: tuple[Any, tuple[Any, ...]] | None = field(default=None, repr=False,
                                                           compare=False)
    """Cache of ``GaitPipeline._kernel_args`` (not part of the state's value)."""
    kernel_entry: Callable[..., Any] | bool | None = field(default=None, repr=False,
                                                          compare=False)
    """Cache: ``pipeline_block`` compiled for exactly the types of ``kernel_args`` and
    C-contiguous, aligned, writable float64 samples (``_specialisation``); None: not looked
    up yet, False: there is none (the dispatcher is used)."""

    # ------------------------------------------------------------------ reach

    def earliest_ic(self) -> int:
        """No IC found later lies before this sample (``IcDetector.final_until``)."""
        return min([self.icd.next_eval - self.reach.ic_final_lag, *self.lr.waiting()])

    def window_lo(self) -> int:
        """First sample of the open window."""
        if self.open_window is None:
            return self.n_seen
        return max(first_sample_at(self.t0_us, self.sample_rate_hz, self.open_window), 0)

    def _chain_first(self) -> int | None:
        """The open chain's first IC (its bout's start once it has steps)."""
        b = self.bouts
        if b.n_released:
            return b.first
        if b.chain:
            return int(b.chain[0][0])
        return int(b.held[0][0]) if b.held else None

    def acc_v_needed_from(self) -> int:
        """The oldest vertical-acceleration sample a later window or bout can read."""
        r = self.reach
        need = min(self.earliest_ic(), max(self.window_end - r.regularity, self.window_lo()))
        first = self._chain_first()
        if first is not None:
            b = self.bouts
            end = b.last if b.n_released else first
            last = b.last_seen if b.last_seen is not None else first
            need = min(need, max(first, end + 1 - r.regularity,
                                 last - r.regularity - r.bout_floor))
        return need

    def step_candidates(self) -> list[int]:
        """ICs already found that a later step's stride can start or end at.

        Those not yet released or dropped, and the open bout's last two steps.
        """
        b = self.bouts
        out = [int(c[0]) for c in (*b.chain, *b.held)]
        if b.confirmed:
            out += [int(s[0]) for s in self.steps[-2:] if s[2] == b.next_bout]
        return out

    def spatial_needed_from(self) -> int:
        """The oldest displacement sample a later step length can read."""
        return min([self.earliest_ic(), *self.step_candidates()])

    def keep_turn(self, t: list[Any]) -> bool:
        """Whether a later window or bout may count turn ``t``."""
        if t[1] >= self.window_lo():
            return True
        first = self._chain_first()
        return not t[4] and t[1] >= (self.earliest_ic() if first is None else first)

    # ------------------------------------------------------------------ binary form

    def pack(self) -> list[Any]:
        """Msgpack-ready form: nested lists of ints, floats and bytes, version first."""
        r = self.reach
        n = self.n_seen
        early = self.earliest_ic()
        return [
            STATE_VERSION, self.sample_rate_hz, self.t0_us, n,
            [r.coarse_delay, r.fine_delay, *r.icd_keep, r.ic_final_lag, r.lr_delay, r.lr_lag,
             r.transfer_window, r.regularity, r.bout_floor, r.window_us, r.max_stride,
             r.turn_lag],
            self.projection.pack(),
            self.transfers.pack(early, r.transfer_window),
            self.icd.pack((r.coarse_delay, r.fine_delay), r.icd_keep),
            self.lr.pack(r.lr_delay, r.lr_lag, early),
            self.spatial.pack(self.spatial_needed_from(), early, self.step_candidates()),
            self.turns.pack(),
            pack_ring(self.acc_v, n, n - self.acc_v_needed_from()),
            self.bouts.pack(),
            [v for s in self.steps for v in (s[0], s[1] == SIDES[1], s[2], s[3])],
            [r.pack() for r in self.sums.values()],
            [v for t in self.recent_turns for v in t],
            self.open_window, self.window_end,
        ]

    @classmethod
    def unpack(cls, obj: Any) -> PipelineState:
        """Inverse of ``pack``; ``StateFormatError`` for a version this release cannot read."""
        obj = check_version(obj, "gait pipeline", (STATE_VERSION,))
        try:
            (_, fs, t0_us, n, reach, projection, transfers, icd, lr, spatial, turns, acc_v,
             bouts, steps, sums, recent_turns, open_window, window_end) = obj
            dc, df, k0, k1, k2, *rest = reach
            state = cls(
                sample_rate_hz=float(fs), t0_us=int(t0_us),
                reach=Reach(dc, df, (k0, k1, k2), *rest),
                projection=ProjectionState.unpack(projection),
                transfers=TransferState.unpack(transfers), icd=IcState.unpack(icd),
                lr=LrState.unpack(lr), spatial=SpatialState.unpack(spatial),
                turns=TurnState.unpack(turns),
                acc_v=unpack_ring(acc_v, n, np.float32, "gait acc_v"), n_seen=int(n),
                bouts=BoutState.unpack(bouts),
                steps=[[int(steps[i]), SIDES[int(steps[i + 1])], int(steps[i + 2]),
                        float(steps[i + 3])] for i in range(0, len(steps), 4)],
                sums={r.bout: r for r in map(RunningParams.unpack, sums)},
                recent_turns=[[int(recent_turns[i]), int(recent_turns[i + 1]),
                               float(recent_turns[i + 2]), int(recent_turns[i + 3]),
                               bool(recent_turns[i + 4])]
                              for i in range(0, len(recent_turns), 5)],
                open_window=open_window, window_end=int(window_end))
        except (TypeError, ValueError, IndexError) as exc:
            raise StateFormatError(f"gait pipeline state is malformed ({exc})") from exc
        return state


class _Compiled(NamedTuple):
    """Filter coefficients and parameter vectors of the kernels, per sample rate.

    Also the kernel's scratch and output buffers (a ``GaitPipeline`` serves one thread).
    """

    proj_a: float
    tr_sos: FloatArray
    tr_prm: FloatArray
    ic_sos: FloatArray
    ic_taps_f: FloatArray
    ic_taps_c: FloatArray
    ic_prm: FloatArray
    lr_sos: FloatArray
    lr_taps: FloatArray
    lr_prm: FloatArray
    sp_sos1: FloatArray
    sp_sos2: FloatArray
    tu_sos: FloatArray
    tu_prm: FloatArray
    work: FloatArray
    found: npt.NDArray[np.int64]
    labelled: npt.NDArray[np.int64]
    turns: FloatArray


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
        regularity_max_s: float = 12.0,
        regularity_tail_s: float = 10.0,
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
        self.regularity_max_s = regularity_max_s
        self.regularity_tail_s = regularity_tail_s
        """A walking chain can go on after its last step with off-rhythm ICs that are no
        steps (``gsd``); a bout's regularity reads nothing older than ``regularity_max_s`` +
        this before the chain's newest IC, so that memory stays bounded (on the Mobilise-D
        and voisard recordings that tail is at most 2.9 s)."""
        self.robust_params = robust_params
        self._by_rate: dict[float, _Compiled] = {}
        self._entries: dict[tuple[Any, ...], Callable[..., Any] | bool] = {}

    # ------------------------------------------------------------------ state

    def _compiled(self, fs: float) -> _Compiled:
        """The kernels' coefficients for sample rate ``fs`` (designed once)."""
        c = self._by_rate.get(fs)
        if c is None:
            c = self._by_rate[fs] = self._compile(fs)
        return c

    def _compile(self, fs: float) -> _Compiled:
        ic_sos, kf, kc = self.icd.filters(fs)
        lr_sos, lr_taps = self.lr.filters(fs)
        sp1, sp2 = self.spatial.filters(fs)
        history = pow2_at_least(max(kf.size, kc.size, lr_taps.size) - 1)
        return _Compiled(
            self.projection.coefficient(fs), self.transfers.sos(fs), self.transfers.params(fs),
            ic_sos, kf, kc, self.icd.params(fs), lr_sos, lr_taps, self.lr.params(fs),
            sp1, sp2, self.turns.sos(fs), self.turns.params(fs),
            np.empty((4, history + MAX_BLOCK)), np.empty(MAX_BLOCK, np.int64),
            np.empty((PENDING_ICS, 3), np.int64), np.empty((MAX_BLOCK + 1, 5)))

    def reach(self, sample_rate_hz: float) -> Reach:
        """How far back later reads reach; see ``Reach``."""
        fs = sample_rate_hz
        dc, df = self.icd.delays(fs)
        d_lr, lag_lr = self.lr.delay_lag(fs)
        p = self.icd.params(fs)
        final_lag = int(p[_kernels.IP_BACK] + p[_kernels.IP_OFF])
        return Reach(
            coarse_delay=dc, fine_delay=df, icd_keep=self.icd.keep(fs), ic_final_lag=final_lag,
            lr_delay=d_lr, lr_lag=lag_lr,
            transfer_window=self.transfers.window_samples(fs),
            regularity=round(self.regularity_max_s * fs),
            bout_floor=math.ceil(self.regularity_tail_s * fs),
            window_us=round(self.window_s * 1e6),
            max_stride=math.ceil(max(self.max_stride_time_s, self.max_step_time_s) * fs),
            turn_lag=round(self.turns.merge_gap_s * fs) + 1)

    def initial_state(self, *, t0_us: int, sample_rate_hz: float) -> PipelineState:
        """State of a stream whose first sample is at device time ``t0_us``."""
        fs = sample_rate_hz
        r = self.reach(fs)
        w = r.window_us
        # How old (samples before the newest) data can be when read (see ``Reach``): an IC
        # is found at most ``ic_lag`` after it; ``final_until`` trails the newest sample by
        # at most ``final``; the steps a chunk releases, the windows it emits and the bouts
        # it closes were undecided before it.
        ic_lag = self.icd.ic_lag_samples(fs)
        final = max(ic_lag, r.lr_delay + r.lr_lag + 1)
        hold = math.ceil(self.bouts.hold_cap_s * fs) + 1
        gap = math.ceil(self.bouts.break_cap_s * fs) + 1
        acc_v = max(final + hold + min(round(self.window_s * fs), r.regularity),
                    final + gap + r.regularity + r.bout_floor) + 1
        spatial = final + hold + r.max_stride + 1
        open_window = (t0_us // w) * w
        return PipelineState(
            sample_rate_hz=fs, t0_us=t0_us, reach=r,
            projection=self.projection.initial_state(),
            transfers=self.transfers.initial_state(fs, ic_lag + r.transfer_window + 1),
            icd=self.icd.initial_state(fs), lr=self.lr.initial_state(fs, ic_lag),
            spatial=self.spatial.initial_state(fs, spatial), turns=self.turns.initial_state(),
            acc_v=new_ring(acc_v + MAX_BLOCK, np.float32),
            open_window=open_window,
            window_end=first_sample_at(t0_us, fs, open_window + w))

    def time_us(self, state: PipelineState, sample: int) -> int:
        """Device time of a stream sample index."""
        return state.t0_us + round(sample * 1e6 / state.sample_rate_hz)

    # ------------------------------------------------------------------ processing

    def process(self, state: PipelineState, acc_mps2: npt.ArrayLike, gyr_radps: npt.ArrayLike,
                ) -> PipelineOutput:
        """Consume the next chunk (n, 3) + (n, 3); ``state`` is updated in place."""
        acc = np.ascontiguousarray(acc_mps2, dtype=np.float64)
        gyr = np.ascontiguousarray(gyr_radps, dtype=np.float64)
        if acc.shape != gyr.shape or acc.ndim != 2 or acc.shape[1] != 3:
            raise ValueError(f"acc {acc.shape} and gyr {gyr.shape} must both be (n, 3)")
        out = PipelineOutput([], [], [], [])
        if acc.shape[0] <= MAX_BLOCK:  # a chunk is one block, as a rule
            self._block(state, acc, gyr, out)
            return out
        for i in range(0, acc.shape[0], MAX_BLOCK):
            self._block(state, acc[i:i + MAX_BLOCK], gyr[i:i + MAX_BLOCK], out)
        return out

    def _specialisation(self, args: tuple[Any, ...]) -> Callable[..., Any] | bool:
        """``pipeline_block`` compiled for these arguments' types; False if there is none.

        Looked up once per set of types (``_specialisation``).
        """
        key = _types_key(args)
        if key is None:
            return False
        entry = self._entries.get(key)
        if entry is None:
            entry = self._entries[key] = _specialisation(_kernels.pipeline_block, args) or False
        return entry

    def _kernel_args(self, state: PipelineState, c: _Compiled) -> tuple[Any, ...]:
        """``pipeline_block``'s arguments after the samples.

        The state's arrays are updated in place, so the tuple is built once per state and
        pipeline.
        """
        if state.kernel_args is None or state.kernel_args[0] is not c:
            state.kernel_entry = None
            tr, ic, lr, sp, tu = state.transfers, state.icd, state.lr, state.spatial, state.turns
            state.kernel_args = (c, (
                state.sample_rate_hz, state.projection.z, c.proj_a,
                c.tr_sos, tr.z, tr.fast, tr.up, tr.posture, tr.ints, c.tr_prm,
                c.ic_sos, ic.z, c.ic_taps_f, c.ic_taps_c, ic.hp, ic.coarse, ic.thr, ic.fine,
                ic.ints, c.ic_prm,
                c.lr_sos, lr.z, c.lr_taps, lr.hp, lr.right, lr.pending, lr.ints, c.lr_prm,
                c.sp_sos1, c.sp_sos2, sp.z, sp.position, sp.heading,
                c.tu_sos, tu.z, tu.ints, c.tu_prm, state.acc_v,
                c.work, c.found, c.labelled, c.turns))
        return state.kernel_args[1]

    def _block(self, state: PipelineState, acc: FloatArray, gyr: FloatArray,
               out: PipelineOutput) -> None:
        fs = state.sample_rate_hz
        c = self._compiled(fs)
        args = self._kernel_args(state, c)
        kernel = state.kernel_entry
        # samples as ``process`` makes them (C-contiguous float64): the same numba type
        usual = (acc.flags.aligned and acc.flags.writeable and gyr.flags.aligned
                 and gyr.flags.writeable)
        if usual and callable(kernel):
            n_lab, n_turns, final = kernel(acc, gyr, *args)
        else:  # numba's dispatcher (compiles or loads the kernel on first use)
            n_lab, n_turns, final = _kernels.pipeline_block(acc, gyr, *args)
            if usual and kernel is None:
                state.kernel_entry = self._specialisation((acc, gyr, *args))
        m = acc.shape[0]
        state.n_seen += m
        state.spatial.n_seen += m
        if n_turns:
            out.turns.extend(self._turns(state, c.turns[:n_turns]))
        if n_lab:
            rows = c.labelled[:n_lab].tolist()
            heading = state.spatial.heading  # ring; every IC given here is still in it
            mask = heading.shape[0] - 1
            asm = self.bouts.process(
                state.bouts, [(r[0], SIDES[r[1]]) for r in rows], final, fs,
                {r[0] for r in rows if r[2]}, [math.degrees(heading[r[0] & mask]) for r in rows])
        elif self.bouts.nothing_due(state.bouts, final, fs):
            asm = None  # no IC and no decision due: the assembler would change nothing
        else:
            asm = self.bouts.process(state.bouts, [], final, fs, (), ())
        if asm is not None:
            if asm.steps:
                out.steps.extend(self._release(state, asm.steps, asm.stops))
            for closed in asm.closed:
                out.bouts.append(self._bout(state, closed))
        if (asm is not None and asm.closed) or len(state.sums) > 1:
            # chains closed: their sums are done
            for k in [k for k in state.sums if k < state.bouts.next_bout]:
                del state.sums[k]
        # a window is final once its steps are, and the turns ending in it are known
        decided = min(self.bouts.decided_until(state.bouts, final),
                      state.n_seen - state.reach.turn_lag)
        if decided >= state.window_end:
            out.windows.extend(self._windows(state, decided))

    def flush(self, state: PipelineState) -> PipelineOutput:
        """End of the stream: close the open bout and the windows holding data."""
        asm = self.bouts.flush(state.bouts)
        bouts = [self._bout(state, closed) for closed in asm.closed]
        state.sums.clear()
        windows = self._windows(state, state.n_seen, include_partial=True)
        return PipelineOutput([], windows, bouts, [])

    # ------------------------------------------------------------------ helpers

    def _turns(self, state: PipelineState, rows: FloatArray) -> list[TurnResult]:
        fs = state.sample_rate_hz
        out = []
        for r in rows:
            start, end, angle, peak = int(r[0]), int(r[1]), float(r[2]), float(r[3])
            state.recent_turns.append([start, end, angle, int(r[4]), False])
            out.append(TurnResult(self.time_us(state, start), self.time_us(state, end),
                                  start, end, (end - start + 1) / fs, angle, peak))
        return out

    def _release(self, state: PipelineState, steps: list[tuple[int, str, int]],
                 stops: set[int] | frozenset[int] = frozenset()) -> list[StepResult]:
        """Step results of released steps; those in ``stops`` are stopping steps.

        A stopping step (``gsd``'s ``release_stop``) is a step but no part of its bout: it
        carries its step time from the bout's last step and nothing else, and enters
        neither the bout's nor the windows' parameters.
        """
        fs = state.sample_rate_hz
        out = []
        mine = state.steps
        for ic, side, bout in steps:
            if ic in stops:
                last = mine[-1] if mine and mine[-1][2] == bout else None
                dt = (ic - last[0]) / fs if last is not None else math.nan
                out.append(StepResult(self.time_us(state, ic), ic, side, bout,
                                      dt if dt <= self.max_step_time_s else math.nan,
                                      math.nan, math.nan, math.nan, math.nan))
                continue
            # steps are released in sample order, bout after bout: this bout's previous
            # steps are the last ones kept
            p1 = mine[-1] if mine and mine[-1][2] == bout else None
            p2 = mine[-2] if p1 is not None and len(mine) > 1 and mine[-2][2] == bout else None
            step_len = math.nan
            step_t = stride_t = stride_len = speed = math.nan
            if p1 is not None:
                dt = (ic - p1[0]) / fs
                if dt <= self.max_step_time_s:
                    step_t = dt
                    stride_start = p2[0] if p2 is not None and (
                        ic - p2[0]) <= self.max_stride_time_s * fs else None
                    step_len = self.spatial.step_length_m(state.spatial, p1[0], ic, fs,
                                                          self.sensor_height_m, stride_start)
                if p2 is not None:
                    st = (ic - p2[0]) / fs
                    if st <= self.max_stride_time_s:
                        stride_t = st
                        stride_len = step_len + p1[3]
                        speed = stride_len / st
            mine.append([ic, side, bout, step_len])
            sums = state.sums.get(bout)
            if sums is None:
                sums = state.sums[bout] = self._new_sums(bout)
            sums.add(side, step_t, stride_t, step_len, stride_len, speed)
            out.append(StepResult(self.time_us(state, ic), ic, side, bout, step_t, stride_t,
                                  step_len, stride_len, speed))
        return out

    def _acc_v(self, state: PipelineState, lo: int, hi: int) -> FloatArray:
        """Vertical acceleration [lo, hi) clipped to the stream so far."""
        ring = state.acc_v
        size = ring.shape[0]
        lo, hi = max(lo, 0, state.n_seen - size), min(hi, state.n_seen)
        if hi <= lo:
            return np.zeros(0)
        start, end = lo & (size - 1), hi & (size - 1)
        if start < end:  # one stretch of the ring, else two
            return ring[start:end].astype(np.float64)
        return np.concatenate((ring[start:], ring[:end]), dtype=np.float64)

    def _params(self, state: PipelineState, steps: list[list[Any]], lo: int, hi: int,
                n_steps: int) -> GaitParameters:
        """Parameters of a window's ``steps`` (bout-contiguous) with signal range [lo, hi).

        Regularity uses at most the last ``regularity_max_s`` of the range; ``n_steps``: how
        many of ``steps`` are the window's own (the others are context before it).
        """
        fs = state.sample_rate_hz
        n = len(steps)
        ics = np.fromiter((s[0] for s in steps), np.int64, n)
        right = np.fromiter((s[1] == SIDES[1] for s in steps), np.bool_, n)
        lens = np.fromiter((s[3] for s in steps), np.float64, n)
        step_mean, stride_mean, cadence, cv, asym, stride_length, speed = (
            _kernels.window_values(ics, right, lens, fs, self.max_step_time_s,
                                   self.max_stride_time_s, np.empty(8 * n)))
        lo = max(lo, hi - state.reach.regularity)
        reg = regularity(self._acc_v(state, lo, hi), step_mean, fs)
        if self.robust_params and n > 1 and math.isfinite(step_mean):
            # Mobilise-D style (CadFromIc, SlZijlstra): step-level values cleaned with a
            # Hampel filter, so one missed or extra IC does not bias the bout value.
            st = step_times_s(ics.tolist(), fs, self.max_step_time_s)
            cadence = 60.0 / float(np.mean(hampel(st)))
            sl = lens[1:][np.isfinite(lens[1:])]
            stride_length = 2.0 * float(np.mean(hampel(sl))) if sl.size else math.nan
            speed = stride_length * cadence / 120.0
        return GaitParameters(
            n_steps=n_steps, cadence_spm=cadence, step_time_s=step_mean,
            stride_time_s=stride_mean, stride_time_cv_pct=cv, step_time_asymmetry_pct=asym,
            step_regularity=reg[0], stride_regularity=reg[1],
            stride_length_m=stride_length, walking_speed_mps=speed,
        )

    def _new_sums(self, bout: int) -> RunningParams:
        if self.robust_params:
            return RunningParams(bout, robust_st=HampelMean(), robust_sl=HampelMean())
        return RunningParams(bout)

    def _bout(self, state: PipelineState, closed: ClosedBout) -> BoutResult:
        fs = state.sample_rate_hz
        start, end = closed.start, closed.end
        sums = state.sums.get(closed.bout_index) or self._new_sums(closed.bout_index)
        v = sums.values()
        lo = max(start, end + 1 - state.reach.regularity,
                 closed.last_seen - state.reach.regularity - state.reach.bout_floor)
        reg = regularity(self._acc_v(state, lo, end + 1), v["step_time_s"], fs)
        params = GaitParameters(n_steps=sums.n_steps, step_regularity=reg[0],
                                stride_regularity=reg[1], **v)
        # the turns known when the bout closed (a turn still under way then is not counted,
        # however the stream is chunked); those already counted are in ``sums``
        n_turns, angle = sums.n_turns, sums.turn_angle_deg
        for t in state.recent_turns:
            if not t[4] and t[1] >= start and t[0] <= end and t[3] <= closed.closed_after:
                n_turns += 1
                angle += abs(t[2])
        self._prune(state)
        return BoutResult(closed.bout_index, self.time_us(state, start), self.time_us(state, end),
                          start, end, (end - start) / fs, params, n_turns, float(angle))

    def _count_turns(self, state: PipelineState) -> None:
        """Add to the open bout's sums the turns it will count whatever comes next.

        Those overlap its steps so far and were known before it can close.
        """
        b = state.bouts
        sums = state.sums.get(b.next_bout) if b.n_released else None
        if sums is None or b.last_seen is None:
            return
        closes_after = self.bouts.closes_after(b, state.sample_rate_hz)
        for t in state.recent_turns:
            if not t[4] and t[1] >= b.first and t[0] <= b.last and t[3] <= closes_after:
                t[4] = True
                sums.n_turns += 1
                sums.turn_angle_deg += abs(t[2])

    def _prune(self, state: PipelineState) -> None:
        """Forget steps and turns needed neither by the open bout nor by open windows."""
        keep_from = state.window_lo() - round(self.max_stride_time_s * state.sample_rate_hz)
        b = state.bouts
        open_bout = b.next_bout if b.confirmed else None
        older = [i for i, s in enumerate(state.steps) if s[0] < keep_from and s[2] == open_bout]
        keep = set(older[-2:])  # the open bout's steps before a later window
        state.steps = [s for i, s in enumerate(state.steps) if s[0] >= keep_from or i in keep]
        self._count_turns(state)
        state.recent_turns = [t for t in state.recent_turns if state.keep_turn(t)]

    def _windows(self, state: PipelineState, decided: int, *,
                 include_partial: bool = False) -> list[WindowResult]:
        out: list[WindowResult] = []
        if state.open_window is None:
            return out
        w_us = state.reach.window_us
        while True:
            start_us = state.open_window
            lo = first_sample_at(state.t0_us, state.sample_rate_hz, start_us)
            hi = state.window_end
            if lo >= state.n_seen or (hi > decided and not include_partial):
                break
            inside = [s for s in state.steps if lo <= s[0] < hi]
            ctx = list(inside)
            if inside:
                before = [s for s in state.steps if s[0] < lo and s[2] == inside[0][2]]
                ctx = before[-2:] + inside
            params = self._params(state, ctx, max(lo, 0), hi, len(inside))
            n_turns = sum(1 for t in state.recent_turns if lo <= t[1] < hi)
            out.append(WindowResult(start_us, self.window_s, len(inside) >= 3, params,
                                    n_turns))
            state.open_window = start_us + w_us
            state.window_end = first_sample_at(state.t0_us, state.sample_rate_hz,
                                               state.open_window + w_us)
            self._prune(state)
        return out


def _specialisation(kernel: Any, args: tuple[Any, ...]) -> Callable[..., Any] | None:
    """``kernel``'s compiled specialisation for exactly the numba types of ``args``.

    Calling it directly skips the dispatcher's per-call typing of every argument (the
    pipeline kernel takes 44: 5-12 us per call with 200 patients' states). Numba's
    dispatcher keeps each compiled overload under the tuple of its argument types and calls
    its ``entry_point`` once it has typed the arguments; None when there is no overload for
    exactly these types (the dispatcher is then used, and converts or compiles). Typing the
    arguments here costs ~1 ms, hence ``GaitPipeline._specialisation`` caches the answer.
    """
    try:
        result = kernel.overloads.get(tuple(typeof(a) for a in args))
    except (AttributeError, TypeError, ValueError):
        return None
    entry = getattr(result, "entry_point", None)
    return entry if callable(entry) else None


def _types_key(args: tuple[Any, ...]) -> tuple[Any, ...] | None:
    """What the numba types of ``args`` depend on, found cheaply.

    For arrays their dtype, number of dimensions, layout, writability and alignment;
    floats are float64. None if an argument is neither (its type may depend on its value).
    """
    key: list[Any] = []
    for a in args:
        if isinstance(a, np.ndarray):
            f = a.flags
            key.append((a.dtype.str, a.ndim, f.c_contiguous, f.f_contiguous, f.writeable,
                        f.aligned))
        elif type(a) is float:
            key.append(float)
        else:
            return None
    return tuple(key)
