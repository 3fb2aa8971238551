"""The ``justwalk`` command: one subcommand per process.

    justwalk stack        local Tansu broker + InfluxDB on loopback, until Ctrl-C
    justwalk gateway      device gateway (WebSocket + upload) -> Kafka
    justwalk processor    stream processor: chunks -> steps, windows, bouts, events, risk
    justwalk sink         gait.* topics -> InfluxDB
    justwalk alerts       alerts topic -> clinics' webhooks and e-mail
    justwalk simulate     simulated patients streaming to a gateway
    justwalk replay       a real Mobilise-D recording streamed to a gateway
    justwalk demo         all of the above with a live table
    justwalk evaluate     accuracy of gait or fall detection on real recordings
    justwalk dashboards   build (or --check) the Grafana provisioning files in deploy/
    justwalk grafana      push the dashboards and alert rules to an existing Grafana
    justwalk rollups      backfill the daily/weekly rollups of a past time range
    justwalk influx       each clinic's InfluxDB database and read user (setup); the
                          InfluxQL gate Grafana reads through (gate)
    justwalk db           patients, prescriptions and sessions in the database (migrations,
                          clinics and their API tokens, profile import)
    justwalk api          the clinics' HTTP API (patients, prescriptions, sessions, reports)
    justwalk report       a patient's progress report for a period (HTML or PDF)

Connection settings come from JUSTWALK_* environment variables (see justwalk.config).
Imports are lazy so that each process loads only what it runs.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from datetime import UTC, datetime
from pathlib import Path

from justwalk.config import Settings
from justwalk.db_cli import add_parser as add_db_parser
from justwalk.report.cli import add_parser as add_report_parser
from sinks.dead_letter_tool import add_parser as add_dead_letters_parser


def _setup_logging(level: str) -> None:
    from justwalk.log_limit import limit_repeated_logs

    ours = not logging.getLogger().handlers  # not when embedded (tests)
    logging.basicConfig(
        level=getattr(logging, level.upper()),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if ours:
        limit_repeated_logs()  # the Kafka and InfluxDB paths repeat themselves in an outage


def _cmd_stack(args: argparse.Namespace, settings: Settings) -> int:
    from justwalk.localstack import run_stack_forever

    return run_stack_forever(settings, kafka_port=args.kafka_port, influx_port=args.influx_port)


def _cmd_gateway(args: argparse.Namespace, settings: Settings) -> int:
    from ingest.gateway import serve
    from justwalk.broker_loss import EXIT_BROKER_LOST, BrokerLostData

    try:
        asyncio.run(serve(settings))
    except BrokerLostData:
        return EXIT_BROKER_LOST  # logged with what was lost
    return 0


def _cmd_processor(args: argparse.Namespace, settings: Settings) -> int:
    from stream_processors.app import run_processor

    return run_processor(settings)


def _cmd_sink(args: argparse.Namespace, settings: Settings) -> int:
    from sinks.kafka_sink import run_sink

    asyncio.run(run_sink(settings))
    return 0


def _cmd_alerts(args: argparse.Namespace, settings: Settings) -> int:
    from justwalk.broker_loss import EXIT_BROKER_LOST, BrokerLostData
    from sinks.alerts import ChannelConfigError, run_alert_service

    try:
        asyncio.run(run_alert_service(settings))
    except ChannelConfigError as exc:
        print(f"justwalk alerts: {exc}", file=sys.stderr)
        return 2
    except BrokerLostData:
        return EXIT_BROKER_LOST  # logged with what was lost
    return 0


def _cmd_simulate(args: argparse.Namespace, settings: Settings) -> int:
    from justwalk.simulator.run import simulate_main

    return simulate_main(args, settings)


def _cmd_replay(args: argparse.Namespace, settings: Settings) -> int:
    from justwalk.simulator.run import replay_main

    return replay_main(args, settings)


def _cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    from justwalk.demo import run_demo

    return run_demo(settings, duration_s=args.duration, n_patients=args.patients,
                    recording=args.recording)


def _cmd_evaluate(args: argparse.Namespace, settings: Settings) -> int:
    if args.what == "falls":
        from justwalk.evaluation.falls import main as evaluate_falls

        return evaluate_falls(args.options)
    if args.what == "walk-tests":
        from justwalk.evaluation.walk_tests import main as evaluate_walk_tests

        return evaluate_walk_tests(args.options)
    from justwalk.evaluation.gait import main as evaluate_gait

    return evaluate_gait(args.options)


def _cmd_dashboards(args: argparse.Namespace, settings: Settings) -> int:
    import os

    from justwalk.clinics import ClinicsError, load_clinics
    from justwalk.dashboards import build, missing_secrets, write_site

    if args.clinics is not None:
        if args.out is None or args.check:
            print("--clinics writes a site's provisioning: give --out DIR (and no --check)")
            return 2
        try:
            missing = missing_secrets(load_clinics(args.clinics), os.environ)
            if missing:
                print(f"not set (Grafana's data sources log in with them): "
                      f"{', '.join(missing)}", file=sys.stderr)
                return 2
            for path in write_site(args.clinics, args.out, prefix=settings.influx_db):
                print(f"wrote {path}")
        except ClinicsError as exc:
            print(f"justwalk dashboards: {exc}", file=sys.stderr)
            return 2
        return 0
    stale = build(args.deploy_dir, check=args.check)
    if args.check and stale:
        print("out of date (run `justwalk dashboards build`): " + ", ".join(stale))
        return 1
    for rel in stale:
        print(f"wrote {args.deploy_dir / rel}")
    return 0


def _cmd_grafana_push(args: argparse.Namespace, settings: Settings) -> int:
    from justwalk.grafana_push import PushOptions, connect, push
    from justwalk.schema import clinic_database

    api = connect(args.url, token=args.token, user=args.user, password=args.password,
                  org_id=args.org_id)
    options = PushOptions(
        influx_url=args.influx_url, influx_user=args.influx_user,
        influx_password=args.influx_password,
        database=clinic_database(settings.influx_db, args.clinic), org_id=args.org_id,
        datasource_uid=args.datasource_uid,
        webhook_url=args.webhook_url, alert_emails=args.alert_emails,
        timezone=args.timezone, editable=args.editable)
    for line in push(api, options):
        print(line)
    return 0


def _cmd_rollups(args: argparse.Namespace, settings: Settings) -> int:
    from justwalk.schema import backfill_statements, clinic_database
    from sinks.influx import InfluxClient

    async def run() -> None:
        async with InfluxClient(settings.influx_url, settings.influx_db,
                                username=settings.influx_username,
                                password=settings.influx_password, timeout_s=600) as client:
            if args.clinic:
                databases = [clinic_database(settings.influx_db, c) for c in args.clinic]
            else:  # every clinic's database
                rows = await client.query_rows("SHOW DATABASES")
                databases = sorted(r["name"] for r in rows
                                   if r["name"].startswith(settings.influx_db + "_"))
            for db in databases:
                for statement in backfill_statements(db, args.start, args.end):
                    await client.query(statement, db=db)
                    print(statement)

    asyncio.run(run())
    return 0


def _identifier(text: str) -> str:
    """An id as the wire format carries it, matched whole (a trailing newline is refused)."""
    from justwalk.wire import ID_PATTERN

    if not ID_PATTERN.fullmatch(text):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an id: 1-64 characters of letters, digits, '_', '.', ':' or '-'")
    return text


def _cmd_influx_setup(args: argparse.Namespace, settings: Settings) -> int:
    from justwalk.clinics import ClinicsError, load_clinics
    from sinks.influx_access import ReadUser, setup_clinics

    try:
        clinics = load_clinics(args.clinics or settings.clinics)
        readers = [ReadUser(c.clinic_id, c.influx_read_user, c.read_password())
                   for c in clinics]
    except (ClinicsError, ValueError) as exc:
        print(f"justwalk influx setup: {exc}", file=sys.stderr)
        return 2
    for line in asyncio.run(setup_clinics(
            settings.influx_url, settings.influx_db, admin_user=settings.influx_username,
            admin_password=settings.influx_password, readers=readers)):
        print(line)
    return 0


def _cmd_influx_gate(args: argparse.Namespace, settings: Settings) -> int:
    from sinks.influx_gate import run_gate

    asyncio.run(run_gate(settings))
    return 0


def _cmd_api(args: argparse.Namespace, settings: Settings) -> int:
    from justwalk.api.server import run_api

    return run_api(settings)


def _utc_date(text: str) -> datetime:
    t = datetime.fromisoformat(text)
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (also used by the tests to check every documented command)."""
    p = argparse.ArgumentParser(prog="justwalk", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--log-level", default="info",
                   choices=["debug", "info", "warning", "error"])
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("stack", help="run Tansu and InfluxDB on loopback until Ctrl-C")
    s.add_argument("--kafka-port", type=int, default=9092)
    s.add_argument("--influx-port", type=int, default=8086)
    s.set_defaults(func=_cmd_stack)

    sub.add_parser("gateway", help="device gateway").set_defaults(func=_cmd_gateway)
    sub.add_parser("processor", help="stream processor").set_defaults(func=_cmd_processor)
    sub.add_parser("sink", help="InfluxDB sink").set_defaults(func=_cmd_sink)
    sub.add_parser("alerts", help="alert delivery (webhooks, e-mail)").set_defaults(
        func=_cmd_alerts)

    s = sub.add_parser("simulate", help="stream simulated patients to a gateway")
    s.add_argument("--patients", type=int, default=3)
    s.add_argument("--duration", type=float, default=60.0, help="seconds of signal")
    s.add_argument("--speed", type=float, default=1.0,
                   help="1 = real time; 10 = ten times faster; 0 = as fast as possible")
    s.add_argument("--cadences", type=str, default="",
                   help="comma-separated cadences (steps/min), one per patient")
    s.add_argument("--devices", type=Path, required=True,
                   help="device registry file (tokens) shared with the gateway")
    s.add_argument("--truth", type=Path, default=None, help="write ground truth JSON here")
    s.add_argument("--seed", type=int, default=1)
    s.add_argument("--gateway-url", default=None)
    s.add_argument("--chunk-s", type=float, default=0.5, help="seconds of signal per chunk")
    s.add_argument("--ca-file", type=Path, default=None,
                   help="verify an https:// gateway against this CA (PEM) instead of the "
                   "system's")
    s.add_argument("--training", choices=["free_walk", "guided_walk", "t25fw", "2mwt", "6mwt"],
                   default=None, help="each device starts this training session 5 s in "
                   "(and logs the feedback it gets)")
    s.add_argument("--prescription", type=int, default=None,
                   help="the prescription id the training session names")
    s.add_argument("--fatigue", type=float, default=0.0,
                   help="walking speed decline, percent per minute (fatigue)")
    s.set_defaults(func=_cmd_simulate)

    s = sub.add_parser("replay", help="stream a Mobilise-D recording to a gateway")
    s.add_argument("recording", type=Path,
                   help="data.mat of ../shared/data/mobilised (test/trial via options)")
    s.add_argument("--test", default="Test11")
    s.add_argument("--trial", default="Trial1")
    s.add_argument("--patient-id", type=_identifier, default="ms-replay-001")
    s.add_argument("--speed", type=float, default=1.0)
    s.add_argument("--devices", type=Path, required=True)
    s.add_argument("--gateway-url", default=None)
    s.add_argument("--chunk-s", type=float, default=0.5, help="seconds of signal per chunk")
    s.add_argument("--keep-clock", action="store_true",
                   help="keep the recording's own timestamps (default: re-stamp it to now; "
                   "the gateway refuses data older than JUSTWALK_MAX_UPLOAD_AGE_S)")
    s.add_argument("--upload", action="store_true",
                   help="store and forward: one POST /v1/upload instead of live streaming")
    s.add_argument("--ca-file", type=Path, default=None,
                   help="verify an https:// gateway against this CA (PEM) instead of the "
                   "system's")
    s.set_defaults(func=_cmd_replay)

    s = sub.add_parser("evaluate", help="accuracy against the real recordings in ../shared/data",
                       description="justwalk evaluate falls|gait|walk-tests [--json] "
                       "[--data DIR] ...; "
                       "see `justwalk evaluate falls --help`")
    s.add_argument("what", choices=["gait", "falls", "walk-tests"])
    s.add_argument("options", nargs=argparse.REMAINDER,
                   help="options of the evaluation (--json, --data DIR, ...)")
    s.set_defaults(func=_cmd_evaluate)

    s = sub.add_parser("demo", help="everything, end to end, with a live table")
    s.add_argument("--duration", type=float, default=0.0,
                   help="stop after this many seconds (0 = until Ctrl-C)")
    s.add_argument("--patients", type=int, default=10)
    s.add_argument("--recording", type=Path, default=None,
                   help="Mobilise-D data.mat to replay (default: the MS participant)")
    s.set_defaults(func=_cmd_demo)

    s = sub.add_parser("dashboards", help="Grafana provisioning files from justwalk/dashboards")
    dsub = s.add_subparsers(dest="action", required=True)
    b = dsub.add_parser("build", help="write deploy/grafana/... and the schema in deploy/README.md")
    b.add_argument("--deploy-dir", type=Path, default=Path("deploy"))
    b.add_argument("--check", action="store_true",
                   help="write nothing; exit 1 if a committed file differs from the code")
    b.add_argument("--clinics", type=Path, default=None,
                   help="a site's clinics file: write its provisioning (one organisation "
                   "per clinic) under --out instead of the example's under deploy/")
    b.add_argument("--out", type=Path, default=None,
                   help="with --clinics: where Grafana mounts the tree (provisioning/, "
                   "dashboards/, organisations.txt)")
    b.set_defaults(func=_cmd_dashboards)

    s = sub.add_parser("grafana", help="an existing Grafana, over its HTTP API")
    gsub = s.add_subparsers(dest="action", required=True)
    g = gsub.add_parser("push", help="push folder, data source, dashboards and alert rules")
    g.add_argument("--url", required=True, help="Grafana base URL, e.g. https://grafana.clinic")
    g.add_argument("--token", default="", help="service account token (Editor or Admin)")
    g.add_argument("--user", default="", help="basic auth user (instead of --token)")
    g.add_argument("--password", default="")
    g.add_argument("--clinic", required=True, type=_identifier,
                   help="the clinic whose database the data source reads")
    g.add_argument("--org-id", type=int, default=0,
                   help="the clinic's organisation (with --user; a token has its own)")
    g.add_argument("--influx-url", default="", help="InfluxDB URL as Grafana reaches it")
    g.add_argument("--influx-user", default="",
                   help="the clinic's read user (READ on its database only)")
    g.add_argument("--influx-password", default="")
    g.add_argument("--datasource-uid", default="",
                   help="use this existing InfluxQL data source instead of creating one")
    g.add_argument("--webhook-url", default="", help="alert webhook of the clinic")
    g.add_argument("--alert-emails", default="", help="alert e-mail addresses, ';'-separated")
    g.add_argument("--timezone", default="UTC",
                   help="clinic time zone for the night mute timing (e.g. Europe/Berlin)")
    g.add_argument("--editable", action="store_true",
                   help="leave the pushed alerting objects editable in Grafana's UI")
    g.set_defaults(func=_cmd_grafana_push)

    s = sub.add_parser("rollups", help="the daily/weekly rollups in InfluxDB")
    rsub = s.add_subparsers(dest="action", required=True)
    r = rsub.add_parser("backfill", help="recompute the rollups of [start, end) from raw data "
                        "(continuous queries only cover the last days)")
    r.add_argument("--start", type=_utc_date, required=True, help="ISO date, UTC if no offset")
    r.add_argument("--end", type=_utc_date, required=True, help="ISO date, UTC if no offset")
    r.add_argument("--clinic", action="append", default=[], type=_identifier,
                   help="only this clinic's database (repeatable; default: every clinic's)")
    r.set_defaults(func=_cmd_rollups)

    s = sub.add_parser("influx", help="InfluxDB access: each clinic's database and read user")
    isub = s.add_subparsers(dest="action", required=True)
    i = isub.add_parser("setup", help="create each clinic's database (policies, rollups) and "
                        "its read user with READ on that database only (needs the admin)")
    i.add_argument("--clinics", type=Path, default=None,
                   help="the clinics file (default: JUSTWALK_CLINICS)")
    i.set_defaults(func=_cmd_influx_setup)
    i = isub.add_parser("gate", help="the InfluxQL gate between Grafana and InfluxDB: passes "
                        "reads, refuses writes and the metadata statements InfluxDB does not "
                        "guard (JUSTWALK_INFLUX_GATE_HOST/PORT -> JUSTWALK_INFLUX_URL)")
    i.set_defaults(func=_cmd_influx_gate)

    add_db_parser(sub)
    add_dead_letters_parser(sub)
    sub.add_parser("api", help="the clinics' HTTP API (JUSTWALK_API_HOST/PORT; database: "
                   "JUSTWALK_DATABASE_URL)").set_defaults(func=_cmd_api)
    add_report_parser(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``justwalk`` console script."""
    args = build_parser().parse_args(argv)
    _setup_logging(args.log_level)
    settings = Settings.from_env()
    try:
        return int(args.func(args, settings))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
