"""Session starts and stops through the real gateway: checked against a real (SQLite)
database, passed to the processor on the chunk topic (real broker) in order with the chunks."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from ingest.gateway import create_app
from ingest.publisher import KafkaPublisher
from ingest.registry import DeviceRegistry, provision
from ingest.training import TrainingGate
from justwalk.config import Settings
from justwalk.db import Repository, database_url
from justwalk.db.engine import create, upgrade
from justwalk.device_protocol import STREAM_PATH, auth_headers
from justwalk.kafka_topics import ensure_topics
from justwalk.training import SessionKind
from justwalk.training.control import TRAINING_START, TRAINING_STOP, decode
from justwalk.wire import KAFKA_HEADER_CONTROL, header_value
from tests.test_gateway import DEVICES, NOW_US, read_topic, wire

pytestmark = pytest.mark.integration

SIX_MWT = {"session_type": "6mwt", "times_per_week": 1, "cadence_band_spm": [100, 115],
           "feedback_progress_every_s": 30}


@pytest.fixture
def repo(tmp_path: Path) -> Repository:
    engine = create(database_url(Settings(database_file=tmp_path / "jw.sqlite3")))
    upgrade(engine)
    r = Repository(engine)
    for clinic in ("clinic-a", "clinic-b"):
        r.add_clinic(clinic)
    r.create_patient("clinic-a", "ms-0001")
    r.create_patient("clinic-b", "ms-0002")
    return r


@pytest.fixture
async def client(stack_settings: Settings, tmp_path: Path,
                 repo: Repository) -> AsyncIterator[tuple[TestClient[Any, Any], dict[str, str]]]:
    creds = provision(tmp_path / "devices.json", tmp_path / "credentials.json", DEVICES)
    registry = DeviceRegistry.load(tmp_path / "devices.json")
    await ensure_topics(stack_settings)
    async with KafkaPublisher(stack_settings.kafka_bootstrap) as kafka:
        gate = TrainingGate(repo, kafka, stack_settings.topic_chunks)
        app = create_app(stack_settings, kafka, registry, clock=lambda: NOW_US, training=gate)
        async with TestClient(TestServer(app)) as c:
            yield c, {cr.device_id: cr.token for cr in creds}


async def _say(ws: Any, body: dict[str, Any]) -> dict[str, Any]:
    await ws.send_str(json.dumps(body))
    return json.loads(await ws.receive_str(timeout=15))


def start(session: str = "s1", **kw: Any) -> dict[str, Any]:
    return {"type": "session_start", "session_id": session, "session_type": "6mwt",
            "t_us": NOW_US - 59_000_000, **kw}


async def test_start_chunks_stop_reach_the_processor_in_order(
        client: Any, repo: Repository, stack_settings: Settings) -> None:
    c, tokens = client
    rx = repo.create_prescription("clinic-a", "ms-0001", SIX_MWT, today=date(2026, 1, 1))
    async with c.ws_connect(STREAM_PATH, headers=auth_headers(tokens["dev-1"])) as ws:
        await ws.send_bytes(wire(0))
        assert json.loads(await ws.receive_str(timeout=15))["type"] == "ack"
        answer = await _say(ws, start(prescription_id=rx["prescription_id"]))
        assert answer["type"] == "session_started" and answer["session_id"] == "s1"
        assert answer["plan"]["cadence_low_spm"] == 100 and answer["plan"]["kind"] == "6mwt"
        await ws.send_bytes(wire(1))
        assert json.loads(await ws.receive_str(timeout=15))["type"] == "ack"
        stop = await _say(ws, {"type": "session_stop", "session_id": "s1", "t_us": NOW_US})
        assert stop == {"type": "session_stopped", "session_id": "s1"}
    records = await read_topic(stack_settings, stack_settings.topic_chunks, 4)
    kinds = [header_value(r.headers, KAFKA_HEADER_CONTROL) for r in records]
    assert kinds == [None, TRAINING_START, None, TRAINING_STOP]  # one partition: the patient's
    assert len({r.partition for r in records}) == 1
    msg = decode(TRAINING_START, records[1].value)
    assert msg.plan.kind is SessionKind.SIX_MWT and msg.plan.progress_every_s == 30
    assert msg.start_us == NOW_US - 59_000_000 and msg.patient_id == "ms-0001"
    [row] = repo.sessions("clinic-a", "ms-0001")
    assert row["session_id"] == msg.db_session_id and row["status"] == "running"
    assert row["device_session_id"] == "s1" and row["prescription_id"] == rx["prescription_id"]


async def test_bad_starts_and_stops_get_clear_answers_and_change_nothing(
        client: Any, repo: Repository, stack_settings: Settings) -> None:
    c, tokens = client
    other = repo.create_prescription("clinic-b", "ms-0002", SIX_MWT, today=date(2026, 1, 1))
    guided = repo.create_prescription("clinic-a", "ms-0001", {
        "session_type": "guided_walk", "duration_s": 600, "times_per_week": 5},
        today=date(2026, 1, 1))
    async with c.ws_connect(STREAM_PATH, headers=auth_headers(tokens["dev-1"])) as ws:
        cases = [
            (start(prescription_id=999), "unknown_prescription"),
            (start(prescription_id=other["prescription_id"]), "unknown_prescription"),
            (start(prescription_id=guided["prescription_id"]), "prescription_mismatch"),
            (start(session_type="marathon"), "bad_request"),
            (start(course_length_m=-3), "bad_request"),
            (start(t_us=(int(time.time()) + 3600) * 1_000_000), "bad_request"),  # clock ahead
            ({"type": "session_start", "session_id": "s1"}, "bad_request"),
            ({"type": "session_stop", "session_id": "s1", "t_us": -1}, "bad_request"),
            ({"type": "session_stop", "session_id": "nope", "t_us": 5}, "unknown_session"),
        ]
        for body, code in cases:
            answer = await _say(ws, body)
            assert answer["type"] == "session_error" and answer["code"] == code, (body, answer)
            assert answer["reason"]
        ok = await _say(ws, start("s2"))  # no prescription: a free-standing 6MWT
        assert ok["type"] == "session_started"
        again = await _say(ws, start("s2", session_type="2mwt"))
        assert again["code"] == "session_exists"
        resent = await _say(ws, start("s2"))  # the same start again: the same session
        assert resent["db_session_id"] == ok["db_session_id"]
        # chunks still flow
        await ws.send_bytes(wire(0, session="s2"))
        assert json.loads(await ws.receive_str(timeout=15)) == {"type": "ack", "sequence": 0}
    assert [s["device_session_id"] for s in repo.sessions(None)] == ["s2"]
    records = await read_topic(stack_settings, stack_settings.topic_chunks, 3)
    kinds = [header_value(r.headers, KAFKA_HEADER_CONTROL) for r in records]
    assert kinds == [TRAINING_START, TRAINING_START, None]


async def test_without_a_database_sessions_are_refused(stack_settings: Settings,
                                                       tmp_path: Path) -> None:
    creds = provision(tmp_path / "devices.json", tmp_path / "credentials.json", DEVICES)
    registry = DeviceRegistry.load(tmp_path / "devices.json")
    await ensure_topics(stack_settings)
    async with KafkaPublisher(stack_settings.kafka_bootstrap) as kafka:
        app = create_app(stack_settings, kafka, registry, clock=lambda: NOW_US)
        async with TestClient(TestServer(app)) as c, c.ws_connect(
                STREAM_PATH, headers=auth_headers(creds[0].token)) as ws:
            answer = await _say(ws, start())
    assert answer["code"] == "training_unavailable"


async def test_feedback_goes_only_to_the_patients_own_device(stack_settings: Settings,
                                                             tmp_path: Path) -> None:
    from ingest.feedback import FeedbackRelay
    from justwalk.records import FeedbackRecord

    creds = provision(tmp_path / "devices.json", tmp_path / "credentials.json", DEVICES)
    registry = DeviceRegistry.load(tmp_path / "devices.json")
    relay = FeedbackRelay()
    async with KafkaPublisher(stack_settings.kafka_bootstrap) as kafka:
        app = create_app(stack_settings, kafka, registry, clock=lambda: NOW_US, feedback=relay)
        async with TestClient(TestServer(app)) as c, \
                c.ws_connect(STREAM_PATH, headers=auth_headers(creds[0].token)) as ws1, \
                c.ws_connect(STREAM_PATH, headers=auth_headers(creds[1].token)) as ws2:
            for _ in range(100):  # both sockets registered
                if len(relay._sockets) == 2:
                    break
                await asyncio.sleep(0.02)
            record = FeedbackRecord("clinic-a", "ms-0001", "dev-1", "s1", "progress", 5,
                                    "1 min", {"elapsed_s": 60.0}, raised_at_us=7,
                                    chunk_received_at_us=3)
            assert await relay.push(record) == 1
            got = json.loads(await ws1.receive_str(timeout=5))
            assert got == {"type": "feedback", "kind": "progress", "session_id": "s1",
                           "t_us": 5, "text": "1 min", "elapsed_s": 60.0, "received_at_us": 3}
            # a record naming dev-1 but another clinic's patient reaches nobody
            forged = FeedbackRecord("clinic-b", "ms-0002", "dev-1", "s1", "safety", 6, "x",
                                    {"event": "fall"}, raised_at_us=7)
            assert await relay.push(forged) == 0 and relay.refused_ == 1
            with pytest.raises(asyncio.TimeoutError):
                await ws2.receive_str(timeout=0.5)
            with pytest.raises(asyncio.TimeoutError):
                await ws1.receive_str(timeout=0.5)
