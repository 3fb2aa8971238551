"""The durable outbox: delivery jobs and suppression windows in one SQLite file (WAL).

Every consumed alert is written here, in one transaction per consumed batch, *before* its
Kafka offset is committed; the delivery workers send from here. So an alert is never lost
between Kafka and a receiver that is down, nor across a restart of the service.

Tables
------
``jobs``        one row per (delivery, channel): the exact JSON body to send, its status
                (``pending`` -> ``delivered`` | ``failed``), attempts, last error. Unique on
                (channel, delivery id), so a replayed alert never queues a second job.
``seen``        alert ids already taken in (a replay of the topic is ignored).
``windows``     one open suppression window per (clinic, patient, type): the alert that
                opened it, its first event time and its wall-clock closing time.
``suppressed``  alerts held back in a window, sent as one group when it closes.
``unroutable``  alerts for a clinic without channels (kept; re-routed at the next start
                if the channels file then names the clinic).

Suppression (``window_s`` > 0): the first alert of a (clinic, patient, type) is queued at
once and opens a window that closes ``window_s`` seconds later on the wall clock. Later
alerts of the same key whose event time is within ``window_s`` of the first one's are
held; when the window closes, they go out as ONE ``alert_group`` delivery (nothing goes
out if none came). An alert past the window's event-time span (e.g. a backlog replayed
after an outage) closes the window early and opens a new one. Different types never
share a window, so a fall is never held behind a near-fall.

One process owns an outbox at a time (an exclusive ``flock`` on ``<file>.lock``).
Writes use ``synchronous=FULL``: a committed job survives a power cut, not only a crash.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from justwalk.records import AlertRecord, decode_alert
from sinks.alerts.messages import KIND_ALERT, KIND_GROUP, alert_body, dump_body, group_body

log = logging.getLogger(__name__)

__all__ = ["IngestReport", "Job", "Outbox", "OutboxLocked", "Route"]

Route = Callable[[str], Sequence[str] | None]
"""Clinic id -> outbox keys of its channels, or None for a clinic without channels."""

PENDING = "pending"
DELIVERED = "delivered"
FAILED = "failed"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    channel TEXT NOT NULL,
    clinic_id TEXT NOT NULL,
    delivery_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    body TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'pending',
    attempts INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL,
    next_attempt_at REAL NOT NULL,
    finished_at REAL,
    last_error TEXT,
    UNIQUE (channel, delivery_id)
);
CREATE INDEX IF NOT EXISTS jobs_by_channel ON jobs (status, channel, id);
CREATE TABLE IF NOT EXISTS seen (
    alert_id TEXT PRIMARY KEY,
    received_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS windows (
    clinic_id TEXT NOT NULL,
    patient_id TEXT NOT NULL,
    type TEXT NOT NULL,
    opened_by TEXT NOT NULL,
    first_event_us INTEGER NOT NULL,
    opened_at REAL NOT NULL,
    closes_at REAL NOT NULL,
    PRIMARY KEY (clinic_id, patient_id, type)
);
CREATE INDEX IF NOT EXISTS windows_by_close ON windows (closes_at);
CREATE TABLE IF NOT EXISTS suppressed (
    opened_by TEXT NOT NULL,
    alert_id TEXT NOT NULL,
    alert TEXT NOT NULL,
    PRIMARY KEY (opened_by, alert_id)
);
CREATE TABLE IF NOT EXISTS unroutable (
    alert_id TEXT PRIMARY KEY,
    clinic_id TEXT NOT NULL,
    alert TEXT NOT NULL,
    received_at REAL NOT NULL
);
"""


class OutboxLocked(RuntimeError):
    """Another process holds this outbox."""


@dataclass(frozen=True, slots=True)
class Job:
    """One delivery of one body to one channel."""

    id: int
    channel: str
    clinic_id: str
    delivery_id: str
    kind: str
    body: str
    status: str
    attempts: int
    created_at: float
    last_error: str | None


@dataclass
class IngestReport:
    """What one outbox transaction did."""

    channels: set[str] = field(default_factory=set)
    """Channels that got new jobs (their workers should wake up)."""
    queued: int = 0
    """Alerts queued for delivery at once."""
    suppressed: int = 0
    duplicates: int = 0
    groups: int = 0
    """Grouped follow-ups queued (windows closed with held alerts)."""
    unroutable: list[AlertRecord] = field(default_factory=list)
    windows_opened: int = 0


