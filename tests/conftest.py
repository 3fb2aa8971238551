"""Shared fixtures: the real local stack (Tansu + InfluxDB on loopback) and the data folder.

- ``local_stack`` (session): one started :class:`~justwalk.localstack.LocalStack` for the whole
  run, started on first use and stopped at the end. Its logs stay in pytest's temp dir.
- ``auth_stack`` (session): another one whose InfluxDB has authentication on (admin user in
  its ``settings()``), for the tests of clinic isolation.
- ``stack_settings``: ``Settings`` pointing at that stack, with topic, database and consumer
  group names unique to the test (so tests never see each other's data), 4 partitions and
  short consumer-group timings. Topics are not created: call ``ensure_topics`` if needed.
  ``own_names(stack, tmp_path)`` gives the same to a module-scoped fixture (one pipeline
  shared by the tests of a module that do not need a fresh one).
- ``shared_data`` (session): ``../shared/data`` next to the repository, or a skip.

Nothing here talks to anything but 127.0.0.1.
"""

from __future__ import annotations

import dataclasses
import logging
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from justwalk.config import Settings
from justwalk.localstack import LocalStack
from justwalk.log_limit import RepeatLimit

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(scope="session")
def local_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    """Tansu and InfluxDB, started once per test session."""
    stack = LocalStack(log_dir=tmp_path_factory.mktemp("local-stack-logs"))
    stack.start()
    try:
        yield stack
    finally:
        stack.stop()


@pytest.fixture(scope="session")
def auth_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    """Tansu and InfluxDB with authentication on, as in production (``settings()`` carries
    the admin user), started once per session on first use."""
    stack = LocalStack(log_dir=tmp_path_factory.mktemp("auth-stack-logs"), influx_auth=True)
    stack.start()
    try:
        yield stack
    finally:
        stack.stop()


def own_names(stack: LocalStack, tmp_path: Path) -> Settings:
    """Settings for ``stack`` with topic, database and group names of their own (see
    ``stack_settings``); for fixtures wider than one test that share a stack."""
    suffix = uuid.uuid4().hex[:8]
    defaults = Settings()
    # every topic of its own (a topic added to Settings later is included)
    topics = {f.name: f"{getattr(defaults, f.name)}.{suffix}" for f in dataclasses.fields(Settings)
              if f.name.startswith("topic_") and f.name != "topic_partitions"}
    return stack.settings(defaults).replace(
        **topics,
        topic_partitions=4,
        influx_db=f"justwalk_{suffix}",
        processor_group=f"justwalk-processor-{suffix}",
        sink_group=f"justwalk-sink-{suffix}",
        alert_group=f"justwalk-alerts-{suffix}",
        alert_outbox=tmp_path / "alerts" / "outbox.sqlite3",
        # Consumer groups join and rebalance quickly on a single small broker.
        kafka_session_timeout_s=6.0,
        kafka_heartbeat_interval_s=0.5,
        kafka_rebalance_timeout_s=3.0,
    )


@pytest.fixture
def stack_settings(local_stack: LocalStack, tmp_path: Path) -> Settings:
    """Settings for one test: the shared stack, names of its own."""
    return own_names(local_stack, tmp_path)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The shared recordings folder (``../shared/data`` from the repository root)."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data folder not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(autouse=True)
def _no_log_limit_left_over() -> Iterator[None]:
    """A test that runs a service in-process installs its log limit on the root handlers
    (``limit_repeated_logs``); the next test starts without it."""
    yield
    for handler in logging.getLogger().handlers:
        for f in list(handler.filters):
            if isinstance(f, RepeatLimit):
                handler.removeFilter(f)
