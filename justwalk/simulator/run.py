"""Simulated patients and recording replays streamed to a gateway.

CLI entry points, and the async building blocks the demo and the integration tests reuse.

Each patient gets its own random generator, ``numpy.random.default_rng([seed, index])``, so
patient *i*'s signal depends only on the seed, its index and its profile.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import ssl
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import numpy as np

from justwalk.config import Settings
from justwalk.device_protocol import DeviceCredential, load_credentials
from justwalk.simulator.device import (
    DEFAULT_CHUNK_S,
    DeviceStats,
    TrainingScript,
    stream_samples,
    upload_recording,
)
from justwalk.simulator.events import InjectedEvent, with_random_events
from justwalk.simulator.gait_model import (
    MIN_PAUSE_S,
    GaitProfile,
    RandomSchedule,
    SyntheticRecording,
    synthesize,
)
from justwalk.simulator.replay import Recording, load_recording
from justwalk.simulator.truth import PatientTruth, patient_truth, write_truth

log = logging.getLogger(__name__)

DEFAULT_SAMPLE_RATE_HZ = 100.0


@dataclass(frozen=True)
class SimulatedPatient:
    """A patient's device, synthetic recording and ground truth."""

    credential: DeviceCredential
    recording: SyntheticRecording
    truth: PatientTruth


@dataclass(frozen=True)
class SimulationResult:
    """Ground truth and device statistics of a simulation run, one entry per patient."""

    truths: list[PatientTruth]
    stats: list[DeviceStats]

    @property
    def ok(self) -> bool:
        """Every chunk of every device was acknowledged, none rejected."""
        return all(s.completed and not s.errors and s.acked == s.chunks for s in self.stats)


def default_gateway_url(settings: Settings) -> str:
    """The gateway's base URL from the settings."""
    return f"http://{settings.gateway_host}:{settings.gateway_port}"


def default_profiles(n: int, rng: np.random.Generator) -> list[GaitProfile]:
    """A varied clinic population of ``n`` walkers.

    About half walk like people with MS: slower (80-105 steps/min), with a step-time CV of
    4-9 % and a left/right step-time asymmetry of 4-15 % (Socie & Sosnoff 2013, Mult Scler
    Int 2013:645197, review higher gait variability in MS); the others are like healthy older
    adults (100-125 steps/min, CV 1.5-3 %, asymmetry under 3 %). The vertical acceleration
    grows with cadence; schedules alternate walking bouts of 10-90 s with standing pauses.
    """
    profiles = []
    for _ in range(n):
        if rng.random() < 0.5:
            cadence = rng.uniform(80.0, 105.0)
            cv = rng.uniform(0.04, 0.09)
            asymmetry = float(rng.choice([-1.0, 1.0])) * rng.uniform(0.04, 0.15)
        else:
            cadence = rng.uniform(100.0, 125.0)
            cv = rng.uniform(0.015, 0.03)
            asymmetry = rng.uniform(-0.03, 0.03)
        schedule = RandomSchedule(
            bout_s=(float(rng.uniform(10.0, 20.0)), float(rng.uniform(30.0, 90.0))),
            pause_s=(MIN_PAUSE_S + 1.0, float(rng.uniform(8.0, 25.0))),
            first_start_s=(0.5, 4.0),
        )
        profiles.append(
            GaitProfile(
                cadence_spm=float(cadence),
                step_time_cv=float(cv),
                asymmetry=float(asymmetry),
                vertical_acc_pp_mps2=float(np.clip(3.0 * (cadence / 110.0) ** 2, 1.5, 4.0)),
                walking_s=schedule,
                tilt_pitch_deg=float(rng.uniform(0.0, 20.0)),
                tilt_roll_deg=float(rng.uniform(-6.0, 3.0)),
                acc_noise_mps2=float(rng.uniform(0.03, 0.08)),
                gyr_noise_radps=float(rng.uniform(0.005, 0.015)),
                sensor_height_m=float(rng.uniform(0.9, 1.1)),
            )
        )
    return profiles


