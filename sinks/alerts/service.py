"""The alert service: the alerts topic -> durable outbox -> each clinic's webhooks and e-mail.

Flow
----
1. The consumer (group ``settings.alert_group``) fetches a batch of alerts. Each message
   is decoded with :func:`justwalk.records.decode_alert` and checked; one that is not a
   valid alert is logged with topic/partition/offset and skipped.
2. The batch goes into the :class:`~sinks.alerts.outbox.Outbox` in ONE SQLite transaction:
   a job per (alert, channel) of the alert's clinic, or the alert is held in its
   suppression window, or (clinic without channels) kept as unroutable and logged loudly.
   Replayed alert ids are ignored there.
3. The workers of the channels that got jobs are woken (no polling), then the batch's
   offsets are committed. A crash before the commit replays the batch: harmless.
4. One worker per channel sends that channel's jobs oldest first. A transient failure
   retries the same job after an exponential, capped, jittered delay ("equal jitter" of
   the AWS Architecture Blog's *Exponential Backoff and Jitter*) while the other channels
   carry on; a permanent failure is logged and kept as failed; success is recorded.
5. A window task closes suppression windows when their time is up and queues the grouped
   follow-ups.

Delivery is at least once: a receiver that took a request but whose answer was lost (a
timeout), or a crash between a 2xx and its record in the outbox, gets it again.
Receivers deduplicate on ``alert_id`` (header ``X-JustWalk-Alert-Id`` and body). A
receiver that answers 5xx or refuses connections gets each alert exactly once.

SIGTERM/SIGINT: stop fetching, finish the batch in hand (outbox + commit), let in-flight
deliveries finish (up to ``shutdown_timeout_s``), close everything, exit 0. Pending jobs
and open windows stay in the outbox and continue at the next start.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import random
import signal
import time
from collections.abc import Callable, Collection, Iterable
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError

from justwalk.broker_loss import BrokerLostData, OffsetFloors
from justwalk.config import Settings
from justwalk.kafka_topics import ensure_topics, group_consumer
from justwalk.records import AlertRecord, decode_alert
from sinks.alerts.base import Outcome
from sinks.alerts.channels import Channel, ChannelConfig, EmailRecipient, load_channels
from sinks.alerts.mail import SmtpSender
from sinks.alerts.outbox import IngestReport, Job, Outbox
from sinks.alerts.webhook import WebhookSender

log = logging.getLogger(__name__)

__all__ = ["AlertService", "build_consumer", "parse_alert", "run_alert_service"]

_ID_FIELDS = ("alert_id", "clinic_id", "patient_id", "device_id", "session_id", "type",
              "severity")
_TIME_FIELDS = ("event_start_us", "event_end_us", "raised_at_us")
_MAX_ID_CHARS = 128


def parse_alert(value: bytes | None) -> AlertRecord:
    """Decode and check one message of the alerts topic; ValueError if it is not an alert."""
    if value is None:
        raise ValueError("empty message")
    alert = decode_alert(value)
    for name in _ID_FIELDS:
        v = getattr(alert, name)
        if not isinstance(v, str) or not v or len(v) > _MAX_ID_CHARS:
            raise ValueError(f"{name} must be a non-empty string of at most "
                             f"{_MAX_ID_CHARS} characters")
        if any(ord(ch) < 32 or ord(ch) == 127 for ch in v):
            raise ValueError(f"{name} contains control characters")
    for name in _TIME_FIELDS:
        v = getattr(alert, name)
        if not isinstance(v, int) or isinstance(v, bool):
            raise ValueError(f"{name} must be an integer (microseconds)")
    if not isinstance(alert.evidence, dict):
        raise ValueError("evidence must be an object")
    for k, v in alert.evidence.items():
        if isinstance(v, bool) or not isinstance(v, str | int | float) or (
                isinstance(v, float) and not math.isfinite(v)):
            raise ValueError(f"evidence.{k} must be a string or a finite number")
    return alert


class AlertService:
    """Consume alerts, keep them in the outbox, deliver them per channel.

    Everything with I/O is injected (``from_settings`` builds the real ones): the Kafka
    consumer, the outbox, the senders, the wall ``clock`` (unix seconds) and the jitter
    ``rng``. ``run`` owns them and closes them on the way out.

    Counters: ``messages_skipped_`` (not alerts), ``alerts_received_``, ``alerts_queued_``
    (sent at once), ``alerts_suppressed_`` (held for a group), ``alerts_duplicate_``,
    ``alerts_unroutable_`` (clinic without channels), ``groups_queued_``, ``delivered_``,
    ``failed_`` (permanent), ``retries_`` (transient failures, each followed by a retry).
    """

    def __init__(
        self,
        *,
        consumer: AIOKafkaConsumer,
        channels: ChannelConfig,
        outbox: Outbox,
        topics: Collection[str],
        webhook_sender: WebhookSender | None = None,
        smtp_sender: SmtpSender | None = None,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
        retry_initial_s: float = 0.25,
        retry_max_s: float = 10.0,
        shutdown_timeout_s: float = 10.0,
        poll_max_s: float = 0.25,
        max_batch: int = 500,
        retention_s: float = 7 * 86400.0,
    ) -> None:
        self.consumer = consumer
        self.channels = channels
        self.outbox = outbox
        self.topics = list(topics)
        self.webhook_sender = webhook_sender or WebhookSender(clock=clock)
        if smtp_sender is None and channels.smtp is not None:
            smtp_sender = SmtpSender(channels.smtp)
        self.smtp_sender = smtp_sender
        self.clock = clock
        self.rng = rng or random.Random()
        self.retry_initial_s = retry_initial_s
        self.retry_max_s = retry_max_s
        self.shutdown_timeout_s = shutdown_timeout_s
        self.poll_max_s = poll_max_s
        self.max_batch = max_batch
        self.retention_s = retention_s

        self.messages_skipped_ = 0
        self.alerts_received_ = 0
        self.alerts_queued_ = 0
        self.alerts_suppressed_ = 0
        self.alerts_duplicate_ = 0
        self.alerts_unroutable_ = 0
        self.groups_queued_ = 0
        self.delivered_ = 0
        self.failed_ = 0
        self.retries_ = 0

        self._stopping = asyncio.Event()
        self._workers: dict[str, asyncio.Task[None]] = {}
        self._wakes: dict[str, asyncio.Event] = {}
        self._window_wake = asyncio.Event()
        self._window_task: asyncio.Task[None] | None = None

    @classmethod
    def from_settings(cls, settings: Settings, *, channels: ChannelConfig | None = None,
                      **kwargs: Any) -> AlertService:
        """A service wired to the broker, channels file and outbox of ``settings``."""
        channels = channels if channels is not None else load_channels(settings.alert_channels)
        return cls(
            consumer=build_consumer(settings),
            channels=channels,
            outbox=Outbox(settings.alert_outbox, window_s=settings.alert_suppression_s),
            topics=[settings.topic_alerts],
            **kwargs,
        )

    def route(self, clinic_id: str) -> list[str] | None:
        """Outbox keys of a clinic's channels (None: clinic not configured)."""
        return self.channels.channel_keys(clinic_id)

    # -- the loop --------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Run until ``stop`` is set (or cancelled); see the module docstring."""
        stop = stop if stop is not None else asyncio.Event()
        try:
            self._start_delivery()
            if not stop.is_set():
                self.consumer.subscribe(self.topics, listener=_LogAssignment())
                await self.consumer.start()
                await self._consume(stop)
        finally:
            try:
                await self._stop_delivery()
            finally:
                try:
                    await self.consumer.stop()
                finally:
                    await self.webhook_sender.close()
                    counts = self.outbox.counts()
                    self.outbox.close()
            log.info("alert service stopped: %d alerts received, %d delivered, %d failed, "
                     "%d skipped messages; outbox: %s", self.alerts_received_,
                     self.delivered_, self.failed_, self.messages_skipped_, counts)

    def _start_delivery(self) -> None:
        now = self.clock()
        pruned = self.outbox.prune(now=now, keep_s=self.retention_s)
        if pruned:
            log.info("pruned %d delivered jobs older than %.0f s", pruned, self.retention_s)
        self._account(self.outbox.reroute_unroutable(self.route, now=now))
        for key in self.outbox.pending_channels():
            if self.channels.channel(key) is None:
                log.error("outbox has pending jobs for channel %s, which is no longer in the "
                          "channels file; they stay pending until it is back", key)
            else:
                self._wake(key)
        self._window_task = asyncio.create_task(self._window_loop(), name="alert-windows")

    async def _stop_delivery(self) -> None:
        self._stopping.set()
        self._window_wake.set()
        for wake in self._wakes.values():
            wake.set()
        tasks = [*self._workers.values(), *([self._window_task] if self._window_task else [])]
        if not tasks:
            return
        _done, pending = await asyncio.wait(tasks, timeout=self.shutdown_timeout_s)
        for task in pending:
            log.warning("delivery task %s still busy at shutdown; cancelled (its job stays "
                        "pending)", task.get_name())
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _consume(self, stop: asyncio.Event) -> None:
        floors = OffsetFloors()
        while not stop.is_set():
            fetched = await self.consumer.getmany(timeout_ms=int(self.poll_max_s * 1000),
                                                  max_records=self.max_batch)
            if losses := floors.consumer(self.consumer):
                # alerts the broker lost before they were read never reach a clinic
                exc = BrokerLostData(losses, "(the alerts topic)")
                log.error("BROKER LOST DATA: %s; alerts in it that were not read yet are "
                          "lost; stopping", exc)
                raise exc
            if fetched:
                await self.take(m for messages in fetched.values() for m in messages)

    async def take(self, messages: Iterable[ConsumerRecord]) -> None:
        """Put one consumed batch into the outbox, wake its channels, commit its offsets."""
        offsets: dict[TopicPartition, int] = {}
        alerts: list[AlertRecord] = []
        for m in messages:
            offsets[TopicPartition(m.topic, m.partition)] = m.offset + 1
            try:
                alerts.append(parse_alert(m.value))
            except Exception as exc:  # anything malformed: skip it, never stop
                self.messages_skipped_ += 1
                log.warning("skipping undecodable alert message %s[%d]@%d: %s",
                            m.topic, m.partition, m.offset, exc)
        self.alerts_received_ += len(alerts)
        if alerts:
            self._account(self.outbox.ingest(alerts, self.route, now=self.clock()))
        await self._commit(offsets)

    def _account(self, report: IngestReport) -> None:
        self.alerts_queued_ += report.queued
        self.alerts_suppressed_ += report.suppressed
        self.alerts_duplicate_ += report.duplicates
        self.groups_queued_ += report.groups
        for alert in report.unroutable:
            self.alerts_unroutable_ += 1
            log.error("UNROUTABLE alert %s (%s, patient %s): clinic %r has no channels in "
                      "the channels file; kept in the outbox and re-routed at the next "
                      "start if the clinic is added", alert.alert_id, alert.type,
                      alert.patient_id, alert.clinic_id)
        for key in report.channels:
            self._wake(key)
        if report.windows_opened:
            self._window_wake.set()

    async def _commit(self, offsets: dict[TopicPartition, int]) -> None:
        owned = self.consumer.assignment()
        to_commit = {tp: off for tp, off in offsets.items() if tp in owned}
        if not to_commit:
            return
        try:
            await self.consumer.commit(to_commit)
        except KafkaError as exc:
            # The alerts are in the outbox; a replay is recognised by alert id.
            log.warning("offset commit failed (%r); the batch will be replayed", exc)

    # -- delivery --------------------------------------------------------------------------

    def _wake(self, key: str) -> None:
        if self._stopping.is_set():
            return
        if key not in self._wakes:
            self._wakes[key] = asyncio.Event()
        self._wakes[key].set()
        task = self._workers.get(key)
        if task is None or task.done():
            self._workers[key] = asyncio.create_task(self._channel_loop(key),
                                                     name=f"alert-channel {key}")

    def backoff_s(self, failures: int, retry_after_s: float | None = None) -> float:
        """Delay before the next attempt after ``failures`` consecutive transient failures."""
        ceiling = min(self.retry_max_s, self.retry_initial_s * 2.0 ** min(failures, 30))
        delay = ceiling / 2 + self.rng.uniform(0.0, ceiling / 2)
        if retry_after_s is not None:
            delay = max(delay, min(retry_after_s, self.retry_max_s))
        return delay

    async def _channel_loop(self, key: str) -> None:
        wake = self._wakes[key]
        failures = 0
        while not self._stopping.is_set():
            job = self.outbox.next_job(key)
            if job is None:
                wake.clear()
                await wake.wait()
                continue
            channel = self.channels.channel(key)
            if channel is None:
                return
            outcome = await self._attempt(channel, job)
            now = self.clock()
            if outcome.status == "delivered":
                self.outbox.mark_delivered(job.id, now=now)
                self.delivered_ += 1
                failures = 0
                log.info("delivered %s %s to %s (attempt %d, %.0f ms after queueing)",
                         job.kind, job.delivery_id, key, job.attempts + 1,
                         (now - job.created_at) * 1000)
            elif outcome.status == "failed":
                self.outbox.mark_failed(job.id, outcome.detail, now=now)
                self.failed_ += 1
                failures = 0
                log.error("PERMANENT delivery failure of %s %s to %s: %s (kept as failed "
                          "in the outbox)", job.kind, job.delivery_id, key, outcome.detail)
            else:
                delay = self.backoff_s(failures, outcome.retry_after_s)
                failures += 1
                self.retries_ += 1
                self.outbox.mark_retry(job.id, outcome.detail, next_attempt_at=now + delay)
                log.warning("delivery of %s %s to %s failed (%s); attempt %d, retrying in "
                            "%.2f s", job.kind, job.delivery_id, key, outcome.detail,
                            job.attempts + 1, delay)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), delay)

    async def _attempt(self, channel: Channel, job: Job) -> Outcome:
        wrong = _foreign_clinic(channel, job)
        if wrong is not None:  # never expected: routing is by clinic; refuse, loudly
            log.error("REFUSED delivery %s to %s: %s", job.delivery_id, channel.key, wrong)
            return Outcome.failed(f"refused: {wrong}")
        try:
            if isinstance(channel, EmailRecipient):
                if self.smtp_sender is None:
                    return Outcome.retry("no SMTP server configured")
                return await self.smtp_sender.send(channel, json.loads(job.body))
            return await self.webhook_sender.send(channel, job.delivery_id, job.body)
        except Exception as exc:  # a bug in a sender must not kill the channel's worker
            log.exception("unexpected error delivering %s to %s", job.delivery_id, channel.key)
            return Outcome.retry(f"unexpected {type(exc).__name__}: {exc}")

    async def _window_loop(self) -> None:
        while not self._stopping.is_set():
            self._window_wake.clear()
            next_close = self.outbox.next_window_close()
            now = self.clock()
            if next_close is not None and next_close <= now:
                self._account(self.outbox.close_due_windows(self.route, now=now))
                continue
            timeout = None if next_close is None else next_close - now
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._window_wake.wait(), timeout)


