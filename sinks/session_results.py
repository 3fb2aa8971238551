"""Training results into the database: the sink's second destination for ``WalkTestRecord``.

Each result finishes its database session (``Repository.finish_session``: status, result,
per-minute values). The sink stores the results of a batch after InfluxDB took its points
and before it commits the offsets, so a result is never lost; a replayed one finds its
session finished already and is skipped (the database keeps the first, equal, result).
A result whose session the database does not know (another installation's database, a
deleted row) is logged and skipped: it cannot become storable by waiting.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime

from justwalk.db.models import SessionStatus
from justwalk.db.repository import Conflict, NotFound, Repository
from justwalk.records import WalkTestRecord

log = logging.getLogger(__name__)

RESULT_FIELDS = ("duration_s", "distance_m", "distance_uncertainty_m", "steps",
                 "mean_speed_mps", "mean_cadence_spm", "stride_time_cv_pct", "near_falls",
                 "adherence_pct", "t25fw_time_s", "dwi_pct", "dwi_minute2_pct", "fatigability")
MINUTE_FIELDS = ("minute", "distance_m", "steps", "speed_mps", "cadence_spm")


class SessionResults:
    """Stores training results in the database of ``repo``."""

    def __init__(self, repo: Repository) -> None:
        self.repo = repo
        self.stored_ = 0
        self.skipped_ = 0

    def store(self, records: Sequence[WalkTestRecord]) -> None:
        """Finish each record's session (blocking: run it in a thread)."""
        for r in records:
            try:
                self.repo.finish_session(
                    r.db_session_id, status=SessionStatus(r.status),
                    ended_at=datetime.fromtimestamp(r.end_us / 1e6, UTC),
                    result={name: getattr(r, name) for name in RESULT_FIELDS},
                    minutes=[{k: m[k] for k in MINUTE_FIELDS} for m in r.minutes])
                self.stored_ += 1
            except Conflict:
                self.skipped_ += 1  # finished already: a replay
            except NotFound as exc:
                self.skipped_ += 1
                log.error("result of recording %s (patient %s) not stored: %s",
                          r.session_id, r.patient_id, exc)