def default_profiles_with_events(
    n: int,
    n_events: int,
    duration_s: float,
    rng: np.random.Generator,
    *,
    fall_fraction: float = 0.5,
) -> list[GaitProfile]:
    """``default_profiles(n, rng)`` with ``n_events`` near-falls and falls while walking.

    Schedules are fixed and events placed by ``events.with_random_events`` (20 s apart, 6 s
    inside a bout; a fall is a patient's last event and the patient lies until the end).
    """
    return with_random_events(default_profiles(n, rng), n_events, duration_s, rng,
                              fall_fraction=fall_fraction)


def prepare_patients(
    credentials: Sequence[DeviceCredential],
    profiles: Sequence[GaitProfile],
    duration_s: float,
    *,
    start_us: int,
    window_s: float,
    seed: int,
    sample_rate_hz: float = DEFAULT_SAMPLE_RATE_HZ,
    events: Sequence[Sequence[InjectedEvent]] | None = None,
) -> list[SimulatedPatient]:
    """Synthesize one recording per profile (credential *i* wears profile *i*) with truth.

    ``events[i]``, if given, replaces profile *i*'s injected events (``GaitProfile.events``);
    their truth is in ``SimulatedPatient.truth.events`` on the device clock.
    """
    if len(profiles) > len(credentials):
        raise ValueError(f"{len(profiles)} profiles but only {len(credentials)} devices")
    if events is not None:
        if len(events) != len(profiles):
            raise ValueError(f"{len(events)} event schedules for {len(profiles)} profiles")
        profiles = [dataclasses.replace(p, events=tuple(e))
                    for p, e in zip(profiles, events, strict=True)]
    out = []
    for i, (cred, profile) in enumerate(zip(credentials, profiles, strict=False)):
        rec = synthesize(profile, duration_s, sample_rate_hz, np.random.default_rng([seed, i]))
        truth = patient_truth(cred.patient_id, cred.device_id, profile, rec,
                              start_us=start_us, window_s=window_s)
        out.append(SimulatedPatient(cred, rec, truth))
    return out


async def stream_patients(
    gateway_url: str,
    patients: Sequence[SimulatedPatient],
    *,
    speed: float,
    chunk_s: float = DEFAULT_CHUNK_S,
    session_id: str | None = None,
    ssl_context: ssl.SSLContext | None = None,
    training: TrainingScript | None = None,
) -> list[DeviceStats]:
    """Stream every patient's recording concurrently, one device each.

    ``ssl_context`` verifies an ``https://`` gateway (default: the system's CAs);
    ``training``: the training session each device starts (``SimulatedDevice``).
    """
    # one WebSocket per device, no pool limit
    connector = aiohttp.TCPConnector(limit=0, ssl=ssl_context or True)
    async with aiohttp.ClientSession(connector=connector) as http:
        return list(
            await asyncio.gather(
                *(
                    stream_samples(
                        gateway_url, p.credential, p.recording.samples,
                        start_us=p.truth.start_us, sample_rate_hz=p.recording.sample_rate_hz,
                        chunk_s=chunk_s, speed=speed,
                        session_id=session_id or f"sim-{p.truth.start_us}", http=http,
                        training=training,
                    )
                    for p in patients
                )
            )
        )


async def stream_simulated_patients(
    gateway_url: str,
    credentials: list[DeviceCredential],
    profiles: list[GaitProfile],
    duration_s: float,
    *,
    speed: float,
    start_us: int,
    window_s: float,
    seed: int,
    chunk_s: float = DEFAULT_CHUNK_S,
    sample_rate_hz: float = DEFAULT_SAMPLE_RATE_HZ,
    events: Sequence[Sequence[InjectedEvent]] | None = None,
) -> SimulationResult:
    """Simulate ``len(profiles)`` patients and stream them to the gateway at once.

    Every recording starts at device time ``start_us``; ``window_s`` is the cadence window
    of the truth (``Settings.cadence_window_s``). Injected events come from the profiles or
    from ``events`` (see ``prepare_patients``); their truth is in ``truths[i].events``.
    """
    patients = prepare_patients(credentials, profiles, duration_s, start_us=start_us,
                                window_s=window_s, seed=seed, sample_rate_hz=sample_rate_hz,
                                events=events)
    stats = await stream_patients(gateway_url, patients, speed=speed, chunk_s=chunk_s)
    return SimulationResult(truths=[p.truth for p in patients], stats=stats)


