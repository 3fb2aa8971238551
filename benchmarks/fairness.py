"""The gateway's fair share: other devices' acks while one device floods it with uploads.

    .venv/bin/python -m benchmarks.fairness [--devices 50] [--seconds 15] [--flood both|empty|big]

Starts Tansu and the real gateway (``justwalk gateway``, a child process, as production
runs it), then measures in one run, one phase after the other:

1. quiet: ``--devices`` devices stream 0.5 s chunks over WebSockets in real time for
   ``--seconds``; each chunk's ack latency (sent -> ack), and ``/healthz`` every 0.2 s;
2. flood: the same devices and health checks again, while one more device (in a process
   of its own) runs two uploads at once, each back to back: 1 MiB bodies of zero-length
   frames (262,144 frames each), and 64 MiB bodies (the size limit) of real chunks;
3. in each phase, the gateway's CPU time and log lines written; the flooder's answers
   (status counts, largest size, time to answer).

Prints one table. Nothing but 127.0.0.1 is contacted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import shutil
import socket
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from multiprocessing import Queue, get_context
from pathlib import Path

import aiohttp
import numpy as np

from ingest.registry import provision
from justwalk import procs
from justwalk.config import Settings, child_env
from justwalk.device_protocol import (
    HEALTH_PATH,
    STREAM_PATH,
    UPLOAD_PATH,
    DeviceCredential,
    auth_headers,
)
from justwalk.kafka_topics import ensure_topics
from justwalk.localstack import LocalStack
from justwalk.wire import ImuChunk, Placement, encode_chunk, frame_upload

FS = 100.0
CHUNK = 50  # samples: 0.5 s


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _chunk(device: str, patient: str, session: str, seq: int, t0_us: int) -> bytes:
    samples = np.zeros((CHUNK, 6), dtype=np.float32)
    samples[:, 0] = 9.81
    samples[:, 1] = np.sin(np.arange(CHUNK) / 10.0)
    return encode_chunk(ImuChunk(patient, device, session, seq, t0_us, FS,
                                 Placement.LOWER_BACK, samples))


@dataclass
class Phase:
    """What one phase measured."""

    name: str
    acks_ms: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    unanswered: int = 0
    health_ms: list[float] = field(default_factory=list)
    health_failed: int = 0
    log_lines: int = 0
    log_bytes: int = 0
    gateway_cpu_s: float = 0.0
    wall_s: float = 0.0
    flood: list[tuple[str, int, int, float]] = field(default_factory=list)
    """(case, status, answer bytes, seconds to answer) of each flooder request."""


async def _device(ws: aiohttp.ClientWebSocketResponse, ids: tuple[str, str], session: str,
                  seconds: float, phase: Phase) -> None:
    """Stream 0.5 s chunks in real time on an open socket; record each chunk's ack latency.

    The latency runs from the moment the chunk is ready (its last sample recorded, on the
    schedule that starts now), so a chunk sent late because the gateway is stuck counts.
    """
    device, patient = ids
    sent: dict[int, float] = {}
    n = int(seconds / 0.5)
    start_us = time.time_ns() // 1000 - 1_000_000
    t0 = time.perf_counter()

    async def receive() -> None:
        async for msg in ws:
            if msg.type is not aiohttp.WSMsgType.TEXT:
                break
            answer = json.loads(msg.data)
            at = time.perf_counter()
            seq = answer.get("sequence")
            if answer["type"] == "ack" and seq in sent:
                phase.acks_ms.append((at - sent.pop(seq)) * 1e3)
            else:
                phase.errors[str(answer.get("code"))] += 1
                sent.pop(seq, None)
            if len(sent) == 0 and seq == n - 1:
                return

    receiver = asyncio.create_task(receive())
    for k in range(n):
        ready = t0 + k * 0.5
        await asyncio.sleep(max(0.0, ready - time.perf_counter()))
        data = _chunk(device, patient, session, k, start_us + k * 500_000)
        sent[k] = ready
        await ws.send_bytes(data)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(receiver, 60)
    phase.unanswered += len(sent)
    receiver.cancel()
    await ws.close()


async def _health(http: aiohttp.ClientSession, base: str, stop: asyncio.Event,
                  phase: Phase) -> None:
    while not stop.is_set():
        started = time.perf_counter()
        try:
            async with http.get(base + HEALTH_PATH,
                                timeout=aiohttp.ClientTimeout(total=30)) as resp:
                await resp.read()
                ok = resp.status == 200
        except (aiohttp.ClientError, TimeoutError):
            ok = False
        phase.health_ms.append((time.perf_counter() - started) * 1e3)
        phase.health_failed += not ok
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.2)


def _flooder(base: str, token: str, ids: tuple[str, str], max_bytes: int, seconds: float,
             cases: str, linger_s: float, out: Queue) -> None:
    """The flooding device: uploads back to back for ``seconds``; its answers into ``out``.

    It runs in a process of its own, so that its sending does not delay the measuring loop.
    Requests still running ``linger_s`` after the end are cut (counted with status 0).
    """

    async def flood() -> list[tuple[str, int, int, float]]:
        per = len(_chunk(*ids, "flood-64", 0, 0)) + 4
        n_big = max_bytes // per
        start_us = time.time_ns() // 1000 - n_big * 500_000
        big = frame_upload([_chunk(*ids, "flood-64", k, start_us + k * 500_000)
                            for k in range(n_big)])
        zeros = bytes(1024 * 1024)
        headers = auth_headers(token)
        answers: list[tuple[str, int, int, float]] = []
        deadline = time.perf_counter() + seconds

        async def post(http: aiohttp.ClientSession, case: str, body: bytes) -> int:
            started = time.perf_counter()
            async with http.post(base + UPLOAD_PATH, data=body, headers=headers) as resp:
                answer = await resp.read()
                answers.append((case, resp.status, len(answer), time.perf_counter() - started))
                return resp.status

        async def loop(http: aiohttp.ClientSession, case: str, body: bytes) -> None:
            while (left := deadline - time.perf_counter()) > 0:
                try:
                    status = await asyncio.wait_for(post(http, case, body), left + linger_s)
                except TimeoutError:
                    answers.append((case, 0, 0, 0.0))
                    return
                if status == 429 and case.startswith("64"):
                    await asyncio.sleep(0.5)  # Retry-After says more; a flooder does not wait

        async with aiohttp.ClientSession() as http:
            # two uploads at once, as many as a device may run
            loops = []
            if cases in ("both", "empty"):
                loops.append(loop(http, "1 MiB empty frames", zeros))
            if cases in ("both", "big"):
                loops.append(loop(http, "64 MiB of chunks", big))
            await asyncio.gather(*loops)
        return answers

    out.put(asyncio.run(flood()))


def _cpu_s(pid: int) -> float:
    """CPU time (user + system) of a process so far, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _log_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes() if path.exists() else b""
    return data.count(b"\n"), len(data)


