"""The ``justwalk`` command: one subcommand per process.

    justwalk stack        local Tansu broker + InfluxDB on loopback, until Ctrl-C
    justwalk gateway      device gateway (WebSocket + upload) -> Kafka
    justwalk processor    faust stream processor: chunks -> steps and cadence windows
    justwalk sink         gait.* topics -> InfluxDB
    justwalk alerts       alerts topic -> clinics' webhooks and e-mail
    justwalk simulate     simulated patients streaming to a gateway
    justwalk replay       a real Mobilise-D recording streamed to a gateway
    justwalk demo         all of the above with a live table
    justwalk evaluate     accuracy of gait or fall detection on real recordings

Connection settings come from JUSTWALK_* environment variables (see justwalk.config).
Imports are lazy so that each process loads only what it runs.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path

from justwalk.config import Settings


def _setup_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper()),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def _cmd_stack(args: argparse.Namespace, settings: Settings) -> int:
    from justwalk.localstack import run_stack_forever

    return run_stack_forever(settings, kafka_port=args.kafka_port, influx_port=args.influx_port)


def _cmd_gateway(args: argparse.Namespace, settings: Settings) -> int:
    from ingest.gateway import serve

    asyncio.run(serve(settings))
    return 0


def _cmd_processor(args: argparse.Namespace, settings: Settings) -> int:
    from stream_processors.app import run_processor

    return run_processor(settings, loglevel=args.log_level)


def _cmd_sink(args: argparse.Namespace, settings: Settings) -> int:
    from sinks.kafka_sink import run_sink

    asyncio.run(run_sink(settings))
    return 0


def _cmd_alerts(args: argparse.Namespace, settings: Settings) -> int:
    from sinks.alerts import ChannelConfigError, run_alert_service

    try:
        asyncio.run(run_alert_service(settings))
    except ChannelConfigError as exc:
        print(f"justwalk alerts: {exc}", file=sys.stderr)
        return 2
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
    from justwalk.evaluation.gait import main as evaluate_gait

    return evaluate_gait(args.options)


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
    s.set_defaults(func=_cmd_simulate)

    s = sub.add_parser("replay", help="stream a Mobilise-D recording to a gateway")
    s.add_argument("recording", type=Path,
                   help="data.mat of ../shared/data/mobilised (test/trial via options)")
    s.add_argument("--test", default="Test11")
    s.add_argument("--trial", default="Trial1")
    s.add_argument("--patient-id", default="ms-replay-001")
    s.add_argument("--speed", type=float, default=1.0)
    s.add_argument("--devices", type=Path, required=True)
    s.add_argument("--gateway-url", default=None)
    s.add_argument("--chunk-s", type=float, default=0.5, help="seconds of signal per chunk")
    s.add_argument("--keep-clock", action="store_true",
                   help="keep the recording's own timestamps (default: re-stamp it to now; "
                   "the gateway refuses data older than JUSTWALK_MAX_UPLOAD_AGE_S)")
    s.add_argument("--upload", action="store_true",
                   help="store and forward: one POST /v1/upload instead of live streaming")
    s.set_defaults(func=_cmd_replay)

    s = sub.add_parser("evaluate", help="accuracy against the real recordings in ../shared/data",
                       description="justwalk evaluate falls|gait [--json] [--data DIR] ...; "
                       "see `justwalk evaluate falls --help`")
    s.add_argument("what", choices=["gait", "falls"])
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
