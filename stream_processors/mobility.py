"""The processor's adapter of the daily-DMO core (``justwalk.mobility``): bouts in, records out.

Per patient (``PatientState.dmo``), every closed bout goes to ``DailyMobility.agg`` on the
clinic day it started (the clinic's time zone, from the clinics file); the day's DMOs are
then published as a ``DmoDailyRecord`` (``final`` False), and the event-time watermark
(device time of the chunk, or of the session's end at a flush) closes days: their final
record follows. Each DMO and each bout value carries its expected error from the
uncertainty table. The fall-risk scorer is given every published day
(``FallRiskScorer.on_daily_dmos``) so the DMOs are among the inputs it can read.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from justwalk.gait.pipeline import BoutResult
from justwalk.mobility import (
    BOUT_VALUES,
    DailyDmos,
    DailyMobility,
    DmoState,
    ErrorTable,
    WalkingBout,
    load_error_table,
)
from justwalk.records import DmoDailyRecord
from justwalk.risk import FallRiskScorer, FallRiskState
from stream_processors.session_state import Identity

DEFAULT_COHORT = "MS"
"""Cohort of a patient whose profile names none (the product is for people with MS)."""

__all__ = ["DEFAULT_COHORT", "DmoState", "MobilityOutcomes"]


class MobilityOutcomes:
    """Daily DMOs for every patient: per clinic time zone, per patient cohort and height."""

    def __init__(self, *, timezones: Mapping[str, str] | None = None,
                 cohorts: Mapping[str, str] | None = None,
                 errors: ErrorTable | None = None) -> None:
        self.timezones = dict(timezones or {})
        self.cohorts = dict(cohorts or {})
        self.errors = errors if errors is not None else load_error_table()
        self._reducers: dict[tuple[str, str], DailyMobility] = {}
        for tz in {"UTC", *self.timezones.values()}:  # bad zones and cohorts fail at start
            for cohort in {DEFAULT_COHORT, *self.cohorts.values()}:
                self._reducer(tz, cohort)

    def _reducer(self, timezone: str, cohort: str) -> DailyMobility:
        key = (timezone, cohort)
        r = self._reducers.get(key)
        if r is None:
            r = self._reducers[key] = DailyMobility(cohort=cohort, timezone=timezone,
                                                    errors=self.errors)
        return r

    def reducer_for(self, ident: Identity) -> DailyMobility:
        """The reducer of the patient's cohort in the clinic's time zone."""
        return self._reducer(self.timezones.get(ident["clinic_id"], "UTC"),
                             self.cohorts.get(ident["patient_id"], DEFAULT_COHORT))

    def bout_errors(self, bout: BoutResult) -> dict[str, float | None]:
        """Expected absolute error of each of the bout's values (``BOUT_VALUES``)."""
        p = bout.params
        values = {"cadence_spm": p.cadence_spm, "walking_speed_mps": p.walking_speed_mps,
                  "stride_length_m": p.stride_length_m,
                  "stride_time_cv_pct": p.stride_time_cv_pct,
                  "stride_duration_s": p.stride_time_s, "duration_s": bout.duration_s}
        return {k: self.errors.bout_error(k, values[k]) for k in BOUT_VALUES}

    def update(self, state: DmoState, ident: Identity, bouts: Sequence[BoutResult],
               t_us: int, *, risk: tuple[FallRiskScorer, FallRiskState] | None = None,
               ) -> list[DmoDailyRecord]:
        """Add closed bouts, then close the days ended by ``t_us``; the records to publish.

        Days are published in day order, each once per call (final when closed).
        """
        r = self.reducer_for(ident)
        touched: set[int] = set()
        for b in sorted(bouts, key=lambda x: x.start_us):
            r.agg(state, WalkingBout.from_bout_result(b))
            day = r.day_of(b.start_us)
            if any(d.day == day for d in state.days):
                touched.add(day)
        touched.update(r.close(state, t_us))
        out = []
        for day in sorted(touched):
            res = r.result(state, day)
            if res is None:
                continue
            if risk is not None:
                risk[0].on_daily_dmos(risk[1], res.day_start_us, res.values)
            out.append(_record(ident, res))
        return out


def _record(ident: Identity, d: DailyDmos) -> DmoDailyRecord:
    return DmoDailyRecord(**ident, day=d.day, day_start_us=d.day_start_us, final=d.final,
                          cohort=d.cohort, n_implausible=d.n_implausible,
                          values=dict(d.values), errors=dict(d.errors))