async def _phase(name: str, base: str, creds: list[DeviceCredential], seconds: float,
                 log_path: Path, gateway_pid: int, flood_bytes: int | None,
                 cases: str = "both", linger_s: float = 0.0) -> Phase:
    phase = Phase(name)
    lines0, bytes0 = _log_size(log_path)
    stop = asyncio.Event()
    flooder = None
    if flood_bytes is not None:
        out: Queue = get_context("spawn").Queue()
        f = creds[-1]
        flooder = get_context("spawn").Process(target=_flooder, args=(
            base, f.token, (f.device_id, f.patient_id), flood_bytes, seconds + 3, cases,
            linger_s, out))
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as http:
        sockets = [await http.ws_connect(base + STREAM_PATH, headers=auth_headers(c.token))
                   for c in creds[:-1]]  # connected first: the phase measures acks only
        if flooder is not None:
            flooder.start()
            await asyncio.sleep(3.0)  # started, its 64 MiB body built, the flood on
        cpu0, wall0 = _cpu_s(gateway_pid), time.perf_counter()
        health = asyncio.create_task(_health(http, base, stop, phase))
        devices = [asyncio.create_task(_device(ws, (c.device_id, c.patient_id),
                                               f"{name}-{c.device_id}", seconds, phase))
                   for ws, c in zip(sockets, creds[:-1], strict=True)]
        await asyncio.gather(*devices)
        stop.set()
        await health
        phase.gateway_cpu_s = _cpu_s(gateway_pid) - cpu0
        phase.wall_s = time.perf_counter() - wall0
    if flooder is not None:
        phase.flood = await asyncio.to_thread(out.get, True, 120 + linger_s)
        flooder.join(30)
    lines1, bytes1 = _log_size(log_path)
    phase.log_lines, phase.log_bytes = lines1 - lines0, bytes1 - bytes0
    return phase


def _pct(values: list[float], q: float) -> str:
    return f"{np.percentile(values, q):.1f}" if values else "-"


