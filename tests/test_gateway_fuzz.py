"""Fuzzing both endpoints of the real gateway (real broker): random and mutated chunks.

A few thousand cases, seeded and bounded: every WebSocket message gets exactly one answer,
every answer is an ack or names its fault (code and reason), none is an internal error,
nothing is logged as an error, and the gateway is healthy and takes good chunks after.
"""

from __future__ import annotations

import json
import random
import struct
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from justwalk.config import Settings
from justwalk.device_protocol import HEALTH_PATH, STREAM_PATH, UPLOAD_PATH
from justwalk.wire import CRC_BYTES, MAX_MESSAGE_BYTES, UPLOAD_PREFIX, encode_chunk, seal
from tests.test_gateway import NOW_US, Gateway, make_chunk, running_gateway

pytestmark = [pytest.mark.integration, pytest.mark.fault, pytest.mark.timeout(120)]

WS_CASES = 2500
UPLOADS = 300
SEED = 14


def mutator(rng: random.Random) -> Callable[[], bytes | str]:
    """A source of messages: valid chunks, mutated ones, resealed ones, garbage."""
    def valid() -> bytes:
        seq = rng.choice([rng.randrange(0, 200), rng.randrange(0, 2**32)])
        start = NOW_US - rng.choice([60_000_000, 10**12, -200_000_000])
        return encode_chunk(make_chunk(seq, session=f"f{rng.randrange(3)}", start_us=start))

    def flipped() -> bytes:
        data = bytearray(valid())
        for _ in range(rng.randint(1, 6)):
            data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
        return bytes(data)

    def resealed() -> bytes:  # wrong fields behind a correct checksum: the deeper checks
        body = bytearray(valid()[:-CRC_BYTES])
        for _ in range(rng.randint(1, 4)):
            at = rng.randrange(min(len(body), 40) if rng.random() < 0.7 else len(body))
            body[at] = rng.randrange(256)
        cut = rng.choice([0, 0, rng.randint(-30, 30)])
        body = body + bytes(cut) if cut > 0 else body[:len(body) + cut]
        return seal(bytes(body))

    def header_field() -> bytes:
        body = bytearray(valid()[:-CRC_BYTES])
        fmt, at = rng.choice([("<H", 4), ("<H", 6), ("<f", 8), ("<I", 12), ("<q", 16),
                              ("<B", 3), ("<B", 24), ("<B", 26)])
        value: float | int
        if fmt == "<f":
            value = rng.choice([0.0, -1.0, float("nan"), float("inf"), 1e9, 99.99])
        else:
            bits = struct.calcsize(fmt) * 8
            value = rng.randrange(-(2 ** (bits - 1)), 2 ** (bits - 1)) if fmt == "<q" \
                else rng.randrange(2**bits)
        struct.pack_into(fmt, body, at, value)
        return seal(bytes(body))

    def garbage() -> bytes:
        return rng.randbytes(rng.choice([0, 1, 27, 28, 31, 32, 200, 1300]))

    def oversized() -> bytes:
        return rng.randbytes(rng.randint(MAX_MESSAGE_BYTES + 1, 3 * MAX_MESSAGE_BYTES))

    def version_1() -> bytes:
        data = bytearray(valid()[:-CRC_BYTES])
        data[2] = 1
        return bytes(data)

    def text() -> str:
        return rng.choice(["", "hello", "{}", json.dumps({"type": "ack"})])

    kinds: list[Callable[[], bytes | str]] = [
        valid, flipped, flipped, resealed, resealed, resealed, header_field, header_field,
        garbage, oversized, version_1, text]
    return lambda: rng.choice(kinds)()


def names_its_fault(answer: dict[str, Any]) -> None:
    assert answer["type"] in ("ack", "error"), answer
    if answer["type"] == "error":
        assert isinstance(answer["code"], str) and answer["code"], answer
        assert isinstance(answer["reason"], str) and answer["reason"], answer
        assert answer["code"] != "internal_error", answer


async def fuzz_stream(gw: Gateway, next_message: Callable[[], bytes | str]) -> Counter[str]:
    codes: Counter[str] = Counter()
    batch = 250
    for _ in range(WS_CASES // batch):  # a few connections, each sent a burst
        async with gw.client.ws_connect(STREAM_PATH, headers=gw.headers()) as ws:
            for _ in range(batch):
                message = next_message()
                if isinstance(message, str):
                    await ws.send_str(message)
                else:
                    await ws.send_bytes(message)
            for _ in range(batch):
                msg = await ws.receive(timeout=20)
                assert msg.type is aiohttp.WSMsgType.TEXT, msg
                answer = json.loads(msg.data)
                names_its_fault(answer)
                codes[answer.get("code", "ack")] += 1
    return codes


async def fuzz_uploads(gw: Gateway, rng: random.Random,
                       next_message: Callable[[], bytes | str]) -> Counter[int]:
    statuses: Counter[int] = Counter()
    for _ in range(UPLOADS):
        frames = [m for m in (next_message() for _ in range(rng.randint(0, 12)))
                  if isinstance(m, bytes)]
        body = b"".join(UPLOAD_PREFIX.pack(len(m)) + m for m in frames)
        tail = rng.random()
        if tail < 0.15:
            body += rng.randbytes(rng.randint(1, 40))  # a broken last frame
        elif tail < 0.25:
            body += UPLOAD_PREFIX.pack(rng.randrange(2**32))  # a wild length
        resp = await gw.client.post(UPLOAD_PATH, data=body, headers=gw.headers())
        statuses[resp.status] += 1
        answer = await resp.json()
        assert resp.status in (200, 413, 422, 429), (resp.status, answer)
        if resp.status != 200:
            assert answer["rejected"] or answer.get("code"), answer
        for r in answer["rejected"]:
            assert r["code"] and r["reason"] and r["code"] != "internal_error", r
        assert answer["accepted"] + answer["duplicates"] + answer["rejected_count"] \
            == answer["frames"], answer
    return statuses


async def test_fuzzing_both_endpoints_finds_no_crash(
    stack_settings: Settings, tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    rng = random.Random(SEED)
    next_message = mutator(rng)
    async with running_gateway(stack_settings, tmp_path) as gw:
        codes = await fuzz_stream(gw, next_message)
        statuses = await fuzz_uploads(gw, rng, next_message)
        resp = await gw.client.get(HEALTH_PATH)
        assert resp.status == 200
        async with gw.client.ws_connect(STREAM_PATH, headers=gw.headers()) as ws:
            good = encode_chunk(make_chunk(0, session="after-fuzz"))
            await ws.send_bytes(good)
            assert json.loads(await ws.receive_str(timeout=10)) == {"type": "ack",
                                                                      "sequence": 0}
    assert sum(codes.values()) == WS_CASES
    # the fuzzer reached the decoder's and the validator's checks, not only the checksum
    assert {"ack", "bad_checksum", "bad_magic", "unsupported_version", "too_large",
            "expected_binary", "truncated", "off_timeline"} <= set(codes), codes
    assert len(codes) >= 12, codes
    assert statuses[422] > 0 and statuses[200] > 0, statuses
    assert not [r for r in caplog.records if r.levelname in ("ERROR", "CRITICAL")]
