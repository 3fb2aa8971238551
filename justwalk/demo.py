"""``make demo``: the whole pipeline on this machine, with a live per-patient table.

Starts the local broker and InfluxDB, provisions one device per patient, runs the gateway,
a processor and the sink as child processes (the same commands production runs), streams
simulated patients and one real MS recording through the gateway in real time, and shows
what InfluxDB holds for each patient every second. Stops everything it started on exit.

InfluxDB runs with authentication on, as in production: the sink writes as the admin into
the demo clinic's own database, and the table reads it as that clinic's read user (made the
way ``justwalk influx setup`` makes it), which can read nothing else.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import secrets
import signal
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table

from justwalk.alert_receiver import AlertReceiver, ReceivedAlert, channels_for
from justwalk.config import Settings
from justwalk.demo_records import prepare_database, write_report
from justwalk.device_protocol import DeviceCredential
from justwalk.gait.cadence import window_start
from justwalk.kafka_topics import ensure_topics
from justwalk.localstack import LocalStack, StackError
from justwalk.pipeline import Pipeline
from justwalk.schema import MEASUREMENT_GAIT_WINDOW, MEASUREMENT_STEP, clinic_database, qualified
from justwalk.simulator.device import SimulatedDevice, TrainingScript
from justwalk.simulator.run import SimulatedPatient
from sinks.influx_access import ReadUser, setup_clinics

CLINIC_ID = "clinic-demo"
REPLAY_PATIENT = "pt-ms-001"
DEFAULT_RECORDING = Path(__file__).resolve().parents[2] / "shared" / "data" / "mobilised" / (
    "data/lab/MS/001/data.mat")
SEGMENT_S = 300.0  # an open-ended demo synthesises this much signal at a time
STALE_S = 15.0


@dataclass
class PatientRow:
    """What the table shows for one patient."""

    patient_id: str
    kind: str
    steps: int = 0
    cadence_spm: float | None = None
    walking: bool | None = None
    last_us: int | None = None
    mean_cadence_spm: float | None = None
    true_cadence_spm: float | None = None
    training: str = ""
    """The training session the patient's device runs (empty: none)."""
    feedback: str = ""
    """The last feedback message the patient's device received."""
    n_feedback: int = 0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def read_patients(client: Any, rows: dict[str, PatientRow]) -> None:
    """Fill ``rows`` from InfluxDB: steps, last window's cadence and state, last update."""
    step, win = qualified(MEASUREMENT_STEP), qualified(MEASUREMENT_GAIT_WINDOW)
    q = (
        f'SELECT count("step_index") FROM {step} GROUP BY "patient_id";'
        f'SELECT last("step_index") FROM {step} GROUP BY "patient_id";'
        f'SELECT last("walking") FROM {win} GROUP BY "patient_id";'
        f'SELECT last("cadence_spm") FROM {win} GROUP BY "patient_id";'
        f'SELECT mean("cadence_spm") FROM {win} WHERE "walking" = true GROUP BY "patient_id"'
    )
    from sinks.influx import result_rows

    results = await client.query(q, epoch="u")
    counts, last_steps, states, cadences, means = (result_rows(r) for r in results)
    for r in counts:
        _row(rows, r["patient_id"]).steps = int(r["count"])
    for r in last_steps:
        row = _row(rows, r["patient_id"])
        row.last_us = max(row.last_us or 0, int(r["time"]))
    for r in states:
        row = _row(rows, r["patient_id"])
        row.walking = bool(r["last"])
        # a window is written when it closes: its end is the newest moment it describes
        row.last_us = max(row.last_us or 0, int(r["time"]))
    for r in cadences:
        _row(rows, r["patient_id"]).cadence_spm = float(r["last"])
    for r in means:
        _row(rows, r["patient_id"]).mean_cadence_spm = float(r["mean"])


def _row(rows: dict[str, PatientRow], patient_id: str) -> PatientRow:
    if patient_id not in rows:
        rows[patient_id] = PatientRow(patient_id, "?")
    return rows[patient_id]