async def stream_recording(
    gateway_url: str,
    credential: DeviceCredential,
    recording: Recording,
    *,
    speed: float,
    chunk_s: float = DEFAULT_CHUNK_S,
    session_id: str | None = None,
    http: aiohttp.ClientSession | None = None,
) -> DeviceStats:
    """Stream a real recording live, on its own device clock (``recording.t0_us``)."""
    return await stream_samples(
        gateway_url, credential, recording.samples, start_us=recording.t0_us,
        sample_rate_hz=recording.sample_rate_hz, chunk_s=chunk_s, speed=speed,
        session_id=session_id or f"replay-{recording.t0_us}", http=http,
    )


def simulation_start_us(now_us: int, duration_s: float, speed: float) -> int:
    """Device start time so that no chunk is stamped ahead of the wall clock.

    In real time the recording starts now; faster, it starts early enough that the last
    sample is due about when it is sent; as fast as possible, it ends now.
    """
    lead_s = duration_s if speed <= 0 else duration_s * max(0.0, 1.0 - 1.0 / speed)
    return now_us - round(lead_s * 1e6)


def _parse_cadences(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x.strip()]


def _stats_table(rows: Sequence[Sequence[str]], header: Sequence[str]) -> str:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(lines)


def _status(s: DeviceStats) -> str:
    if s.completed and not s.errors:
        return "ok"
    if s.errors:
        return ",".join(f"{k}x{v}" for k, v in s.error_codes.items())
    return f"incomplete ({s.unanswered} unanswered)"


def _tls(args: argparse.Namespace) -> ssl.SSLContext | None:
    """``--ca-file``: trust that CA (PEM) alone for an https:// gateway."""
    ca_file = getattr(args, "ca_file", None)
    return None if ca_file is None else ssl.create_default_context(cafile=str(ca_file))