def report(phases: list[Phase], devices: int, seconds: float) -> str:
    """The table."""
    rows = [("", *(p.name for p in phases))]

    def row(label: str, f: object) -> None:
        rows.append((label, *(str(f(p)) for p in phases)))  # type: ignore[operator]

    row("other devices' acks", lambda p: len(p.acks_ms))
    row("  ack latency p50 (ms)", lambda p: _pct(p.acks_ms, 50))
    row("  ack latency p99 (ms)", lambda p: _pct(p.acks_ms, 99))
    row("  ack latency max (ms)", lambda p: _pct(p.acks_ms, 100))
    row("  errors / unanswered", lambda p: f"{sum(p.errors.values())} / {p.unanswered}")
    row("health checks (failed)", lambda p: f"{len(p.health_ms)} ({p.health_failed})")
    row("  health p50 / max (ms)", lambda p: f"{_pct(p.health_ms, 50)} / "
        f"{_pct(p.health_ms, 100)}")
    row("gateway CPU (% of one core)",
        lambda p: f"{100 * p.gateway_cpu_s / p.wall_s:.0f}" if p.wall_s else "-")
    row("gateway log lines (bytes)", lambda p: f"{p.log_lines} ({p.log_bytes})")
    for case in ("1 MiB empty frames", "64 MiB of chunks"):
        def statuses(p: Phase, case: str = case) -> str:
            c = Counter(s for k, s, _, _ in p.flood if k == case)
            return ", ".join(f"{n}x{s}" for s, n in sorted(c.items())) or "-"

        def sizes(p: Phase, case: str = case) -> str:
            got = [(b, t) for k, _, b, t in p.flood if k == case]
            if not got:
                return "-"
            return (f"{max(b for b, _ in got)} B, "
                    f"{np.median([t for _, t in got]) * 1e3:.0f}/"
                    f"{max(t for _, t in got) * 1e3:.0f} ms")

        row(f"flooder: {case}", statuses)
        row("  answer max size, time p50/max", sizes)
    row("flooder 429 answers", lambda p: sum(1 for _, s, _, _ in p.flood if s == 429))
    row("flooder requests cut at the end", lambda p: sum(1 for _, s, _, _ in p.flood if s == 0))
    width = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = [f"Gateway fair share: {devices} devices streaming 0.5 s chunks for {seconds:g} s "
             f"per phase; {platform.machine()}, {os.cpu_count()} cores, Python "
             f"{platform.python_version()}"]
    for i, r in enumerate(rows):
        lines.append("  ".join(c.ljust(width[j]) if j == 0 else c.rjust(width[j])
                               for j, c in enumerate(r)))
        if i == 0:
            lines.append("  ".join("-" * w for w in width))
    return "\n".join(lines)


async def _run(settings: Settings, work: Path, devices: int, seconds: float,
               cases: str, linger_s: float) -> list[Phase]:
    creds = provision(work / "devices.json", work / "creds.json",
                      [(f"dev-{i}", f"pt-{i:04d}", "clinic-bench") for i in range(devices + 1)])
    await ensure_topics(settings)
    log_path = work / "gateway.log"
    cmd = [sys.executable, "-m", "justwalk.cli", "--log-level", "info", "gateway"]
    gateway = procs.spawn(cmd, log_path=log_path, env=child_env(settings))
    base = f"http://{settings.gateway_host}:{settings.gateway_port}"
    try:
        async with aiohttp.ClientSession() as http:
            for _ in range(300):
                if gateway.poll() is not None:
                    raise RuntimeError("gateway exited:\n" + procs.log_tail(log_path))
                with contextlib.suppress(aiohttp.ClientError):
                    async with http.get(base + HEALTH_PATH) as resp:
                        if resp.status == 200:
                            break
                await asyncio.sleep(0.2)
        print(f"quiet phase ({seconds:g} s) ...", flush=True)
        quiet = await _phase("quiet", base, creds, seconds, log_path, gateway.pid, None)
        print(f"flood phase ({seconds:g} s) ...", flush=True)
        flood = await _phase("flood", base, creds, seconds, log_path, gateway.pid,
                             settings.max_upload_bytes, cases, linger_s)
        return [quiet, flood]
    finally:
        procs.stop(gateway)


def main() -> None:
    """Run both phases and print the table."""
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--devices", type=int, default=50)
    ap.add_argument("--seconds", type=float, default=15.0)
    ap.add_argument("--flood", choices=["both", "empty", "big"], default="both",
                    help="which uploads the flooder sends (default: both at once)")
    ap.add_argument("--wait-flood", type=float, default=0.0, metavar="S",
                    help="after the phase, wait up to S seconds for the flooder's answers")
    ap.add_argument("--keep-log", type=Path, default=None,
                    help="copy the gateway's log here")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="justwalk-fairness-") as tmp:
        work = Path(tmp)
        stack = LocalStack(log_dir=work / "stack-logs", workdir=work / "stack")
        stack.start()
        try:
            settings = stack.settings(Settings()).replace(
                gateway_port=_free_port(), device_registry=work / "devices.json")
            phases = asyncio.run(_run(settings, work, args.devices, args.seconds, args.flood,
                                      args.wait_flood))
        finally:
            stack.stop()
            if args.keep_log is not None and (work / "gateway.log").exists():
                shutil.copyfile(work / "gateway.log", args.keep_log)
    print()
    print(report(phases, args.devices, args.seconds))


if __name__ == "__main__":
    main()