def render(rows: dict[str, PatientRow], now_us: int, elapsed_s: float) -> Table:
    """The live table."""
    t = Table(title=f"JustWalk demo: {len(rows)} patients, {elapsed_s:.0f} s", expand=False)
    for col in ("patient", "source", "state", "cadence (steps/min)", "steps", "last update",
                "training", "feedback to the patient (last)"):
        t.add_column(col, justify="left" if col in ("patient", "source", "state", "training",
                                                    "feedback to the patient (last)")
                     else "right")
    for row in sorted(rows.values(), key=lambda r: r.patient_id):
        age_s = None if row.last_us is None else (now_us - row.last_us) / 1e6
        if age_s is None or age_s > STALE_S:
            state = "[red]no data[/red]"
        elif row.walking:
            state = "[green]walking[/green]"
        else:
            state = "[yellow]standing[/yellow]"
        cadence = "-" if row.cadence_spm is None else f"{row.cadence_spm:.1f}"
        age = "-" if age_s is None else f"{max(age_s, 0):.0f} s ago"
        feedback = f"{row.feedback[:60]} ({row.n_feedback})" if row.n_feedback else "-"
        t.add_row(row.patient_id, row.kind, state, cadence, str(row.steps), age,
                  row.training or "-", feedback)
    return t


def alerts_table(received: list[ReceivedAlert], limit: int = 8) -> Table:
    """The latest alerts that reached the clinic's webhook."""
    t = Table(title=f"Alerts delivered to the clinic webhook: {len(received)}")
    for col in ("time (UTC)", "patient", "type", "severity", "peak (g)", "latency (s)"):
        t.add_column(col)
    for r in received[-limit:]:
        a = r.alert
        when = time.strftime("%H:%M:%S", time.gmtime(a["event_start_us"] / 1e6))
        style = "red" if a["severity"] == "critical" else "yellow"
        latency = "-" if r.latency_s is None else f"{r.latency_s:.2f}"
        t.add_row(when, a["patient_id"], f"[{style}]{a['type']}[/{style}]", a["severity"],
                  f"{a['evidence'].get('peak_acc_g', '-')}", latency)
    return t


def summary_table(rows: dict[str, PatientRow], points: int) -> Table:
    """The table printed on exit."""
    t = Table(title=f"Summary: {points} points written to InfluxDB")
    for col in ("patient", "source", "steps", "mean cadence (steps/min)",
                "true mean cadence (steps/min)"):
        t.add_column(col, justify="left" if col in ("patient", "source") else "right")
    for row in sorted(rows.values(), key=lambda r: r.patient_id):
        mean = "-" if row.mean_cadence_spm is None else f"{row.mean_cadence_spm:.1f}"
        true = "-" if row.true_cadence_spm is None else f"{row.true_cadence_spm:.1f}"
        t.add_row(row.patient_id, row.kind, str(row.steps), mean, true)
    return t


def read_feedback(devices: dict[str, SimulatedDevice], rows: dict[str, PatientRow]) -> None:
    """The last feedback message each training device received, for the table."""
    for pid, device in devices.items():
        got = device.stats.feedback if device.stats is not None else []
        if got:
            body = got[-1][1]
            row = _row(rows, pid)
            row.feedback = f"{body.get('kind')}: {body.get('text', '')}"
            row.n_feedback = len(got)


async def count_points(client: Any) -> int:
    """Points in the step and gait_window measurements."""
    from sinks.influx import result_rows

    results = await client.query(
        f'SELECT count("step_index") FROM {qualified(MEASUREMENT_STEP)};'
        f'SELECT count("n_steps") FROM {qualified(MEASUREMENT_GAIT_WINDOW)}'
    )
    return sum(int(r["count"]) for res in results for r in result_rows(res))


