"""Feedback rules: what to tell the patient, as pure functions of the session's numbers.

- **Cadence cue.** The running cadence over the last ``cue_steps`` steps (60 x n / the sum
  of their step times) leaves the prescribed band for ``cue_steps`` steps in a row: the
  device is told to go faster or slower and is given a metronome tempo (the prescription's,
  else the band's centre: rhythmic auditory cueing at the target cadence, as in the MS
  cueing studies reviewed by Ghai & Ghai 2018, Front Neurol 9:386). Repeated at most every
  ``cue_every_s`` while the cadence stays out.
- **Fatigue.** A full minute whose speed or cadence lies ``fatigue_decline_pct`` (15 %) or
  more below the session's first minute: a rest is suggested, once per session. 15 % is the
  DWI threshold of walking-related fatigability in the 6MWT (Leone et al. 2016,
  Neurorehabil Neural Repair 30:373), applied minute by minute instead of at the end;
  speed decline over the 6MWT in MS: Goldman et al. 2008, Mult Scler 14:383.
- **Safety.** Every near-fall or fall of the fall monitor inside the session.
- **Progress.** Every ``Plan.progress_every_s`` of device time: elapsed time, distance and
  steps so far.
"""

from __future__ import annotations

from justwalk.training.base import Feedback, MinuteValues, Plan, metronome_tempo


def running_cadence_spm(step_times_s: list[float]) -> float:
    """Cadence (steps/min) over consecutive step times."""
    return 60.0 * len(step_times_s) / sum(step_times_s)


def band_position(plan: Plan, cadence_spm: float) -> int:
    """-1 below the prescribed band, +1 above it, 0 inside (or no band)."""
    if plan.cadence_low_spm is not None and cadence_spm < plan.cadence_low_spm:
        return -1
    if plan.cadence_high_spm is not None and cadence_spm > plan.cadence_high_spm:
        return 1
    return 0


def cadence_cue(plan: Plan, t_us: int, cadence_spm: float, position: int) -> Feedback:
    """The cue for a cadence out of band (``position`` -1: too slow, +1: too fast)."""
    faster = position < 0
    tempo = metronome_tempo(plan)
    return Feedback("cadence_cue", t_us,
                    "Walk a little faster: step with the beat." if faster
                    else "Slow down a little: step with the beat.",
                    {"direction": "faster" if faster else "slower",
                     "cadence_spm": round(cadence_spm, 1),
                     "band_spm": [plan.cadence_low_spm, plan.cadence_high_spm],
                     "metronome_spm": tempo})


def fatigue_decline(first: MinuteValues, minute: MinuteValues,
                    decline_pct: float) -> dict[str, float] | None:
    """Speed and cadence change (%) of ``minute`` against the first, if one fell enough."""
    if first.speed_mps <= 0 or first.cadence_spm <= 0:
        return None
    speed = (minute.speed_mps - first.speed_mps) / first.speed_mps * 100.0
    cadence = (minute.cadence_spm - first.cadence_spm) / first.cadence_spm * 100.0
    if min(speed, cadence) > -decline_pct:
        return None
    return {"minute": minute.minute, "speed_change_pct": round(speed, 1),
            "cadence_change_pct": round(cadence, 1)}


def fatigue(t_us: int, decline: dict[str, float]) -> Feedback:
    """The rest suggestion."""
    return Feedback("fatigue", t_us,
                    "You are slowing down. Take a rest if you need one.", dict(decline))


def safety(t_us: int, event: str) -> Feedback:
    """The message after a near-fall or a fall."""
    text = ("Fall detected. Stay still if you are hurt; help is being told."
            if event == "fall" else
            "That was close to a fall. Stop, steady yourself and rest before going on.")
    return Feedback("safety", t_us, text, {"event": event})


def progress(t_us: int, elapsed_s: float, distance_m: float, steps: int) -> Feedback:
    """Time, distance and steps so far."""
    return Feedback("progress", t_us,
                    f"{int(elapsed_s) // 60} min {int(elapsed_s) % 60:02d} s, "
                    f"{distance_m:.0f} m, {steps} steps",
                    {"elapsed_s": round(elapsed_s, 1), "distance_m": round(distance_m, 1),
                     "steps": steps})


def test_end(t_us: int, reason: str) -> Feedback:
    """The test's time is up (2MWT/6MWT) or its distance is covered (T25FW)."""
    return Feedback("test_end", t_us, "Stop: the test is over. Well done.",
                    {"reason": reason})
