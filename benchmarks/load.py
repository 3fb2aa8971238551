"""Benchmark input: chunk messages of many patients, and the topic they are pre-loaded into.

Patients wear recordings from a pool: simulated walkers of a clinic population
(``simulator.run.default_profiles``: half like people with MS, walking bouts and pauses)
and, where ``../shared/data`` is present, stretches of the real Mobilise-D MS recording.
Each patient has ids of its own, so the processor sees as many sessions as patients; each
session ends with the end flag. Messages are interleaved by device time, as live devices
send them, with the gateway's headers.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import numpy as np
from aiokafka import AIOKafkaProducer

from justwalk.config import Settings
from justwalk.device_protocol import DeviceCredential
from justwalk.simulator.device import make_chunks
from justwalk.simulator.gait_model import synthesize
from justwalk.simulator.run import default_profiles
from justwalk.wire import chunk_headers, encode_chunk

CLINIC = "clinic-bench"
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
Message = tuple[bytes, bytes, list[tuple[str, bytes]]]


def recording_pool(duration_s: float, n_simulated: int = 40, seed: int = 5
                   ) -> list[np.ndarray]:
    """(n, 6) float32 recordings at 100 Hz of ``duration_s``: simulated and real."""
    rng = np.random.default_rng(seed)
    pool = [synthesize(p, duration_s, 100.0, np.random.default_rng([seed, i]))
            .samples.astype(np.float32)
            for i, p in enumerate(default_profiles(n_simulated, rng))]
    mat = SHARED / "mobilised" / "data" / "lab" / "MS" / "001" / "data.mat"
    if mat.is_file():
        from justwalk.simulator.replay import load_recording

        real = load_recording(mat, "Test11", "Trial1")
        if real.sample_rate_hz == 100.0:
            n = round(duration_s * 100)
            pool += [real.samples[k:k + n] for k in range(0, real.samples.shape[0] - n + 1, n)]
    return pool


def messages(n_patients: int, duration_s: float, chunk_s: float, pool: list[np.ndarray],
             *, start_us: int | None = None) -> list[Message]:
    """Every chunk of ``n_patients`` patients, interleaved by device time."""
    start_us = start_us if start_us is not None else time.time_ns() // 1000 - round(
        duration_s * 1e6)
    headers = chunk_headers(CLINIC, 0)
    timed: list[tuple[int, int, Message]] = []
    for i in range(n_patients):
        pid = f"pt-{i:05d}"
        cred = DeviceCredential(f"dev-{i:05d}", pid, CLINIC, "unused")
        for c in make_chunks(cred, pool[i % len(pool)], start_us=start_us,
                             sample_rate_hz=100.0, session_id=f"{pid}-bench",
                             chunk_s=chunk_s):
            timed.append((c.t0_us, i, (pid.encode(), encode_chunk(c), headers)))
    timed.sort(key=lambda x: (x[0], x[1]))
    return [m for _, _, m in timed]


async def preload(settings: Settings, topic: str, msgs: list[Message]) -> None:
    """Put ``msgs`` into ``topic`` (keyed by patient, as the gateway does)."""
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all",
                                linger_ms=20, max_batch_size=1 << 20,
                                max_request_size=8 << 20)
    await producer.start()
    try:
        for i, (key, value, headers) in enumerate(msgs):
            await producer.send(topic, value, key=key, headers=headers)
            if i % 20_000 == 19_999:
                await producer.flush()
        await producer.flush()
    finally:
        await producer.stop()


def run_async(coro):  # type: ignore[no-untyped-def]
    """``asyncio.run`` (the benchmark's steps are synchronous around child processes)."""
    return asyncio.run(coro)