def simulate_main(args: argparse.Namespace, settings: Settings) -> int:
    """``justwalk simulate``: stream simulated patients; 0 when every chunk was acked."""
    credentials = load_credentials(args.devices)
    if args.patients < 1:
        print("--patients must be at least 1")
        return 2
    if args.patients > len(credentials):
        print(f"{args.devices} holds {len(credentials)} devices; --patients is {args.patients}")
        return 2
    profiles = default_profiles(args.patients, np.random.default_rng(args.seed))
    fatigue = float(getattr(args, "fatigue", 0.0) or 0.0)
    training = None
    if getattr(args, "training", None):
        training = TrainingScript(args.training, start_s=5.0,
                                  prescription_id=getattr(args, "prescription", None))
        # a walk test is walked without pauses
        profiles = [dataclasses.replace(p, walking_s=((4.0, args.duration),)) for p in profiles]
    cadences = _parse_cadences(args.cadences or "")
    if len(cadences) > args.patients:
        print(f"{len(cadences)} cadences given for {args.patients} patients")
        return 2
    try:
        for i, c in enumerate(cadences):
            profiles[i] = dataclasses.replace(profiles[i], cadence_spm=c)
        if fatigue:
            profiles = [dataclasses.replace(p, speed_decline_pct_per_min=fatigue)
                        for p in profiles]
    except ValueError as e:
        print(f"--cadences: {e}")
        return 2
    gateway_url = args.gateway_url or default_gateway_url(settings)
    chunk_s = float(getattr(args, "chunk_s", DEFAULT_CHUNK_S))
    start_us = simulation_start_us(time.time_ns() // 1000, args.duration, args.speed)
    patients = prepare_patients(credentials, profiles, args.duration, start_us=start_us,
                                window_s=settings.cadence_window_s, seed=args.seed)
    if args.truth is not None:
        write_truth(Path(args.truth), [p.truth for p in patients], seed=args.seed,
                    speed=args.speed, chunk_s=chunk_s, gateway_url=gateway_url)
        log.info("ground truth written to %s", args.truth)
    log.info("streaming %d patients x %.0f s to %s at speed %s", len(patients),
             args.duration, gateway_url, args.speed)
    stats = asyncio.run(stream_patients(gateway_url, patients, speed=args.speed,
                                        chunk_s=chunk_s, ssl_context=_tls(args),
                                        training=training))
    for s in stats:
        for answer in s.session_answers:
            print(f"{s.device_id}: {answer}")
        for at_us, msg in s.feedback:
            delay = "" if msg.get("received_at_us") is None else \
                f" ({(at_us - msg['received_at_us']) / 1e3:.0f} ms after its chunk)"
            print(f"{s.device_id}: feedback {msg['kind']}: {msg['text']}{delay}")
    rows = []
    for p, s in zip(patients, stats, strict=True):
        mean = p.truth.mean_cadence_spm
        rows.append((p.credential.patient_id, p.credential.device_id,
                     f"{p.truth.profile.cadence_spm:.1f}",
                     "-" if mean is None else f"{mean:.1f}", str(len(p.truth.step_times_us)),
                     str(s.chunks), str(s.acked), str(s.duplicates), str(s.reconnects),
                     _status(s)))
    print(_stats_table(rows, ("patient", "device", "profile_spm", "true_spm", "steps",
                              "chunks", "acked", "dup", "reconn", "status")))
    result = SimulationResult([p.truth for p in patients], stats)
    return 0 if result.ok else 1


def replay_main(args: argparse.Namespace, settings: Settings) -> int:
    """``justwalk replay``: stream (or upload) a Mobilise-D recording; 0 when all acked.

    The recording is re-stamped to the current time unless ``--keep-clock`` is given.
    """
    credentials = load_credentials(args.devices)
    cred = next((c for c in credentials if c.patient_id == args.patient_id), None)
    if cred is None:
        print(f"no device for patient {args.patient_id!r} in {args.devices}; have: "
              + ", ".join(sorted(c.patient_id for c in credentials)))
        return 2
    try:
        rec = load_recording(args.recording, args.test, args.trial)
    except (KeyError, ValueError, OSError) as e:
        print(f"cannot load {args.recording} {args.test}/{args.trial}: {e}")
        return 2
    if not getattr(args, "keep_clock", False):
        # The recordings are from 2020 and the gateway refuses data older than
        # max_upload_age_s, so by default the replay happens now: an upload carries past
        # data; a live stream must not run ahead of the wall clock.
        speed = 0.0 if getattr(args, "upload", False) else args.speed
        rec = rec.restamped(simulation_start_us(time.time_ns() // 1000, rec.duration_s, speed))
    gateway_url = args.gateway_url or default_gateway_url(settings)
    chunk_s = float(getattr(args, "chunk_s", DEFAULT_CHUNK_S))
    if rec.reference is not None:
        cads = ", ".join(f"{b.cadence_spm:.0f}" for b in rec.reference.bouts)
        print(f"{rec.participant} {rec.test}/{rec.trial}: {rec.duration_s:.1f} s, "
              f"{rec.reference.system} bouts: {len(rec.reference.bouts)} (cadence {cads})")
    tls = _tls(args)

    async def send() -> DeviceStats:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=tls or True)) as http:
            if getattr(args, "upload", False):
                return await upload_recording(
                    gateway_url, cred, rec.samples, start_us=rec.t0_us,
                    sample_rate_hz=rec.sample_rate_hz, chunk_s=chunk_s,
                    session_id=f"replay-{rec.t0_us}", http=http)
            return await stream_recording(gateway_url, cred, rec, speed=args.speed,
                                          chunk_s=chunk_s, http=http)

    stats = asyncio.run(send())
    print(_stats_table(
        [(cred.patient_id, cred.device_id, str(stats.chunks), str(stats.acked),
          str(stats.duplicates), str(stats.reconnects), _status(stats))],
        ("patient", "device", "chunks", "acked", "dup", "reconn", "status")))
    ok = stats.completed and not stats.errors and stats.acked == stats.chunks
    return 0 if ok else 1
