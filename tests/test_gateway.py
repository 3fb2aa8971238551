"""The gateway against the real broker: aiohttp's test server, a real producer and consumer."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import pytest
from aiohttp.test_utils import TestClient, TestServer
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaTimeoutError
from aiokafka.structs import ConsumerRecord

from ingest.gateway import MAX_WS_MESSAGE_BYTES, create_app, serve
from ingest.limits import DeviceLimits
from ingest.publisher import KafkaPublisher, Publisher
from ingest.registry import DeviceEntry, DeviceRegistry, provision
from ingest.validation import ChunkValidator, Verdict
from justwalk.config import Settings
from justwalk.device_protocol import (
    HEALTH_PATH,
    STREAM_PATH,
    UPLOAD_PATH,
    DeviceCredential,
    auth_headers,
)
from justwalk.kafka_topics import ensure_topics
from justwalk.wire import (
    CRC_BYTES,
    MAX_MESSAGE_BYTES,
    ChunkFlags,
    ImuChunk,
    Placement,
    clinic_from_headers,
    decode_chunk,
    encode_chunk,
    frame_upload,
    received_us_from_headers,
    seal,
)

pytestmark = pytest.mark.integration

NOW_US = 1_750_000_000_000_000
FS = 100.0
N = 50
DEVICES = [("dev-1", "ms-0001", "clinic-a"), ("dev-2", "ms-0002", "clinic-b")]


def make_chunk(seq: int, *, device: str = "dev-1", patient: str = "ms-0001",
               session: str = "s1", clinic: str = "", start_us: int = NOW_US - 60_000_000,
               nan_at: tuple[int, int] | None = None) -> ImuChunk:
    """Chunk ``seq`` of a gapless 100 Hz stream; sample values encode the sequence."""
    samples = np.zeros((N, 6), dtype=np.float32)
    samples[:, 0] = 9.81
    samples[:, 1] = seq / 100
    if nan_at is not None:
        samples[nan_at] = np.nan
    return ImuChunk(patient_id=patient, device_id=device, session_id=session, sequence=seq,
                    t0_us=start_us + seq * round(N * 1e6 / FS), sample_rate_hz=FS,
                    placement=Placement.LOWER_BACK, samples=samples, clinic_id=clinic)


def wire(seq: int, **kwargs: Any) -> bytes:
    return encode_chunk(make_chunk(seq, **kwargs))


def reseal(data: bytes | bytearray) -> bytes:
    """A changed message sealed again: what a device that built it so would send."""
    return seal(bytes(data[:-CRC_BYTES]))


def version_1(data: bytes) -> bytes:
    """The same chunk in wire version 1 (no checksum)."""
    v1 = bytearray(data[:-CRC_BYTES])
    v1[2] = 1
    return bytes(v1)


@dataclass
class Gateway:
    client: TestClient[Any, Any]
    settings: Settings
    credentials: dict[str, DeviceCredential]
    publisher: Any

    def headers(self, device: str = "dev-1") -> dict[str, str]:
        return auth_headers(self.credentials[device].token)


@contextlib.asynccontextmanager
async def running_gateway(
    settings: Settings, tmp_path: Path, *, validator: ChunkValidator | None = None,
    wrap: type[FlakyPublisher] | None = None, limits: DeviceLimits | None = None,
) -> AsyncIterator[Gateway]:
    credentials = provision(tmp_path / "devices.json", tmp_path / "credentials.json", DEVICES)
    registry = DeviceRegistry.load(tmp_path / "devices.json")
    await ensure_topics(settings)
    async with KafkaPublisher(settings.kafka_bootstrap) as kafka:
        publisher: Publisher = kafka if wrap is None else wrap(kafka, settings.topic_chunks)
        app = create_app(settings, publisher, registry, clock=lambda: NOW_US,
                         validator=validator, limits=limits)
        async with TestClient(TestServer(app)) as client:
            yield Gateway(client, settings, {c.device_id: c for c in credentials}, publisher)


@pytest.fixture
async def gw(stack_settings: Settings, tmp_path: Path) -> AsyncIterator[Gateway]:
    async with running_gateway(stack_settings, tmp_path) as gateway:
        yield gateway


async def read_topic(settings: Settings, topic: str, expected: int,
                     timeout_s: float = 20.0) -> list[ConsumerRecord[bytes, bytes]]:
    """Every record of ``topic`` (waiting for ``expected`` of them, then a little more)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap,
                                enable_auto_commit=False, auto_offset_reset="earliest")
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(settings.topic_partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        records: list[ConsumerRecord[bytes, bytes]] = []
        deadline = time.monotonic() + timeout_s
        while len(records) < expected and time.monotonic() < deadline:
            for batch in (await consumer.getmany(timeout_ms=500)).values():
                records.extend(batch)
        for batch in (await consumer.getmany(timeout_ms=500)).values():
            records.extend(batch)
        return records
    finally:
        await consumer.stop()


async def exchange(ws: aiohttp.ClientWebSocketResponse,
                   messages: list[bytes | str]) -> list[dict[str, Any]]:
    """Send all messages, then read one answer per message."""
    for m in messages:
        if isinstance(m, bytes):
            await ws.send_bytes(m)
        else:
            await ws.send_str(m)
    answers = []
    for _ in messages:
        msg = await ws.receive(timeout=15)
        assert msg.type is aiohttp.WSMsgType.TEXT, msg
        answers.append(json.loads(msg.data))
    return answers


def as_processed(record: Any) -> ImuChunk:
    """A chunk message decoded as the processor does: the clinic from the gateway's header."""
    return decode_chunk(record.value, clinic_id=clinic_from_headers(record.headers))


def ack(seq: int, duplicate: bool = False) -> dict[str, Any]:
    return {"type": "ack", "sequence": seq} | ({"duplicate": True} if duplicate else {})


async def test_valid_chunks_arrive_in_order_keyed_by_patient_with_clinic(gw: Gateway) -> None:
    async with gw.client.ws_connect(STREAM_PATH, headers=gw.headers()) as ws:
        answers = await exchange(ws, [wire(i, clinic="spoofed") for i in range(6)])
    assert answers == [ack(i) for i in range(6)]

    records = await read_topic(gw.settings, gw.settings.topic_chunks, 6)
    assert len(records) == 6
    assert {r.key for r in records} == {b"ms-0001"}
    assert len({r.partition for r in records}) == 1
    records = sorted(records, key=lambda r: r.offset)
    # the device's own bytes, unchanged; the clinic of its registry entry in a header
    assert [r.value for r in records] == [wire(i, clinic="spoofed") for i in range(6)]
    chunks = [as_processed(r) for r in records]
    assert [c.sequence for c in chunks] == list(range(6))
    assert {c.clinic_id for c in chunks} == {"clinic-a"}
    np.testing.assert_array_equal(chunks[3].samples, make_chunk(3).samples)
    # each carries the gateway's receipt time, for latency measurement downstream
    assert {received_us_from_headers(r.headers) for r in records} == {NOW_US}


async def test_faults_are_named_and_the_stream_goes_on(gw: Gateway) -> None:
    good = wire(1)
    messages: list[bytes | str] = [
        wire(0),
        good[:-10],                                # cut short on the way
        reseal(good[:-10]),                        # sealed short by the device
        reseal(good + bytes(24)),                  # one sample more than the header says
        wire(1, nan_at=(5, 2)),                    # NaN
        "hello",                                   # text
        b"JX" + good[2:],                          # bad magic
        wire(1, patient="ms-0002"),                # someone else's patient
        version_1(good),                           # the old format, without a checksum
        wire(1, session="s1") + b"",               # finally the real chunk 1
        wire(2),
    ]
    async with gw.client.ws_connect(STREAM_PATH, headers=gw.headers()) as ws:
        answers = await exchange(ws, messages)

    assert answers[0] == ack(0)
    errors = answers[1:9]
    assert [e["type"] for e in errors] == ["error"] * 8
    assert [e["code"] for e in errors] == [
        "bad_checksum", "truncated", "sample_count_mismatch", "non_finite", "expected_binary",
        "bad_magic", "forbidden_identity", "unsupported_version"]
    assert [e["sequence"] for e in errors] == [1, 1, 1, 1, None, None, 1, 1]
    assert "send the chunk again" in errors[0]["reason"].lower()
    assert "sample 5 channel acc_z is nan" in errors[3]["reason"]
    assert "'ms-0002'" in errors[6]["reason"]
    assert "no checksum" in errors[7]["reason"]
    assert answers[9:] == [ack(1), ack(2)]

    chunks = await read_topic(gw.settings, gw.settings.topic_chunks, 3)
    assert sorted(decode_chunk(r.value).sequence for r in chunks) == [0, 1, 2]
    rejects = await read_topic(gw.settings, gw.settings.topic_rejects, 6)
    records = [json.loads(r.value) for r in rejects]
    assert sorted(r["code"] for r in records) == sorted(e["code"] for e in errors)
    truncated = next(r for r in records if r["code"] == "truncated")
    assert truncated == {"received_at_us": NOW_US, "source": "gateway", "device_id": "dev-1",
                         "patient_id": "ms-0001", "session_id": "s1", "sequence": 1,
                         "code": "truncated", "reason": errors[1]["reason"],
                         "kafka_position": None}
    assert {r.key for r in rejects} == {b"ms-0001"}


async def test_a_resend_is_acked_as_duplicate_and_not_published_again(gw: Gateway) -> None:
    async with gw.client.ws_connect(STREAM_PATH, headers=gw.headers()) as ws:
        assert await exchange(ws, [wire(0), wire(1)]) == [ack(0), ack(1)]
    async with gw.client.ws_connect(STREAM_PATH, headers=gw.headers()) as ws:
        answers = await exchange(ws, [wire(1), wire(2)])
    assert answers == [ack(1, duplicate=True), ack(2)]
    records = await read_topic(gw.settings, gw.settings.topic_chunks, 3)
    assert sorted(decode_chunk(r.value).sequence for r in records) == [0, 1, 2]


async def test_the_last_chunk_flag_passes_through_and_ends_the_session(gw: Gateway) -> None:
    last = encode_chunk(dataclasses.replace(make_chunk(2), flags=ChunkFlags.LAST))
    reserved = bytearray(wire(3))
    reserved[4] = 0b10  # a flag bit the wire format does not define
    async with gw.client.ws_connect(STREAM_PATH, headers=gw.headers()) as ws:
        answers = await exchange(ws, [wire(0), wire(1), last, last, reseal(reserved), wire(3)])
    assert answers[:4] == [ack(0), ack(1), ack(2), ack(2, duplicate=True)]
    assert (answers[4]["code"], answers[5]["code"]) == ("bad_flags", "session_ended")
    assert "chunk 2" in answers[5]["reason"] and "new session id" in answers[5]["reason"]
    records = await read_topic(gw.settings, gw.settings.topic_chunks, 3)
    chunks = sorted((as_processed(r) for r in records), key=lambda c: c.sequence)
    assert [(c.sequence, c.flags) for c in chunks] == [
        (0, ChunkFlags.NONE), (1, ChunkFlags.NONE), (2, ChunkFlags.LAST)]
    assert chunks[2].clinic_id == "clinic-a"  # the clinic header, the flag kept


@pytest.mark.parametrize("headers", [{}, auth_headers("not-a-token"),
                                     {"Authorization": "Basic ZGV2LTE6eA=="}])
async def test_bad_tokens_get_401_before_the_upgrade(gw: Gateway,
                                                     headers: dict[str, str]) -> None:
    with pytest.raises(aiohttp.WSServerHandshakeError) as err:
        await gw.client.ws_connect(STREAM_PATH, headers=headers)
    assert err.value.status == 401
    resp = await gw.client.get(STREAM_PATH, headers=headers)
    assert resp.status == 401
    assert (await resp.json())["code"] == "unauthorized"
    resp = await gw.client.post(UPLOAD_PATH, data=frame_upload([wire(0)]), headers=headers)
    assert resp.status == 401


async def test_upload_with_good_and_bad_frames(gw: Gateway) -> None:
    async with gw.client.ws_connect(STREAM_PATH, headers=gw.headers()) as ws:
        assert await exchange(ws, [wire(0)]) == [ack(0)]
    frames = [wire(0), wire(1), wire(2, nan_at=(0, 3)), wire(3), wire(2),
              wire(4, patient="ms-0002"), wire(5)]
    body = frame_upload(frames) + b"\xff\x00\x00\x00" + wire(6)[:100]  # broken last frame
    resp = await gw.client.post(UPLOAD_PATH, data=body, headers=gw.headers())
    assert resp.status == 422
    answer = await resp.json()
    assert answer["accepted"] == 4
    assert answer["duplicates"] == 1
    assert [(r["index"], r["sequence"], r["code"]) for r in answer["rejected"]] == [
        (2, 2, "non_finite"), (5, 4, "forbidden_identity"), (7, None, "truncated")]
    assert "upload frame 7" in answer["rejected"][2]["reason"]

    records = await read_topic(gw.settings, gw.settings.topic_chunks, 5)
    chunks = [as_processed(r) for r in sorted(records, key=lambda r: r.offset)]
    assert [c.sequence for c in chunks] == [0, 1, 3, 2, 5]
    assert {c.clinic_id for c in chunks} == {"clinic-a"}


async def test_a_clean_upload_is_200(gw: Gateway) -> None:
    resp = await gw.client.post(UPLOAD_PATH, data=frame_upload([wire(i) for i in range(600)]),
                                headers=gw.headers("dev-2") | {})
    assert resp.status == 422  # dev-2 may not send ms-0001's data
    body = frame_upload([wire(i, device="dev-2", patient="ms-0002") for i in range(600)])
    resp = await gw.client.post(UPLOAD_PATH, data=body, headers=gw.headers("dev-2"))
    assert resp.status == 200
    assert await resp.json() == {"accepted": 600, "duplicates": 0, "rejected": [],
                                 "rejected_count": 0, "errors_by_code": {}, "frames": 600,
                                 "resend_from": None}
    records = await read_topic(gw.settings, gw.settings.topic_chunks, 600)
    assert [decode_chunk(r.value).sequence for r in sorted(records, key=lambda r: r.offset)] \
        == list(range(600))


async def test_oversized_uploads_get_413(stack_settings: Settings, tmp_path: Path) -> None:
    settings = stack_settings.replace(max_upload_bytes=4000)
    async with running_gateway(settings, tmp_path) as gw:
        body = frame_upload([wire(i) for i in range(4)])
        resp = await gw.client.post(UPLOAD_PATH, data=body, headers=gw.headers())
        assert resp.status == 413
        assert (await resp.json())["code"] == "too_large"

        async def chunked() -> AsyncIterator[bytes]:  # no Content-Length
            yield body

        resp = await gw.client.post(UPLOAD_PATH, data=chunked(), headers=gw.headers())
        assert resp.status == 413
        resp = await gw.client.post(UPLOAD_PATH, data=frame_upload([wire(0)]),
                                    headers=gw.headers())
        assert resp.status == 200


async def test_an_oversized_message_is_answered_and_the_stream_goes_on(gw: Gateway) -> None:
    async with gw.client.ws_connect(STREAM_PATH, headers=gw.headers()) as ws:
        answers = await exchange(ws, [wire(0), bytes(MAX_MESSAGE_BYTES + 1), wire(1)])
        assert answers[0] == ack(0) and answers[2] == ack(1)
        assert answers[1]["code"] == "too_large"
        assert f"the limit is {MAX_MESSAGE_BYTES}" in answers[1]["reason"]
        assert not ws.closed


async def test_a_message_too_large_to_read_is_answered_then_the_socket_closes(
    gw: Gateway,
) -> None:
    async with gw.client.ws_connect(STREAM_PATH, headers=gw.headers()) as ws:
        await ws.send_bytes(bytes(MAX_WS_MESSAGE_BYTES + 1))
        msg = await ws.receive(timeout=10)
        assert msg.type is aiohttp.WSMsgType.TEXT, msg
        answer = json.loads(msg.data)
        assert answer["code"] == "too_large"
        assert str(MAX_WS_MESSAGE_BYTES) in answer["reason"] and "closed" in answer["reason"]
        msg = await ws.receive(timeout=10)
        assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
        assert ws.close_code == aiohttp.WSCloseCode.MESSAGE_TOO_BIG


def with_id(data: bytes, old: bytes, new: bytes) -> bytes:
    """The message with one id replaced by another of the same length, sealed again."""
    assert len(old) == len(new)
    return reseal(data.replace(old, new, 1))


async def test_an_id_ending_in_a_newline_is_refused_on_both_endpoints(gw: Gateway) -> None:
    sneaky = with_id(wire(0, session="abcd"), b"abcd", b"abc\n")
    async with gw.client.ws_connect(STREAM_PATH, headers=gw.headers()) as ws:
        answers = await exchange(ws, [sneaky])
    assert answers[0]["code"] == "bad_id" and "'abc\\n'" in answers[0]["reason"]
    resp = await gw.client.post(UPLOAD_PATH, data=frame_upload([sneaky]), headers=gw.headers())
    assert resp.status == 422
    assert (await resp.json())["rejected"][0]["code"] == "bad_id"


async def test_healthz(gw: Gateway) -> None:
    resp = await gw.client.get(HEALTH_PATH)
    assert resp.status == 200
    assert await resp.json() == {"status": "ok", "kafka": True}


class ExplodingValidator(ChunkValidator):
    def check(self, chunk: ImuChunk, entry: DeviceEntry, now_us: int) -> Verdict:
        if chunk.sequence == 13:
            raise RuntimeError("boom")
        return super().check(chunk, entry, now_us)


async def test_an_internal_error_is_answered_and_the_stream_goes_on(
    stack_settings: Settings, tmp_path: Path,
) -> None:
    async with (
        running_gateway(stack_settings, tmp_path, validator=ExplodingValidator()) as gw,
        gw.client.ws_connect(STREAM_PATH, headers=gw.headers()) as ws,
    ):
        answers = await exchange(ws, [wire(12), wire(13), wire(14)])
    assert answers[0] == ack(12)
    assert (answers[1]["code"], answers[1]["sequence"]) == ("internal_error", 13)
    assert answers[2] == ack(14)


class FlakyPublisher:
    """The real publisher, except that the next chunk's delivery can be made to fail."""

    def __init__(self, inner: KafkaPublisher, chunk_topic: str) -> None:
        self.inner = inner
        self.chunk_topic = chunk_topic
        self.fail_next = False

    async def send(self, topic: str, key: bytes, value: bytes,
                   headers: Sequence[tuple[str, bytes]] = ()) -> Awaitable[object]:
        if topic == self.chunk_topic and self.fail_next:
            self.fail_next = False
            failed: asyncio.Future[object] = asyncio.get_running_loop().create_future()
            failed.set_exception(KafkaTimeoutError())
            return failed
        return await self.inner.send(topic, key, value, headers)

    async def publish(self, topic: str, key: bytes, value: bytes) -> None:
        await self.inner.publish(topic, key, value)

    async def ping(self) -> bool:
        return await self.inner.ping()


async def test_a_failed_delivery_is_an_error_and_the_resend_is_stored(
    stack_settings: Settings, tmp_path: Path,
) -> None:
    async with running_gateway(stack_settings, tmp_path, wrap=FlakyPublisher) as gw:
        publisher = gw.publisher
        async with gw.client.ws_connect(STREAM_PATH, headers=gw.headers()) as ws:
            assert await exchange(ws, [wire(0)]) == [ack(0)]
            publisher.fail_next = True
            failed = (await exchange(ws, [wire(1)]))[0]
            assert (failed["code"], failed["sequence"]) == ("unavailable", 1)
            assert await exchange(ws, [wire(1), wire(2)]) == [ack(1), ack(2)]
    records = await read_topic(stack_settings, stack_settings.topic_chunks, 3)
    assert sorted(decode_chunk(r.value).sequence for r in records) == [0, 1, 2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.asynccontextmanager
async def serving(settings: Settings) -> AsyncIterator[str]:
    """``serve(settings)`` in a task, once healthy; yields its base URL, then cancels it."""
    base = f"http://{settings.gateway_host}:{settings.gateway_port}"
    task = asyncio.create_task(serve(settings))
    try:
        async with aiohttp.ClientSession() as session:
            for _ in range(300):
                assert not task.done(), task
                with contextlib.suppress(aiohttp.ClientConnectionError):
                    async with session.get(base + HEALTH_PATH) as resp:
                        if resp.status == 200:
                            break
                await asyncio.sleep(0.1)
        yield base
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, 15)
        assert task.cancelled()


async def test_serve_runs_until_cancelled_and_closes_open_sockets(
    stack_settings: Settings, tmp_path: Path,
) -> None:
    credentials = provision(tmp_path / "devices.json", tmp_path / "creds.json", DEVICES)
    settings = stack_settings.replace(device_registry=tmp_path / "devices.json",
                                      gateway_port=_free_port())
    now_us = time.time_ns() // 1000
    async with aiohttp.ClientSession() as session:
        async with serving(settings) as base:
            ws = await session.ws_connect(base + STREAM_PATH,
                                          headers=auth_headers(credentials[0].token))
            answers = await exchange(ws, [wire(0, start_us=now_us - 1_000_000)])
            assert answers == [ack(0)]
        msg = await ws.receive(timeout=5)
        assert (msg.type, msg.data) == (aiohttp.WSMsgType.CLOSE,
                                        aiohttp.WSCloseCode.GOING_AWAY)
        await ws.close()
    records = await read_topic(settings, settings.topic_chunks, 1)
    assert [as_processed(r).clinic_id for r in records] == ["clinic-a"]


async def test_a_flood_of_empty_frames_gets_a_bounded_answer_and_bounded_logs(
    gw: Gateway, caplog: pytest.LogCaptureFixture,
) -> None:
    body = bytes(1024 * 1024)  # 262,144 zero-length frames
    caplog.set_level("INFO", logger="ingest")
    resp = await gw.client.post(UPLOAD_PATH, data=body, headers=gw.headers())
    text = await resp.text()
    answer = json.loads(text)
    assert resp.status == 422
    assert answer["code"] == "too_many_errors" and "not read" in answer["reason"]
    assert answer["errors_by_code"] == {"truncated": 1000}
    assert answer["rejected_count"] == 1000 and len(answer["rejected"]) == 20
    assert answer["accepted"] == 0 and answer["resend_from"] == 1000
    assert len(text) < 8_000
    assert len(caplog.records) <= DeviceLimits().report_burst + 2
    assert "more rejections not logged" in caplog.records[-1].getMessage()
    # the device's live stream still goes through
    async with gw.client.ws_connect(STREAM_PATH, headers=gw.headers()) as ws:
        assert await exchange(ws, [wire(0)]) == [ack(0)]


SMALL = DeviceLimits(frames_per_s=2.0, frame_burst=10)


async def test_a_device_over_its_share_gets_429_and_where_to_resume(
    stack_settings: Settings, tmp_path: Path,
) -> None:
    async with running_gateway(stack_settings, tmp_path, limits=SMALL) as gw:
        resp = await gw.client.post(UPLOAD_PATH, data=frame_upload([wire(i) for i in range(30)]),
                                    headers=gw.headers())
        assert resp.status == 429
        assert int(resp.headers["Retry-After"]) >= 1
        answer = await resp.json()
        assert (answer["code"], answer["accepted"], answer["resend_from"]) == (
            "rate_limited", 10, 10)
        assert "from frame 10 on" in answer["reason"] and answer["retry_after_s"] > 0
        # its stream is told the same, chunk by chunk, without decoding anything
        async with gw.client.ws_connect(STREAM_PATH, headers=gw.headers()) as ws:
            (refused,) = await exchange(ws, [wire(10)])
        assert (refused["code"], refused["sequence"]) == ("rate_limited", 10)
        assert refused["retry_after_s"] > 0
        # and a new upload is refused before its body is read
        resp = await gw.client.post(UPLOAD_PATH, data=frame_upload([wire(10)]),
                                    headers=gw.headers())
        assert resp.status == 429 and "Retry-After" in resp.headers
        # another device is not affected
        body = frame_upload([wire(i, device="dev-2", patient="ms-0002") for i in range(10)])
        resp = await gw.client.post(UPLOAD_PATH, data=body, headers=gw.headers("dev-2"))
        assert resp.status == 200
    records = await read_topic(stack_settings, stack_settings.topic_chunks, 20)
    sent = sorted((r.key, decode_chunk(r.value).sequence) for r in records)
    assert sent == sorted([(b"ms-0001", i) for i in range(10)]
                          + [(b"ms-0002", i) for i in range(10)])


async def test_a_device_may_run_two_uploads_at_once(gw: Gateway) -> None:
    release = asyncio.Event()

    async def slow() -> AsyncIterator[bytes]:
        yield frame_upload([wire(0)])
        await release.wait()

    first = asyncio.create_task(gw.client.post(UPLOAD_PATH, data=slow(), headers=gw.headers()))
    second = asyncio.create_task(gw.client.post(UPLOAD_PATH, data=slow(),
                                                headers=gw.headers()))
    await asyncio.sleep(0.5)
    third = await gw.client.post(UPLOAD_PATH, data=frame_upload([wire(1)]),
                                 headers=gw.headers())
    assert third.status == 429 and (await third.json())["code"] == "rate_limited"
    release.set()
    assert {(await first).status, (await second).status} == {200}


async def test_an_upload_cut_off_midway_loses_nothing_when_sent_again(gw: Gateway) -> None:
    frames = [wire(i) for i in range(40)]

    async def cut() -> AsyncIterator[bytes]:
        yield frame_upload(frames[:25]) + frame_upload(frames[25:26])[:100]
        await asyncio.sleep(0.5)
        raise ConnectionAbortedError("the device lost its network")

    with pytest.raises(aiohttp.ClientError):
        await gw.client.post(UPLOAD_PATH, data=cut(), headers=gw.headers())
    resp = await gw.client.post(UPLOAD_PATH, data=frame_upload(frames), headers=gw.headers())
    answer = await resp.json()
    assert resp.status == 200 and answer["accepted"] + answer["duplicates"] == 40, answer
    assert answer["duplicates"] >= 1  # what was read before the cut was stored
    records = await read_topic(gw.settings, gw.settings.topic_chunks, 40)
    assert sorted(decode_chunk(r.value).sequence for r in records) == list(range(40))
