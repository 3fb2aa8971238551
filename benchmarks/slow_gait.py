"""What the step and bout detectors do on simulated slow, impaired gait (with truth).

Simulated walks of 60 s (``justwalk.simulator.gait_model``) at 35-60 steps/min, step-time
CV 5 %, in four kinds: plain, long double support (0.4 of each step), shuffling (double
support 0.4, heel strike 0.3 of normal, 1 m/s^2 peak to peak) and with a cane (double
support 0.4, heel strike 0.5, a 2.5 m/s^2 cane strike mid-step once per stride). Printed
per walk, for the shipped bout rules and the earlier fixed 1.8 s hold: truth contacts,
steps released, steps within 0.25 s of a truth contact, bouts, bout cadence against the
truth (strides up to 3 s, as the pipeline defines it), and steps within 0.25 s of a cane
strike. Three seeds each; synthetic data shows behaviour the development recordings do not
hold, it is no substitute for the real evaluation (``benchmarks/gait_lopo.py``).

    PYTHONPATH=. .venv/bin/python benchmarks/slow_gait.py
"""

from __future__ import annotations

import numpy as np

from justwalk.gait.gsd import BoutAssembler
from justwalk.gait.pipeline import GaitPipeline
from justwalk.simulator.gait_model import GaitProfile, synthesize

FS = 100.0
KINDS: dict[str, dict[str, float]] = {
    "plain": {},
    "double support 0.4": {"double_support": 0.4},
    "shuffling": {"double_support": 0.4, "impact_ratio": 0.3, "vertical_acc_pp_mps2": 1.0},
    "cane": {"double_support": 0.4, "impact_ratio": 0.5, "aid_impact_mps2": 2.5},
}


def one(cadence: float, kind: dict[str, float], seed: int, fixed: bool) -> list[float]:
    """[truth ICs, steps, matched, bouts, cadence error, steps at cane strikes]."""
    p = GaitProfile(cadence_spm=cadence, step_time_cv=0.05, walking_s=((5.0, 65.0),),
                    **kind)  # type: ignore[arg-type]
    rec = synthesize(p, 75.0, FS, np.random.default_rng(seed))
    bouts = BoutAssembler(hold_slack_steps=None) if fixed else None
    pipe = GaitPipeline(sensor_height_m=1.0, bouts=bouts)
    st = pipe.initial_state(t0_us=0, sample_rate_hz=FS)
    s = rec.samples.astype(np.float64)
    out = pipe.process(st, s[:, :3], s[:, 3:])
    found_bouts = out.bouts + pipe.flush(st).bouts
    truth = rec.truth.step_times_s
    steps = np.asarray([x.sample for x in out.steps]) / FS
    matched = sum(1 for x in steps if np.min(np.abs(truth - x)) <= 0.25)
    aid = np.asarray(rec.truth.aid_times_s)
    at_aid = sum(1 for x in steps if aid.size and np.min(np.abs(aid - x)) <= 0.1)
    err = float("nan")
    if found_bouts:
        b = max(found_bouts, key=lambda b: b.end_sample - b.start_sample)
        t = truth[(truth >= b.start_sample / FS - 0.25) & (truth <= b.end_sample / FS + 0.25)]
        d = t[2:] - t[:-2]
        ref = float(np.mean(120.0 / d[d <= 3.0])) if (d <= 3.0).any() else float("nan")
        err = b.params.cadence_spm - ref
    return [truth.size, steps.size, matched, len(found_bouts), err, at_aid]


def main() -> None:
    """Print the table."""
    print(f"{'cadence':>7s} {'kind':20s} {'rule':6s} {'truth':>6s} {'steps':>6s} "
          f"{'match':>6s} {'bouts':>6s} {'cad err':>8s} {'at cane':>8s}")
    for cadence in (35.0, 40.0, 45.0, 50.0, 60.0):
        for name, kind in KINDS.items():
            for fixed in (False, True):
                rows = np.asarray([one(cadence, kind, seed, fixed) for seed in (1, 2, 3)])
                tot = rows.sum(axis=0)
                err = rows[:, 4]
                e = f"{np.nanmean(np.abs(err)):.1f}" if np.isfinite(err).any() else "-"
                print(f"{cadence:7.0f} {name:20s} {'fixed' if fixed else 'ours':6s} "
                      f"{tot[0]:6.0f} {tot[1]:6.0f} {tot[2]:6.0f} {tot[3]:6.0f} {e:>8s} "
                      f"{tot[5]:8.0f}")


if __name__ == "__main__":
    main()
