"""Streaming initial-contact (IC) detection from the vertical trunk acceleration.

Method (after McCamley et al. 2012, Gait Posture 36:316-318, and its Mobilise-D variant
IcdIonescu, Micó-Amigo et al. 2023, J NeuroEng Rehabil 20:78): McCamley integrates the
vertical acceleration and differentiates it with a Gaussian continuous wavelet; integrating
and then taking a Gaussian derivative is the same as smoothing the acceleration itself with a
Gaussian, which is what is done here, causally, with linear-phase FIR kernels:

1. ``acc_v`` (dynamic vertical acceleration, see ``orientation``) is high-passed
   (2nd-order Butterworth, ``highpass_hz``) to remove posture changes.
2. A *coarse* Gaussian (``coarse_sigma_s``, step-frequency band) gives one hump per step:
   a step is a local maximum over +-``min_step_time_s`` above an adaptive threshold,
   ``max(abs_threshold_mps2, rel_threshold * running RMS)`` (as in Zijlstra & Hof 2003,
   trunk acceleration peaks once per step around heel strike).
   *Search-back* (after Pan & Tompkins 1985, IEEE Trans Biomed Eng 32:230-236, whose QRS
   detector keeps a second threshold at half the first for beats where the rhythm expects
   one): a peak above ``weak_ratio`` (0.5) times the threshold but below it is a step too
   when it lies within ``rhythm_tolerance`` (20 %) of the median of the last step
   intervals after the previous step. Slow and turning steps of people with MS leave only
   small trunk impacts; the rhythm decides for them, the look-ahead does not change.
3. The IC is placed at the maximum of a *fine* Gaussian (``fine_sigma_s``) within
   [-``search_back_s``, +``search_fwd_s``] of the coarse peak, i.e. at the heel-strike
   impact, then moved earlier by ``offset_s``: the trunk's vertical acceleration peaks a
   few tens of ms after the foot's initial contact (the default, 0.06 s, is the median
   offset against the INDIP reference, identical in each leave-one-participant-out fold).

The two thresholds (0.2 m/s^2, 0.3 x running RMS) are the ones chosen by
leave-one-participant-out over the small grid in ``justwalk.evaluation.gait.TUNING_GRID``
(same choice in every fold where this value was selectable; see that command's output); lower
than the first version's 0.3 / 0.5 so that the small heel-strike peaks of slow, turning steps
are kept, while the bout assembly (``gsd``) removes isolated and edge detections.

Look-ahead: coarse-kernel half length + ``min_step_time_s`` (0.55 s with the defaults).
State: filter delays, two short signal histories, a running mean square, the last few
step peaks; round-trips
exactly through ``to_dict``/``from_dict``. ICs are absolute sample indices of the stream.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import ndimage, signal

from justwalk.gait._streaming import FirState, History, butter_sos, gaussian_kernel, sos_run

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]



@dataclass
class IcState:
    """Per-stream state of ``IcDetector``."""

    n_seen: int = 0
    hp_zi: list[list[float]] | None = None
    fine_zi: list[float] | None = None
    coarse_zi: list[float] | None = None
    ms_zi: list[float] | None = None
    fine: History = field(default_factory=lambda: History(0))
    coarse: History = field(default_factory=lambda: History(0))
    threshold: History = field(default_factory=lambda: History(0))
    next_eval: int = 0
    """First coarse-signal index without a final verdict."""
    last_peak: int = -(10**9)
    last_ic: int = -(10**9)
    recent_peaks: list[int] = field(default_factory=list)
    """The last accepted coarse peaks (for the step-rhythm search-back)."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready representation."""
        return {
            "n_seen": self.n_seen, "hp_zi": self.hp_zi, "fine_zi": self.fine_zi,
            "coarse_zi": self.coarse_zi, "ms_zi": self.ms_zi,
            "fine": self.fine.to_dict(), "coarse": self.coarse.to_dict(),
            "threshold": self.threshold.to_dict(), "next_eval": self.next_eval,
            "last_peak": self.last_peak, "last_ic": self.last_ic,
            "recent_peaks": list(self.recent_peaks),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> IcState:
        """Inverse of ``to_dict``."""
        return cls(
            n_seen=int(d["n_seen"]), hp_zi=d["hp_zi"], fine_zi=d["fine_zi"],
            coarse_zi=d["coarse_zi"], ms_zi=d["ms_zi"],
            fine=History.from_dict(d["fine"]), coarse=History.from_dict(d["coarse"]),
            threshold=History.from_dict(d["threshold"]), next_eval=int(d["next_eval"]),
            last_peak=int(d["last_peak"]), last_ic=int(d["last_ic"]),
            recent_peaks=[int(v) for v in d.get("recent_peaks", [])],
        )


class IcDetector:
    """Initial contacts, chunk by chunk; see the module docstring for the method."""

    def __init__(
        self,
        *,
        highpass_hz: float = 0.3,
        fine_sigma_s: float = 0.03,
        coarse_sigma_s: float = 0.1,
        min_step_time_s: float = 0.25,
        abs_threshold_mps2: float = 0.2,
        rel_threshold: float = 0.3,
        rms_time_constant_s: float = 2.0,
        search_back_s: float = 0.2,
        search_fwd_s: float = 0.1,
        offset_s: float = 0.06,
        weak_ratio: float | None = 0.5,
        rhythm_tolerance: float = 0.2,
        max_step_time_s: float = 1.5,
    ) -> None:
        self.weak_ratio = weak_ratio
        self.rhythm_tolerance = rhythm_tolerance
        self.max_step_time_s = max_step_time_s
        self.highpass_hz = highpass_hz
        self.fine_sigma_s = fine_sigma_s
        self.coarse_sigma_s = coarse_sigma_s
        self.min_step_time_s = min_step_time_s
        self.abs_threshold_mps2 = abs_threshold_mps2
        self.rel_threshold = rel_threshold
        self.rms_time_constant_s = rms_time_constant_s
        self.search_back_s = search_back_s
        self.search_fwd_s = search_fwd_s
        self.offset_s = offset_s

    def _sizes(self, fs: float) -> tuple[int, int, int, int, int]:
        h = max(1, round(self.min_step_time_s * fs))
        back = round(self.search_back_s * fs)
        fwd = round(self.search_fwd_s * fs)
        off = round(self.offset_s * fs)
        _, dc = gaussian_kernel(self.coarse_sigma_s, fs)
        return h, back, fwd, off, dc

    def lookahead_samples(self, sample_rate_hz: float) -> int:
        """How many samples after a sample its IC verdict is final."""
        h, _, _, _, dc = self._sizes(sample_rate_hz)
        return h + dc

    def initial_state(self, sample_rate_hz: float = 100.0) -> IcState:
        """State before any data."""
        h, back, fwd, _, dc = self._sizes(sample_rate_hz)
        keep = 4 * (h + back + fwd + dc) + 8
        return IcState(fine=History(keep), coarse=History(keep), threshold=History(keep))

    def final_until(self, state: IcState, sample_rate_hz: float) -> int:
        """No IC reported later can lie before this sample index."""
        _, back, _, off, _ = self._sizes(sample_rate_hz)
        return state.next_eval - back - off

    def _expected_step(self, state: IcState, fs: float) -> int:
        """Median of the recent step intervals (samples); 0 without a running rhythm."""
        d = np.diff(state.recent_peaks)
        d = d[d <= self.max_step_time_s * fs]
        return int(np.median(d)) if d.size >= 3 else 0

    @staticmethod
    def _ic_at(state: IcState, p: int, fine_all: History, back: int, fwd: int,
               off: int) -> int:
        lo = max(p - back, fine_all.start)
        seg = fine_all.slice(lo, p + fwd + 1)
        return lo + int(np.argmax(seg)) - off if seg.size else -1

    @staticmethod
    def _accept(state: IcState, p: int, ic: int, ics: list[int]) -> None:
        state.last_peak = p
        state.recent_peaks = [*state.recent_peaks[-4:], p]
        if ic > state.last_ic and ic >= 0:
            ics.append(ic)
            state.last_ic = ic

    def process(self, state: IcState, acc_v_mps2: FloatArray, sample_rate_hz: float) -> IntArray:
        """Consume one chunk of vertical acceleration; return the new ICs (sample indices)."""
        x = np.asarray(acc_v_mps2, dtype=np.float64)
        fs = sample_rate_hz
        if x.size == 0:
            return np.zeros(0, dtype=np.int64)
        h, back, fwd, off, dc = self._sizes(fs)
        kf, df = gaussian_kernel(self.fine_sigma_s, fs)
        kc, _ = gaussian_kernel(self.coarse_sigma_s, fs)
        hp, state.hp_zi = sos_run(butter_sos(2, self.highpass_hz, "highpass", fs), x, state.hp_zi)
        fine, state.fine_zi = FirState.run(kf, hp, state.fine_zi)
        coarse, state.coarse_zi = FirState.run(kc, hp, state.coarse_zi)
        # causal running mean square of the coarse signal
        a = 1.0 - np.exp(-1.0 / (self.rms_time_constant_s * fs))
        ms_zi = np.asarray(state.ms_zi) if state.ms_zi is not None else np.zeros(1)
        ms, ms_f = signal.lfilter([a], [1.0, a - 1.0], coarse * coarse, zi=ms_zi)
        state.ms_zi = ms_f.tolist()
        thr = np.maximum(self.abs_threshold_mps2, self.rel_threshold * np.sqrt(ms))
        n0 = state.n_seen
        if n0 == 0:
            state.fine.start = -df
            state.coarse.start = -dc
            state.threshold.start = -dc
        fine_all = state.fine.extend(fine)
        coarse_all = state.coarse.extend(coarse)
        thr_all = state.threshold.extend(thr)
        state.n_seen += x.size

        first = max(state.next_eval, h)
        last = coarse_all.end - 1 - h
        if last < first:
            return np.zeros(0, dtype=np.int64)
        buf = coarse_all.slice(first - h, last + h + 1)
        lm = ndimage.maximum_filter1d(buf, size=2 * h + 1, mode="nearest")
        c = buf[h:-h]
        t = thr_all.slice(first, last + 1)
        low = t * (self.weak_ratio if self.weak_ratio is not None else 1.0)
        peaks = np.nonzero((c >= lm[h:-h]) & (c > low))[0] + first
        strong = set((np.nonzero((c >= lm[h:-h]) & (c > t))[0] + first).tolist())
        state.next_eval = last + 1
        ics: list[int] = []
        for p in peaks.tolist():
            if p - state.last_peak <= h:
                continue
            if p not in strong:
                step = self._expected_step(state, fs)
                if not step or abs(p - state.last_peak - step) > self.rhythm_tolerance * step:
                    continue
            self._accept(state, p, self._ic_at(state, p, fine_all, back, fwd, off), ics)
        return np.asarray(ics, dtype=np.int64)