async def _simulated(gateway_url: str, creds: list[DeviceCredential], settings: Settings,
                     duration_s: float, rows: dict[str, PatientRow],
                     injected: dict[str, int], training: dict[str, TrainingScript],
                     devices: dict[str, SimulatedDevice]) -> None:
    from justwalk.simulator.events import with_random_events
    from justwalk.simulator.run import default_profiles, prepare_patients

    rng = np.random.default_rng(7)
    profiles = default_profiles(len(creds), rng)
    segment = 0
    while True:
        length = SEGMENT_S if duration_s <= 0 else duration_s
        # a few stumbles and falls while walking: about one per patient every 200 s
        n_events = max(1, round(len(creds) * length / 200))
        try:
            seg_profiles = with_random_events(profiles, n_events, length, rng,
                                              fall_fraction=1 / 3)
        except ValueError:  # too short to place them: walk without events
            seg_profiles = profiles
        patients = prepare_patients(creds, seg_profiles, length,
                                    start_us=time.time_ns() // 1000,
                                    window_s=settings.cadence_window_s, seed=segment)
        for p in patients:
            rows[p.truth.patient_id].true_cadence_spm = p.truth.mean_cadence_spm
            for e in p.truth.events:
                injected[str(e.type)] = injected.get(str(e.type), 0) + 1
        await _stream(gateway_url, patients, training, devices)
        if duration_s > 0:
            return
        segment += 1


async def _stream(gateway_url: str, patients: list[SimulatedPatient],
                  training: dict[str, TrainingScript],
                  devices: dict[str, SimulatedDevice]) -> None:
    """Stream the patients in real time, each device with its training script (if any).

    ``devices`` holds each patient's device while it streams: the table reads the feedback
    it received.
    """
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as http:
        runs = []
        for p in patients:
            pid = p.truth.patient_id
            device = SimulatedDevice(p.credential, gateway_url,
                                     sample_rate_hz=p.recording.sample_rate_hz, speed=1.0,
                                     session_id=f"sim-{p.truth.start_us}", http=http,
                                     training=training.get(pid))
            devices[pid] = device
            runs.append(device.run(p.recording.samples, p.truth.start_us))
        await asyncio.gather(*runs)


async def _replayed(gateway_url: str, cred: DeviceCredential, recording_path: Path,
                    settings: Settings) -> None:
    from justwalk.simulator.replay import load_recording
    from justwalk.simulator.run import stream_recording

    recording = load_recording(recording_path, "Test11", "Trial1")
    window_us = round(settings.cadence_window_s * 1e6)
    while True:
        # Start now, keeping the recording's phase within the window grid, so the windows
        # hold exactly the samples they hold when the recording is analysed offline.
        now_us = time.time_ns() // 1000
        t0 = window_start(now_us, window_us) + recording.t0_us % window_us
        await stream_recording(gateway_url, cred, recording.restamped(t0), speed=1.0)


