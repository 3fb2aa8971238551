"""The simulated device against a small real aiohttp gateway stand-in started by the test."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from aiohttp import WSMsgType, web
from aiohttp.test_utils import TestServer

from justwalk.cli import build_parser
from justwalk.config import Settings
from justwalk.device_protocol import (
    AUTH_HEADER,
    STREAM_PATH,
    UPLOAD_PATH,
    DeviceCredential,
    ack_message,
    error_message,
    save_credentials,
)
from justwalk.simulator.device import (
    chunk_t0_us,
    make_chunks,
    stream_samples,
    stream_url,
    upload_recording,
    upload_url,
)
from justwalk.simulator.gait_model import GaitProfile
from justwalk.simulator.run import (
    replay_main,
    simulate_main,
    simulation_start_us,
    stream_simulated_patients,
)
from justwalk.simulator.truth import read_truth
from justwalk.wire import ChunkError, ImuChunk, decode_chunk, split_upload

START_US = 1_700_000_000_000_000
CRED = DeviceCredential("dev-1", "pat-1", "clinic-a", "tok-1")
CRED2 = DeviceCredential("dev-2", "pat-2", "clinic-a", "tok-2")
MS001 = Path(__file__).resolve().parents[2] / "shared" / "data" / "mobilised" / "data" / \
    "lab" / "MS" / "001" / "data.mat"


@dataclass
class FakeGateway:
    """Acks every chunk (duplicates flagged); can drop a connection or reject a sequence."""

    tokens: dict[str, DeviceCredential]
    ack_delay_s: float = 0.0
    drop_at_chunk: int | None = None  # close the first connection on this many-th chunk
    reject_sequence: int | None = None
    unavailable_once: int | None = None  # answer "unavailable" to this sequence, once
    unavailable_from: int | None = None  # answer "unavailable" to this sequence and later
    send_feedback: bool = False
    arrivals: list[tuple[float, ImuChunk]] = field(default_factory=list)
    stored: dict[tuple[str, str, int], ImuChunk] = field(default_factory=dict)
    connections: int = 0
    outstanding: int = 0
    max_outstanding: int = 0
    uploads: int = 0

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get(STREAM_PATH, self.stream)
        app.router.add_post(UPLOAD_PATH, self.upload)
        return app

    def _auth(self, request: web.Request) -> DeviceCredential:
        header = request.headers.get(AUTH_HEADER, "")
        cred = self.tokens.get(header.removeprefix("Bearer "))
        if cred is None:
            raise web.HTTPUnauthorized(text="unknown device token")
        return cred

    def _store(self, chunk: ImuChunk) -> bool:
        key = (chunk.device_id, chunk.session_id, chunk.sequence)
        dup = key in self.stored
        self.stored[key] = chunk
        return dup

    async def stream(self, request: web.Request) -> web.WebSocketResponse:
        self._auth(request)
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self.connections += 1
        loop = asyncio.get_running_loop()
        tasks: set[asyncio.Task[None]] = set()

        async def answer(text: str) -> None:
            if self.ack_delay_s:
                await asyncio.sleep(self.ack_delay_s)
            self.outstanding -= 1
            if not ws.closed:
                await ws.send_str(text)

        async for msg in ws:
            if msg.type != WSMsgType.BINARY:
                continue
            try:
                chunk = decode_chunk(msg.data)
            except ChunkError as e:
                await ws.send_str(error_message(None, e.code, e.reason))
                continue
            self.arrivals.append((loop.time(), chunk))
            if chunk.sequence == self.reject_sequence:
                await ws.send_str(error_message(chunk.sequence, "out_of_range", "test"))
                continue
            if chunk.sequence == self.unavailable_once:
                self.unavailable_once = None
                await ws.send_str(error_message(chunk.sequence, "unavailable", "test"))
                continue
            if self.unavailable_from is not None and chunk.sequence >= self.unavailable_from:
                await ws.send_str(error_message(chunk.sequence, "unavailable", "test"))
                continue
            dup = self._store(chunk)
            if self.drop_at_chunk is not None and len(self.arrivals) == self.drop_at_chunk:
                self.drop_at_chunk = None
                await ws.close()  # stored, never acked: the device must resend it
                break
            if self.send_feedback:
                await ws.send_str(json.dumps({"type": "feedback", "cadence_spm": 99}))
            self.outstanding += 1
            self.max_outstanding = max(self.max_outstanding, self.outstanding)
            task = asyncio.create_task(answer(ack_message(chunk.sequence, duplicate=dup)))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        for task in list(tasks):
            task.cancel()
        return ws

    async def upload(self, request: web.Request) -> web.Response:
        self._auth(request)
        self.uploads += 1
        accepted = duplicates = 0
        for msg in split_upload(await request.read()):
            if self._store(decode_chunk(msg)):
                duplicates += 1
            else:
                accepted += 1
        return web.json_response({"accepted": accepted, "duplicates": duplicates,
                                  "rejected": []})


@pytest.fixture
async def gateway() -> AsyncIterator[tuple[FakeGateway, str]]:
    gw = FakeGateway(tokens={c.token: c for c in (CRED, CRED2)})
    server = TestServer(gw.app())
    await server.start_server()
    try:
        yield gw, str(server.make_url("/"))
    finally:
        await server.close()


def ramp(n: int) -> np.ndarray:
    """Samples whose value encodes their index, so reordering or loss is visible."""
    s = np.zeros((n, 6), dtype=np.float32)
    s[:, 0] = 9.81
    s[:, 1] = np.arange(n)
    return s


def received_samples(gw: FakeGateway) -> np.ndarray:
    chunks = sorted(gw.stored.values(), key=lambda c: (c.device_id, c.sequence))
    return np.concatenate([c.samples for c in chunks])


def test_urls() -> None:
    assert stream_url("http://127.0.0.1:8080") == "ws://127.0.0.1:8080/v1/stream"
    assert stream_url("https://gw.example/") == "wss://gw.example/v1/stream"
    assert upload_url("ws://127.0.0.1:8080") == "http://127.0.0.1:8080/v1/upload"


def test_chunks_have_sequences_from_zero_and_event_time_t0() -> None:
    chunks = make_chunks(CRED, ramp(1050), start_us=START_US, sample_rate_hz=100.0,
                         session_id="s1")
    assert [c.sequence for c in chunks] == list(range(21))
    assert [c.t0_us for c in chunks] == [START_US + k * 500_000 for k in range(21)]
    assert chunks[-1].n_samples == 50
    assert all(c.end_us == n.t0_us for c, n in itertools.pairwise(chunks))
    # one call is one session: its last chunk says so (unless the device "dies")
    assert [c.ends_session for c in chunks] == [False] * 20 + [True]
    assert not any(c.ends_session for c in make_chunks(
        CRED, ramp(1050), start_us=START_US, sample_rate_hz=100.0, session_id="s1",
        end_session=False))
    # a sample rate that does not divide a microsecond: t0 = start + round(k * n * 1e6 / fs)
    odd = make_chunks(CRED, ramp(500), start_us=0, sample_rate_hz=104.17, session_id="s1")
    assert odd[3].n_samples == 52
    assert odd[3].t0_us == round(3 * 52 * 1e6 / 104.17) == chunk_t0_us(0, 3, 52, 104.17)


async def test_real_time_pacing_sequences_and_t0(gateway: tuple[FakeGateway, str]) -> None:
    gw, url = gateway
    samples = ramp(300)  # 3 s = 6 chunks; at speed 10 one chunk every 50 ms
    stats = await stream_samples(url, CRED, samples, start_us=START_US, sample_rate_hz=100.0,
                                 speed=10.0, session_id="sess-a")
    assert stats.completed and stats.acked == stats.chunks == stats.sent == 6
    assert stats.duplicates == 0 and not stats.errors
    chunks = [c for _, c in gw.arrivals]
    assert [c.sequence for c in chunks] == list(range(6))
    assert [c.t0_us for c in chunks] == [START_US + k * 500_000 for k in range(6)]
    assert [c.ends_session for c in chunks] == [False] * 5 + [True]  # the session's end
    assert {(c.patient_id, c.device_id, c.session_id) for c in chunks} == {
        ("pat-1", "dev-1", "sess-a")
    }
    np.testing.assert_array_equal(received_samples(gw), samples)
    times = np.array([t for t, _ in gw.arrivals])
    gaps = np.diff(times)
    assert np.median(gaps) == pytest.approx(0.05, abs=0.015)
    assert times[-1] - times[0] == pytest.approx(0.25, abs=0.05)


async def test_fast_mode_keeps_a_bounded_window_in_flight(
    gateway: tuple[FakeGateway, str],
) -> None:
    gw, url = gateway
    gw.ack_delay_s = 0.01
    stats = await stream_samples(url, CRED, ramp(2000), start_us=START_US, sample_rate_hz=100.0,
                                 speed=0.0, max_in_flight=8)
    assert stats.completed and stats.acked == 40
    assert 2 <= gw.max_outstanding <= 8


async def test_reconnects_and_resends_unacked_chunks(gateway: tuple[FakeGateway, str]) -> None:
    gw, url = gateway
    gw.drop_at_chunk = 5  # chunk seq 4 is stored, then the connection drops before its ack
    samples = ramp(1000)
    stats = await stream_samples(url, CRED, samples, start_us=START_US, sample_rate_hz=100.0,
                                 speed=0.0, reconnect_delay_s=0.01)
    assert gw.connections == 2
    assert stats.reconnects == 1
    assert stats.completed and stats.acked == stats.chunks == 20
    assert stats.resent >= 1 and stats.duplicates >= 1
    assert stats.sent == stats.chunks + stats.resent
    seqs = [c.sequence for _, c in gw.arrivals]
    assert seqs.count(4) == 2  # the un-acked chunk came again, with the same content
    resent = [c for _, c in gw.arrivals if c.sequence == 4]
    assert resent[0].t0_us == resent[1].t0_us == START_US + 4 * 500_000
    np.testing.assert_array_equal(resent[0].samples, resent[1].samples)
    assert sorted(k[2] for k in gw.stored) == list(range(20))
    np.testing.assert_array_equal(received_samples(gw), samples)


async def test_rejections_are_reported_and_unknown_messages_ignored(
    gateway: tuple[FakeGateway, str],
) -> None:
    gw, url = gateway
    gw.reject_sequence = 3
    gw.send_feedback = True
    stats = await stream_samples(url, CRED, ramp(500), start_us=START_US, sample_rate_hz=100.0,
                                 speed=0.0)
    assert stats.completed
    assert stats.acked == 9
    assert stats.error_codes == {"out_of_range": 1}
    assert stats.errors[0].sequence == 3
    assert stats.unanswered == 0


async def test_retryable_answer_keeps_the_chunk_and_sends_it_again(
    gateway: tuple[FakeGateway, str],
) -> None:
    gw, url = gateway
    gw.unavailable_once = 4
    stats = await stream_samples(url, CRED, ramp(500), start_us=START_US, sample_rate_hz=100.0,
                                 speed=0.0, reconnect_delay_s=0.01)
    assert stats.completed
    assert stats.retried == 1 and stats.errors == []
    assert stats.acked == 10 and stats.unanswered == 0
    assert {k[2] for k in gw.stored} == set(range(10))


async def test_a_retryable_answer_is_sent_again_from_the_oldest_unacked_chunk(
    gateway: tuple[FakeGateway, str],
) -> None:
    gw, url = gateway
    gw.unavailable_once = 4
    before = time.time()
    stats = await stream_samples(url, CRED, ramp(500), start_us=START_US, sample_rate_hz=100.0,
                                 speed=0.0, reconnect_delay_s=0.01, max_in_flight=8)
    assert [s for s, _ in stats.retried_at] == [4]
    assert sorted(stats.acked_at) == list(range(10))
    assert all(before <= t <= time.time() for t in stats.acked_at.values())
    # after the refusal the device reconnected and sent chunk 4 first, then the others it
    # had no answer for, in order
    seqs = [c.sequence for _, c in gw.arrivals]
    again = seqs.index(4, seqs.index(4) + 1)
    assert seqs[again] == 4 and seqs[again:] == sorted(seqs[again:])
    assert {k[2] for k in gw.stored} == set(range(10))


async def test_a_device_keeps_its_chunks_until_it_gives_up(
    gateway: tuple[FakeGateway, str],
) -> None:
    gw, url = gateway
    gw.unavailable_from = 3  # the gateway can store nothing from chunk 3 on
    t0 = time.monotonic()
    stats = await stream_samples(url, CRED, ramp(500), start_us=START_US, sample_rate_hz=100.0,
                                 speed=0.0, reconnect_delay_s=0.01, max_reconnect_delay_s=0.05,
                                 give_up_after_s=1.0)
    assert 1.0 <= time.monotonic() - t0 < 5.0
    assert not stats.completed and stats.errors == []
    assert sorted(stats.acked_at) == [0, 1, 2] and stats.unanswered == 7
    assert stats.retried > 3 and stats.reconnects > 3  # it kept trying until then


async def test_unknown_token_is_refused(gateway: tuple[FakeGateway, str]) -> None:
    _, url = gateway
    bad = DeviceCredential("dev-x", "pat-x", "clinic-a", "wrong")
    stats = await stream_samples(url, bad, ramp(100), start_us=START_US, sample_rate_hz=100.0,
                                 speed=0.0)
    assert not stats.completed
    assert stats.error_codes == {"http_401": 1}


async def test_store_and_forward_upload(gateway: tuple[FakeGateway, str]) -> None:
    gw, url = gateway
    samples = ramp(1000)
    stats = await upload_recording(url, CRED, samples, start_us=START_US, sample_rate_hz=100.0,
                                   max_body_bytes=10_000)
    assert stats.completed and stats.acked == 20 and stats.duplicates == 0
    assert gw.uploads > 1  # split into several bodies
    np.testing.assert_array_equal(received_samples(gw), samples)
    again = await upload_recording(url, CRED, samples, start_us=START_US, sample_rate_hz=100.0)
    assert again.duplicates == 20


async def test_stream_simulated_patients(gateway: tuple[FakeGateway, str]) -> None:
    gw, url = gateway
    profiles = [GaitProfile(cadence_spm=100.0, walking_s=((1.0, 9.0),)),
                GaitProfile(cadence_spm=120.0, step_time_cv=0.06, asymmetry=0.1)]
    result = await stream_simulated_patients(url, [CRED, CRED2], profiles, 10.0, speed=0.0,
                                             start_us=START_US, window_s=5.0, seed=4)
    assert result.ok
    assert [t.patient_id for t in result.truths] == ["pat-1", "pat-2"]
    assert result.truths[0].step_times_us[0] == START_US + 1_000_000
    for cred in (CRED, CRED2):
        chunks = sorted((c for c in gw.stored.values() if c.device_id == cred.device_id),
                        key=lambda c: c.sequence)
        assert len(chunks) == 20
        assert chunks[0].t0_us == START_US
        assert chunks[0].patient_id == cred.patient_id
    # deterministic: the same seed gives the same signal
    again = await stream_simulated_patients(url, [CRED], profiles[:1], 10.0, speed=0.0,
                                            start_us=START_US, window_s=5.0, seed=4)
    assert again.truths[0] == result.truths[0]
    assert again.stats[0].duplicates == 20


def test_simulation_start_keeps_chunks_behind_the_wall_clock() -> None:
    now = START_US
    assert simulation_start_us(now, 60.0, 1.0) == now
    assert simulation_start_us(now, 60.0, 0.0) == now - 60_000_000
    assert simulation_start_us(now, 60.0, 10.0) == now - 54_000_000


async def test_simulate_cli(gateway: tuple[FakeGateway, str], tmp_path: Path) -> None:
    gw, url = gateway
    devices = tmp_path / "devices.json"
    save_credentials(devices, [CRED, CRED2])
    truth = tmp_path / "truth.json"
    args = build_parser().parse_args([
        "simulate", "--patients", "2", "--duration", "12", "--speed", "0", "--cadences", "95",
        "--devices", str(devices), "--truth", str(truth), "--seed", "7", "--gateway-url", url,
    ])
    code = await asyncio.to_thread(simulate_main, args, Settings(cadence_window_s=5.0))
    assert code == 0
    truths = read_truth(truth)
    assert [t.patient_id for t in truths] == ["pat-1", "pat-2"]
    assert truths[0].profile.cadence_spm == 95.0
    assert truths[0].window_s == 5.0
    assert len(gw.stored) == 2 * 24


@pytest.mark.realdata
@pytest.mark.skipif(not MS001.exists(), reason="Mobilise-D example data not present")
async def test_replay_cli(gateway: tuple[FakeGateway, str], tmp_path: Path) -> None:
    gw, url = gateway
    devices = tmp_path / "devices.json"
    save_credentials(devices, [CRED])
    args = build_parser().parse_args([
        "replay", str(MS001), "--test", "Test5", "--trial", "Trial1", "--patient-id", "pat-1",
        "--speed", "0", "--devices", str(devices), "--gateway-url", url,
    ])
    before_us = time.time_ns() // 1000
    assert await asyncio.to_thread(replay_main, args, Settings()) == 0
    chunks = sorted(gw.stored.values(), key=lambda c: c.sequence)
    assert len(chunks) == 29  # 1450 samples
    assert chunks[0].patient_id == "pat-1"
    # re-stamped to now by default: ends about when it was sent (speed 0)
    assert before_us - 15_000_000 < chunks[0].t0_us < before_us
    assert chunks[-1].end_us <= time.time_ns() // 1000
    gw.stored.clear()
    args = build_parser().parse_args([
        "replay", str(MS001), "--test", "Test5", "--trial", "Trial1", "--patient-id", "pat-1",
        "--speed", "0", "--devices", str(devices), "--gateway-url", url, "--keep-clock",
        "--upload",
    ])
    assert await asyncio.to_thread(replay_main, args, Settings()) == 0
    chunks = sorted(gw.stored.values(), key=lambda c: c.sequence)
    assert chunks[0].t0_us == 1_604_061_447_880_000  # the recording's own clock
    args = build_parser().parse_args([
        "replay", str(MS001), "--test", "Test5", "--trial", "Trial1", "--patient-id", "nobody",
        "--devices", str(devices), "--gateway-url", url,
    ])
    assert await asyncio.to_thread(replay_main, args, Settings()) == 2