def _foreign_clinic(channel: Channel, job: Job) -> str | None:
    """Why ``job`` must not go to ``channel`` (another clinic's patients), or None."""
    try:
        body = json.loads(job.body)
        alerts = [body["alert"]] if "alert" in body else list(body["alerts"])
        clinics = {job.clinic_id, *(a["clinic_id"] for a in alerts)}
        if "clinic_id" in body:
            clinics.add(body["clinic_id"])
    except (ValueError, KeyError, TypeError) as exc:
        return f"unreadable body ({exc!r})"
    foreign = sorted(clinics - {channel.clinic_id})
    if foreign:
        return (f"the delivery is for clinic {', '.join(foreign)}, the channel is clinic "
                f"{channel.clinic_id}'s")
    return None


def build_consumer(settings: Settings) -> AIOKafkaConsumer:
    """An unsubscribed consumer in the alert group, committing manually, low fetch wait."""
    return group_consumer(settings, group_id=settings.alert_group, client_id="justwalk-alerts",
                          fetch_max_wait_ms=min(settings.kafka_fetch_max_wait_ms, 50))


async def run_alert_service(settings: Settings) -> None:
    """The ``justwalk alerts`` process: run until SIGTERM/SIGINT, then stop cleanly.

    The channels file is validated first (``ChannelConfigError`` names the bad key).
    """
    channels = load_channels(settings.alert_channels)
    await ensure_topics(settings)
    service = AlertService.from_settings(settings, channels=channels)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    signals = (signal.SIGTERM, signal.SIGINT)
    for sig in signals:
        loop.add_signal_handler(sig, stop.set)
    try:
        await service.run(stop)
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)


class _LogAssignment(ConsumerRebalanceListener):  # type: ignore[misc]
    """Logs each assignment (``justwalk.pipeline`` waits for it before data flows)."""

    async def on_partitions_revoked(self, revoked: Collection[TopicPartition]) -> None:
        """Nothing to do: offsets are committed per batch."""

    async def on_partitions_assigned(self, assigned: Collection[TopicPartition]) -> None:
        """Log the assignment."""
        log.info("alert service assigned %d partitions", len(assigned))