async def _run_live(settings: Settings, pipeline: Pipeline, creds: list[DeviceCredential],
                    recording: Path | None, duration_s: float, rows: dict[str, PatientRow],
                    receiver: AlertReceiver, reader: ReadUser, console: Console,
                    training: dict[str, TrainingScript]) -> int:
    from sinks.influx import InfluxClient

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    sim_creds = [c for c in creds if c.patient_id != REPLAY_PATIENT]
    injected: dict[str, int] = {}
    devices: dict[str, SimulatedDevice] = {}
    tasks = [asyncio.create_task(_simulated(pipeline.gateway_url, sim_creds, settings,
                                            duration_s, rows, injected, training, devices))]
    if recording is not None:
        replay_cred = next(c for c in creds if c.patient_id == REPLAY_PATIENT)
        tasks.append(asyncio.create_task(_replayed(pipeline.gateway_url, replay_cred,
                                                   recording, settings)))
    started = time.monotonic()
    deadline = math.inf if duration_s <= 0 else started + duration_s
    client = InfluxClient(settings.influx_url, clinic_database(settings.influx_db, CLINIC_ID),
                          username=reader.user, password=reader.password)
    try:
        live = Live(console=console, refresh_per_second=2, transient=False) \
            if console.is_terminal else None
        with live or contextlib.nullcontext():
            last_print = 0.0
            while not stop.is_set() and time.monotonic() < deadline:
                pipeline.check_alive()
                for t in tasks:
                    if t.done() and t.exception() is not None:
                        raise t.exception()  # type: ignore[misc]
                with contextlib.suppress(Exception):
                    await read_patients(client, rows)
                read_feedback(devices, rows)
                table = Group(render(rows, time.time_ns() // 1000, time.monotonic() - started),
                              alerts_table(receiver.received))
                if live is not None:
                    live.update(table)
                elif time.monotonic() - last_print >= 10:
                    console.print(table)
                    last_print = time.monotonic()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=1.0)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        # let the last chunks travel through the processor and the sink
        await asyncio.sleep(3 * settings.sink_flush_interval_s + 2.0)
        await read_patients(client, rows)
        read_feedback(devices, rows)
        points = await count_points(client)
        console.print(summary_table(rows, points))
        console.print(alerts_table(receiver.received, limit=50))
        got: dict[str, int] = {}
        for r in receiver.received:
            got[r.alert["type"]] = got.get(r.alert["type"], 0) + 1
        latencies = [r.latency_s for r in receiver.received if r.latency_s is not None]
        console.print(
            "injected into the simulated walks (events while the demo ran): "
            + (", ".join(f"{v} {k}" for k, v in sorted(injected.items())) or "none")
            + "; alerts delivered: "
            + (", ".join(f"{v} {k}" for k, v in sorted(got.items())) or "none")
            + (f"; latency gateway -> webhook median {np.median(latencies):.2f} s, "
               f"max {max(latencies):.2f} s" if latencies else ""))
        # the training patients' reports show their sessions (the demo ended them: the
        # device stopped streaming), the others' their day
        shown = list(training) or [REPLAY_PATIENT if recording is not None
                                   else sim_creds[0].patient_id]
        for pid in shown:
            try:
                # the run folder holds the registry, the database and now the reports
                files = await write_report(settings, CLINIC_ID, pid,
                                           settings.device_registry.parent)
            except Exception as exc:  # the demo ran; say why the report could not be written
                console.print(f"[red]the progress report could not be written: {exc!r}[/red]")
                return 1
            console.print(f"progress report of {pid}: " + ", ".join(str(f) for f in files))
        return 0
    finally:
        await client.close()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


def run_demo(settings: Settings, *, duration_s: float, n_patients: int,
             recording: Path | None) -> int:
    """Run the demo; ``duration_s`` 0 runs until Ctrl-C. Returns the exit code."""
    from ingest.registry import provision

    console = Console()
    # the table shows the feedback the devices receive; their log lines would break it
    logging.getLogger("justwalk.simulator.device").setLevel(logging.WARNING)
    run_dir = Path("run") / time.strftime("demo-%Y%m%d-%H%M%S")
    log_dir = run_dir / "logs"
    recording = recording or (DEFAULT_RECORDING if DEFAULT_RECORDING.exists() else None)
    if recording is None:
        console.print("[yellow]no Mobilise-D recording found; simulated patients only[/yellow]")
    console.print(f"starting the local broker ({settings.local_broker_storage} storage) and "
                  f"InfluxDB (logs in {log_dir}) ...")
    try:
        stack = LocalStack(log_dir=log_dir, workdir=run_dir / "stack", influx_auth=True,
                           broker_storage=settings.local_broker_storage)
        stack.start()
    except StackError as exc:
        console.print(f"[red]justwalk demo: {exc}[/red]")
        return 1
    try:
        s = stack.settings(settings).replace(
            gateway_port=_free_port(),
            device_registry=run_dir / "devices.json",
        )
        devices = [(f"dev-{i + 1:03d}", f"pt-{i + 1:03d}", CLINIC_ID) for i in range(n_patients)]
        if recording is not None:
            devices.append(("dev-ms-replay", REPLAY_PATIENT, CLINIC_ID))
        creds = provision(s.device_registry, run_dir / "credentials.json", devices)
        receiver = AlertReceiver(secret=secrets.token_hex(16).encode(), clinic_id=CLINIC_ID)
        reader = ReadUser(CLINIC_ID, f"read-{CLINIC_ID}", secrets.token_urlsafe(16))
        asyncio.run(setup_clinics(s.influx_url, s.influx_db, admin_user=s.influx_username,
                                  admin_password=s.influx_password, readers=[reader]))
        s = s.replace(alert_channels=run_dir / "alert_channels.json",
                      alert_outbox=run_dir / "alerts" / "outbox.sqlite3",
                      patient_profiles=run_dir / "patient_profiles.json")
        heights = write_patient_profiles(s.patient_profiles, recording)
        # the clinic's records: every patient (the processor reads the sensor heights
        # there) with a prescription; a progress report is written at the end
        simulated = [c.patient_id for c in creds if c.patient_id != REPLAY_PATIENT]
        s, prescribed = prepare_database(s, run_dir, CLINIC_ID, [c.patient_id for c in creds],
                                         heights, walk_tests=simulated[1:2])
        rows = {c.patient_id: PatientRow(c.patient_id, "simulated") for c in creds}
        if recording is not None:
            rows[REPLAY_PATIENT].kind = "real MS recording"
        training = training_scripts(simulated, prescribed, rows)
        asyncio.run(ensure_topics(s))
        console.print(f"broker {s.kafka_bootstrap}, InfluxDB {s.influx_url} (auth on; the "
                      f"table reads {clinic_database(s.influx_db, CLINIC_ID)} as "
                      f"{reader.user}); starting gateway, processor and sink ...")
        return asyncio.run(_with_receiver(s, receiver, reader, creds, recording, duration_s,
                                          rows, log_dir, console, training))
    finally:
        stack.stop()
        console.print("stopped the broker and InfluxDB")