class Outbox:
    """The SQLite outbox. Not thread-safe: use it from the event loop's thread only."""

    def __init__(self, path: Path, *, window_s: float) -> None:
        self.path = path
        self.window_s = window_s
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock: IO[str] | None = open(  # noqa: SIM115 (held until close())
            path.with_name(path.name + ".lock"), "a")
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock.close()
            self._lock = None
            raise OutboxLocked(f"{path} is in use by another alert service") from None
        self.db = sqlite3.connect(path, isolation_level=None)
        self.db.row_factory = sqlite3.Row
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.executescript(_SCHEMA)

    def close(self) -> None:
        """Close the database and release the lock."""
        with contextlib.suppress(sqlite3.Error):
            self.db.close()
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    @contextlib.contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    # -- taking alerts in ------------------------------------------------------------------

    def ingest(self, alerts: Iterable[AlertRecord], route: Route, *, now: float
               ) -> IngestReport:
        """Queue jobs for ``alerts`` (or hold them in their window), in one transaction."""
        report = IngestReport()
        with self._tx():
            for alert in alerts:
                self._ingest_one(alert, route, now, report)
        return report

    def _ingest_one(self, alert: AlertRecord, route: Route, now: float,
                    report: IngestReport) -> None:
        db = self.db
        if db.execute("SELECT 1 FROM seen WHERE alert_id = ?", (alert.alert_id,)).fetchone():
            report.duplicates += 1
            return
        channels = route(alert.clinic_id)
        if channels is None:
            db.execute("INSERT OR IGNORE INTO unroutable VALUES (?, ?, ?, ?)",
                       (alert.alert_id, alert.clinic_id, alert.to_json().decode(), now))
            report.unroutable.append(alert)
            return
        db.execute("INSERT INTO seen VALUES (?, ?)", (alert.alert_id, now))
        if self.window_s > 0:
            w = db.execute("SELECT * FROM windows WHERE clinic_id = ? AND patient_id = ? "
                           "AND type = ?",
                           (alert.clinic_id, alert.patient_id, alert.type)).fetchone()
            if w is not None and (
                now >= w["closes_at"]
                or abs(alert.event_start_us - w["first_event_us"]) >= self.window_s * 1e6
            ):
                self._close_window(w, route, now, report)
                w = None
            if w is not None:
                db.execute("INSERT OR IGNORE INTO suppressed VALUES (?, ?, ?)",
                           (w["opened_by"], alert.alert_id, alert.to_json().decode()))
                report.suppressed += 1
                return
            db.execute("INSERT INTO windows VALUES (?, ?, ?, ?, ?, ?, ?)",
                       (alert.clinic_id, alert.patient_id, alert.type, alert.alert_id,
                        alert.event_start_us, now, now + self.window_s))
            report.windows_opened += 1
        body = dump_body(alert_body(alert, window_s=self.window_s))
        self._queue(channels, alert.clinic_id, alert.alert_id, KIND_ALERT, body, now, report)
        report.queued += 1

    def _queue(self, channels: Sequence[str], clinic_id: str, delivery_id: str, kind: str,
               body: str, now: float, report: IngestReport) -> None:
        for channel in channels:
            self.db.execute(
                "INSERT OR IGNORE INTO jobs (channel, clinic_id, delivery_id, kind, body, "
                "created_at, next_attempt_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (channel, clinic_id, delivery_id, kind, body, now, now),
            )
            report.channels.add(channel)

    def _close_window(self, w: sqlite3.Row, route: Route, now: float,
                      report: IngestReport) -> None:
        db = self.db
        opened_by = w["opened_by"]
        held = [decode_alert(r["alert"].encode()) for r in db.execute(
            "SELECT alert FROM suppressed WHERE opened_by = ?", (opened_by,))]
        db.execute("DELETE FROM suppressed WHERE opened_by = ?", (opened_by,))
        db.execute("DELETE FROM windows WHERE clinic_id = ? AND patient_id = ? AND type = ?",
                   (w["clinic_id"], w["patient_id"], w["type"]))
        if not held:
            return
        channels = route(w["clinic_id"])
        if channels is None:  # the clinic left the channels file meanwhile: keep them
            for a in held:
                db.execute("INSERT OR IGNORE INTO unroutable VALUES (?, ?, ?, ?)",
                           (a.alert_id, a.clinic_id, a.to_json().decode(), now))
                db.execute("DELETE FROM seen WHERE alert_id = ?", (a.alert_id,))
            report.unroutable.extend(held)
            return
        body_dict = group_body(held, window_s=self.window_s, opened_by=opened_by)
        self._queue(channels, w["clinic_id"], body_dict["alert_id"], KIND_GROUP,
                    dump_body(body_dict), now, report)
        report.groups += 1

    def close_due_windows(self, route: Route, *, now: float) -> IngestReport:
        """Close every window whose time is up; queue their grouped follow-ups."""
        report = IngestReport()
        with self._tx():
            for w in self.db.execute("SELECT * FROM windows WHERE closes_at <= ?",
                                     (now,)).fetchall():
                self._close_window(w, route, now, report)
        return report

    def next_window_close(self) -> float | None:
        """Wall-clock time when the next window closes (None: no open window)."""
        row = self.db.execute("SELECT MIN(closes_at) FROM windows").fetchone()
        return None if row[0] is None else float(row[0])

    def reroute_unroutable(self, route: Route, *, now: float) -> IngestReport:
        """Take in the kept alerts of clinics that have channels now."""
        report = IngestReport()
        with self._tx():
            rows = self.db.execute(
                "SELECT alert_id, alert FROM unroutable ORDER BY received_at").fetchall()
            for row in rows:
                alert = decode_alert(row["alert"].encode())
                if route(alert.clinic_id) is None:
                    continue
                self.db.execute("DELETE FROM unroutable WHERE alert_id = ?", (row["alert_id"],))
                self._ingest_one(alert, route, now, report)
        return report

    # -- delivery --------------------------------------------------------------------------

    def next_job(self, channel: str) -> Job | None:
        """The oldest pending job of a channel."""
        row = self.db.execute(
            "SELECT * FROM jobs WHERE status = ? AND channel = ? ORDER BY id LIMIT 1",
            (PENDING, channel)).fetchone()
        return None if row is None else _job(row)

    def pending_channels(self) -> list[str]:
        """Channels with pending jobs."""
        return [r[0] for r in self.db.execute(
            "SELECT DISTINCT channel FROM jobs WHERE status = ?", (PENDING,))]

    def mark_delivered(self, job_id: int, *, now: float) -> None:
        """The receiver has it."""
        with self._tx():
            self.db.execute("UPDATE jobs SET status = ?, attempts = attempts + 1, "
                            "finished_at = ?, last_error = NULL WHERE id = ?",
                            (DELIVERED, now, job_id))

    def mark_failed(self, job_id: int, error: str, *, now: float) -> None:
        """Permanent failure: kept as failed."""
        with self._tx():
            self.db.execute("UPDATE jobs SET status = ?, attempts = attempts + 1, "
                            "finished_at = ?, last_error = ? WHERE id = ?",
                            (FAILED, now, error, job_id))

    def mark_retry(self, job_id: int, error: str, *, next_attempt_at: float) -> None:
        """A transient failure; the job stays pending."""
        with self._tx():
            self.db.execute("UPDATE jobs SET attempts = attempts + 1, next_attempt_at = ?, "
                            "last_error = ? WHERE id = ?", (next_attempt_at, error, job_id))

    # -- inspection and housekeeping ---------------------------------------------------------

    def jobs(self, status: str | None = None) -> list[Job]:
        """All jobs (of one status), oldest first."""
        if status is None:
            rows = self.db.execute("SELECT * FROM jobs ORDER BY id")
        else:
            rows = self.db.execute("SELECT * FROM jobs WHERE status = ? ORDER BY id", (status,))
        return [_job(r) for r in rows]

    def counts(self) -> dict[str, int]:
        """Jobs per status, plus held (suppressed) and unroutable alerts."""
        out = {PENDING: 0, DELIVERED: 0, FAILED: 0}
        out.update({r[0]: r[1] for r in self.db.execute(
            "SELECT status, COUNT(*) FROM jobs GROUP BY status")})
        out["suppressed"] = self.db.execute("SELECT COUNT(*) FROM suppressed").fetchone()[0]
        out["unroutable"] = self.db.execute("SELECT COUNT(*) FROM unroutable").fetchone()[0]
        return out

    def unroutable_ids(self) -> list[str]:
        """Ids of the alerts kept because their clinic has no channels."""
        return [r[0] for r in self.db.execute("SELECT alert_id FROM unroutable ORDER BY 1")]

    def prune(self, *, now: float, keep_s: float) -> int:
        """Forget delivered jobs and seen ids older than ``keep_s`` (failed ones stay)."""
        cutoff = now - keep_s
        with self._tx():
            n = self.db.execute("DELETE FROM jobs WHERE status = ? AND finished_at < ?",
                                (DELIVERED, cutoff)).rowcount
            self.db.execute("DELETE FROM seen WHERE received_at < ?", (cutoff,))
        return n


def _job(row: sqlite3.Row) -> Job:
    return Job(row["id"], row["channel"], row["clinic_id"], row["delivery_id"], row["kind"],
               row["body"], row["status"], row["attempts"], row["created_at"],
               row["last_error"])