def training_scripts(simulated: list[str], prescribed: dict[str, dict[str, int]],
                     rows: dict[str, PatientRow]) -> dict[str, TrainingScript]:
    """The first simulated patient's device starts a guided walk, the second's a 2MWT.

    Each under the patient's prescription; the others only stream. (An open-ended demo
    starts them again with every new stretch of signal.)
    """
    out: dict[str, TrainingScript] = {}
    for pid, kind, label, start_s in zip(
            simulated, ("guided_walk", "2mwt"),
            ("guided walk, cadence band 95-110", "2-Minute Walk Test"), (3.0, 5.0),
            strict=False):
        out[pid] = TrainingScript(kind, start_s=start_s, prescription_id=prescribed[pid][kind])
        rows[pid].training = label
    return out


def write_patient_profiles(path: Path, recording: Path | None) -> dict[str, float]:
    """The processor's profiles file: the replayed participant's own sensor height.

    Simulated patients have none (they get the default, as the simulator assumes). Returns
    the heights written.
    """
    from justwalk.simulator.replay import participant_info

    heights: dict[str, float] = {}
    if recording is not None:
        try:
            info = participant_info(recording)
        except (FileNotFoundError, KeyError):
            info = None
        if info is not None and info.sensor_height_m is not None:
            heights[REPLAY_PATIENT] = info.sensor_height_m
    path.write_text(json.dumps({"patients": {p: {"sensor_height_m": h}
                                             for p, h in heights.items()}}))
    return heights


async def _with_receiver(s: Settings, receiver: AlertReceiver, reader: ReadUser,
                         creds: list[DeviceCredential], recording: Path | None,
                         duration_s: float, rows: dict[str, PatientRow], log_dir: Path,
                         console: Console, training: dict[str, TrainingScript]) -> int:
    """Start the clinic's webhook receiver, then the pipeline with the alert service."""
    await receiver.start()
    try:
        s.alert_channels.write_text(json.dumps(channels_for(receiver, [CLINIC_ID])))
        # supervised, as compose's restart: is in production (a service that finds the
        # broker lost data exits on purpose and is started again)
        pipeline = Pipeline(s, log_dir=log_dir, with_alerts=True, supervise=True)
        pipeline.start()  # from the main thread: children die with the thread that started them
        try:
            console.print(f"gateway {pipeline.gateway_url}; alerts to {receiver.url}; streaming "
                          f"{len(creds) - (1 if recording else 0)} simulated patients"
                          f"{' and 1 real recording' if recording else ''}")
            return await _run_live(s, pipeline, creds, recording, duration_s, rows, receiver,
                                   reader, console, training)
        finally:
            # in a thread: the alert service may still deliver to our receiver meanwhile
            codes = await asyncio.to_thread(pipeline.stop)
            console.print("stopped: " + ", ".join(f"{k} ({v})" for k, v in codes.items()))
    finally:
        await receiver.stop()
