r"""``justwalk db ...``: the database of patients, prescriptions and sessions, from the shell.

    justwalk db upgrade                        apply the migrations (creates the schema)
    justwalk db clinic add clinic-a            a clinic; `db token issue clinic-a` its API token
    justwalk db patient create pt-0042 --clinic clinic-a --sensor-height-m 0.98
    justwalk db prescription create pt-0042 --type guided_walk --duration-min 10 \
        --times-per-week 5 --cadence-band 95-110
    justwalk db import-profiles deploy/patient_profiles.json --clinic clinic-a

The database is ``JUSTWALK_DATABASE_URL`` (default: the SQLite file
``JUSTWALK_DATABASE_FILE``). Records print as JSON, lists as one line per record. Bad input
exits with status 2 and a message naming the field. The database modules are imported only
when a ``db`` command runs.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from justwalk.config import Settings

_TYPES = ["free_walk", "guided_walk", "t25fw", "2mwt", "6mwt"]
_AIDS = ["none", "cane", "two_canes", "crutches", "walker", "rollator"]


def _print(record: Any) -> None:
    print(json.dumps(record, indent=2, ensure_ascii=False))


def _run(action: Callable[[Any, argparse.Namespace], int]) -> Callable[..., int]:
    """A command that opens the repository and turns the database's errors into messages."""

    def command(args: argparse.Namespace, settings: Settings) -> int:
        from justwalk.db import Conflict, DatabaseError, InputError, NotFound, open_repository

        try:
            repo = open_repository(settings)
            try:
                return action(repo, args)
            finally:
                repo.engine.dispose()
        except (InputError, NotFound, Conflict, DatabaseError) as exc:
            print(f"justwalk db: {exc}", file=sys.stderr)
            return 2

    return command


# --------------------------------------------------------------------------- commands

def _upgrade(args: argparse.Namespace, settings: Settings) -> int:
    from justwalk.db import DatabaseError, database_url
    from justwalk.db.engine import create, revisions, upgrade

    engine = create(database_url(settings))
    try:
        upgrade(engine, args.revision)
        current, head = revisions(engine)
    except DatabaseError as exc:
        print(f"justwalk db: {exc}", file=sys.stderr)
        return 2
    finally:
        engine.dispose()
    print(f"{engine.url.render_as_string(hide_password=True)}: at revision {current} "
          f"(newest {head})")
    return 0


def _clinic_add(repo: Any, args: argparse.Namespace) -> int:
    repo.add_clinic(args.clinic_id)
    print(f"added clinic {args.clinic_id}")
    return 0


def _clinic_list(repo: Any, args: argparse.Namespace) -> int:
    for clinic_id in repo.clinics():
        print(clinic_id)
    return 0


def _token_issue(repo: Any, args: argparse.Namespace) -> int:
    token = repo.issue_token(args.clinic_id, args.label)
    print(token)
    print(f"(the API token of {args.clinic_id}; only its hash is stored: keep it now)",
          file=sys.stderr)
    return 0


def _token_revoke(repo: Any, args: argparse.Namespace) -> int:
    print(f"revoked {repo.revoke_tokens(args.clinic_id)} token(s) of {args.clinic_id}")
    return 0


def _profile(args: argparse.Namespace) -> dict[str, Any]:
    data: dict[str, Any] = {}
    if args.sensor_height_m is not None:
        data["sensor_height_m"] = args.sensor_height_m
    if args.walking_aid is not None:
        data["walking_aid"] = args.walking_aid
    if args.reference_range:
        data["reference_ranges"] = {m: {"low": lo, "high": hi}
                                    for m, (lo, hi) in args.reference_range}
    if args.alert_threshold:
        data["alert_thresholds"] = dict(args.alert_threshold)
    return data


def _patient_create(repo: Any, args: argparse.Namespace) -> int:
    _print(repo.create_patient(args.clinic, args.patient_id, _profile(args)))
    return 0


def _patient_list(repo: Any, args: argparse.Namespace) -> int:
    for p in repo.patients(args.clinic):
        height = "-" if p["sensor_height_m"] is None else f"{p['sensor_height_m']:.3f} m"
        print(f"{p['patient_id']:<24} {p['clinic_id']:<16} {height:>9}  {p['walking_aid']}")
    return 0


def _patient_show(repo: Any, args: argparse.Namespace) -> int:
    _print(repo.patient(args.clinic, args.patient_id))
    return 0


def _patient_update(repo: Any, args: argparse.Namespace) -> int:
    data = _profile(args)
    if args.clear_sensor_height:
        data["sensor_height_m"] = None
    if not data:
        print("justwalk db: nothing to change (give --sensor-height-m, --walking-aid, ...)",
              file=sys.stderr)
        return 2
    _print(repo.update_patient(args.clinic, args.patient_id, data))
    return 0


def _prescription(args: argparse.Namespace) -> dict[str, Any]:
    data: dict[str, Any] = {}
    simple = {"type": "session_type", "pace": "pace", "distance_m": "target_distance_m",
              "times_per_week": "times_per_week", "start": "start_date", "end": "end_date",
              "note": "therapist_note", "metronome_spm": "feedback_metronome_spm",
              "progress_every_s": "feedback_progress_every_s", "active": "active",
              "cadence_cue": "feedback_cadence_cue", "rest_suggestion":
              "feedback_rest_suggestion"}
    for option, field in simple.items():
        value = getattr(args, option, None)
        if value is not None:
            data[field] = value
    if args.duration_min is not None:
        data["duration_s"] = args.duration_min * 60.0
    if args.cadence_band is not None:
        data["cadence_band_spm"] = list(args.cadence_band)
    if getattr(args, "no_cadence_band", False):
        data["cadence_band_spm"] = None
    return data


def _prescription_create(repo: Any, args: argparse.Namespace) -> int:
    _print(repo.create_prescription(args.clinic, args.patient_id, _prescription(args)))
    return 0


def _prescription_list(repo: Any, args: argparse.Namespace) -> int:
    for rx in repo.prescriptions(args.clinic, args.patient_id, active_only=args.active_only):
        band = rx["cadence_band_spm"]
        what = [rx["session_type"], rx["pace"]]
        if rx["duration_s"] is not None:
            what.append(f"{rx['duration_s'] / 60:g} min")
        if rx["target_distance_m"] is not None:
            what.append(f"{rx['target_distance_m']:g} m")
        what.append(f"{rx['times_per_week']}x/week")
        if band:
            what.append(f"cadence {band[0]:g}-{band[1]:g} steps/min")
        state = "active" if rx["active"] else "inactive"
        until = rx["end_date"] or "open"
        print(f"{rx['prescription_id']:>5}  {rx['patient_id']:<20} {', '.join(what)}; "
              f"{rx['start_date']}..{until} {state}")
    return 0


def _prescription_show(repo: Any, args: argparse.Namespace) -> int:
    _print(repo.prescription(args.clinic, args.prescription_id))
    return 0


def _prescription_update(repo: Any, args: argparse.Namespace) -> int:
    data = _prescription(args)
    if not data:
        print("justwalk db: nothing to change (give --times-per-week, --cadence-band, ...)",
              file=sys.stderr)
        return 2
    _print(repo.update_prescription(args.clinic, args.prescription_id, data))
    return 0


def _session_list(repo: Any, args: argparse.Namespace) -> int:
    for s in repo.sessions(args.clinic, args.patient, limit=args.limit):
        result = s["result"] or {}
        distance = result.get("distance_m")
        print(f"{s['session_id']:>6}  {s['patient_id']:<20} {s['session_type']:<11} "
              f"{s['status']:<13} {s['started_at']}  "
              f"{'-' if distance is None else f'{distance:.1f} m'}")
    return 0


def _import_profiles(args: argparse.Namespace, settings: Settings) -> int:
    from stream_processors.patient_profiles import PatientProfileError, load_patient_profiles

    if not args.file.is_file():
        print(f"justwalk db: {args.file}: no such file", file=sys.stderr)
        return 2
    try:
        heights = load_patient_profiles(args.file)  # validates the whole file
    except PatientProfileError as exc:
        print(f"justwalk db: {exc}", file=sys.stderr)
        return 2
    # patients listed without a height are patients all the same
    listed = json.loads(args.file.read_text()).get("patients", {})
    profiles: dict[str, float | None] = {pid: heights.get(pid) for pid in listed}

    def action(repo: Any, args: argparse.Namespace) -> int:
        created, updated = repo.import_sensor_heights(args.clinic, profiles)
        print(f"{args.file}: {created} patient(s) created, {updated} updated in "
              f"clinic {args.clinic}")
        return 0

    return _run(action)(args, settings)


# ----------------------------------------------------------------------------- parsing

def _id(text: str) -> str:
    from justwalk.wire import ID_PATTERN

    if not ID_PATTERN.fullmatch(text):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an id: 1-64 characters of letters, digits, '_', '.', ':' or '-'")
    return text


def _band(text: str) -> tuple[float, float]:
    low, sep, high = text.partition("-")
    try:
        if not sep:
            raise ValueError
        return float(low), float(high)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a cadence band LOW-HIGH in steps/min, e.g. 95-110") from None


def _range(text: str) -> tuple[str, tuple[float, float]]:
    metric, sep, band = text.partition("=")
    low, sep2, high = band.partition(":")
    try:
        if not (sep and sep2):
            raise ValueError
        return metric, (float(low), float(high))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not METRIC=LOW:HIGH, e.g. walking_speed_mps=0.9:1.3") from None


def _threshold(text: str) -> tuple[str, float]:
    name, sep, value = text.partition("=")
    try:
        if not sep:
            raise ValueError
        return name, float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not NAME=VALUE, e.g. fall_risk_score=40") from None


def _bool(text: str) -> bool:
    if text.lower() in ("yes", "true", "on", "1"):
        return True
    if text.lower() in ("no", "false", "off", "0"):
        return False
    raise argparse.ArgumentTypeError(f"{text!r} is not yes or no")


def _profile_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--sensor-height-m", type=float, default=None,
                   help="lower-back sensor above the ground, metres")
    p.add_argument("--walking-aid", choices=_AIDS, default=None)
    p.add_argument("--reference-range", type=_range, action="append", default=[],
                   metavar="METRIC=LOW:HIGH", help="personal reference range (repeatable), "
                   "e.g. walking_speed_mps=0.9:1.3 (replaces all the ranges)")
    p.add_argument("--alert-threshold", type=_threshold, action="append", default=[],
                   metavar="NAME=VALUE", help="personal alert threshold (repeatable), e.g. "
                   "fall_risk_score=40 (replaces all the thresholds)")


def _prescription_options(p: argparse.ArgumentParser, *, creating: bool) -> None:
    p.add_argument("--type", choices=_TYPES, required=creating, default=None)
    p.add_argument("--pace", choices=["comfortable", "fast"], default=None)
    p.add_argument("--duration-min", type=float, default=None, help="walking time, minutes")
    p.add_argument("--distance-m", type=float, default=None, help="target distance, metres")
    p.add_argument("--times-per-week", type=int, required=creating, default=None)
    p.add_argument("--cadence-band", type=_band, default=None, metavar="LOW-HIGH",
                   help="prescribed cadence band, steps/min, e.g. 95-110")
    p.add_argument("--start", default=None, help="first day, YYYY-MM-DD (default today, UTC)")
    p.add_argument("--end", default=None, help="last day, YYYY-MM-DD (default open)")
    p.add_argument("--note", default=None, help="therapist's note (no identifying data)")
    p.add_argument("--metronome-spm", type=float, default=None,
                   help="metronome tempo the device plays, steps/min")
    p.add_argument("--cadence-cue", type=_bool, default=None, metavar="yes|no")
    p.add_argument("--rest-suggestion", type=_bool, default=None, metavar="yes|no")
    p.add_argument("--progress-every-s", type=float, default=None)
    if not creating:
        p.add_argument("--active", type=_bool, default=None, metavar="yes|no")
        p.add_argument("--no-cadence-band", action="store_true",
                       help="remove the cadence band")


def add_parser(sub: Any) -> None:
    """Register ``justwalk db`` and its subcommands on the CLI's subparsers."""
    s = sub.add_parser("db", help="patients, prescriptions and sessions (the database)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    dsub = s.add_subparsers(dest="action", required=True)

    c = dsub.add_parser("upgrade", help="apply the migrations (creates the schema)")
    c.add_argument("--revision", default="head")
    c.set_defaults(func=_upgrade)

    c = dsub.add_parser("import-profiles", help="the patient-profiles JSON file "
                        "(JUSTWALK_PATIENT_PROFILES format) into a clinic")
    c.add_argument("file", type=Path)
    c.add_argument("--clinic", type=_id, required=True)
    c.set_defaults(func=_import_profiles)

    g = dsub.add_parser("clinic", help="clinics").add_subparsers(dest="what", required=True)
    c = g.add_parser("add", help="register a clinic")
    c.add_argument("clinic_id", type=_id)
    c.set_defaults(func=_run(_clinic_add))
    g.add_parser("list", help="the clinics").set_defaults(func=_run(_clinic_list))

    g = dsub.add_parser("token", help="clinics' API tokens").add_subparsers(
        dest="what", required=True)
    c = g.add_parser("issue", help="a new API token (printed once; stored hashed)")
    c.add_argument("clinic_id", type=_id)
    c.add_argument("--label", default="", help="what the token is for")
    c.set_defaults(func=_run(_token_issue))
    c = g.add_parser("revoke", help="revoke all of a clinic's tokens")
    c.add_argument("clinic_id", type=_id)
    c.set_defaults(func=_run(_token_revoke))

    g = dsub.add_parser("patient", help="patient profiles").add_subparsers(
        dest="what", required=True)
    c = g.add_parser("create", help="a new pseudonymous patient")
    c.add_argument("patient_id", type=_id)
    c.add_argument("--clinic", type=_id, required=True)
    _profile_options(c)
    c.set_defaults(func=_run(_patient_create))
    c = g.add_parser("list", help="patients (of one clinic with --clinic)")
    c.add_argument("--clinic", type=_id, default=None)
    c.set_defaults(func=_run(_patient_list))
    c = g.add_parser("show", help="one patient's profile (JSON)")
    c.add_argument("patient_id", type=_id)
    c.add_argument("--clinic", type=_id, default=None)
    c.set_defaults(func=_run(_patient_show))
    c = g.add_parser("update", help="change a patient's profile")
    c.add_argument("patient_id", type=_id)
    c.add_argument("--clinic", type=_id, default=None)
    _profile_options(c)
    c.add_argument("--clear-sensor-height", action="store_true",
                   help="use the default sensor height again")
    c.set_defaults(func=_run(_patient_update))

    g = dsub.add_parser("prescription", help="prescriptions").add_subparsers(
        dest="what", required=True)
    c = g.add_parser("create", help="prescribe walking practice or a walk test")
    c.add_argument("patient_id", type=_id)
    c.add_argument("--clinic", type=_id, default=None)
    _prescription_options(c, creating=True)
    c.set_defaults(func=_run(_prescription_create))
    c = g.add_parser("list", help="a patient's prescriptions")
    c.add_argument("patient_id", type=_id)
    c.add_argument("--clinic", type=_id, default=None)
    c.add_argument("--active-only", action="store_true")
    c.set_defaults(func=_run(_prescription_list))
    c = g.add_parser("show", help="one prescription (JSON)")
    c.add_argument("prescription_id", type=int)
    c.add_argument("--clinic", type=_id, default=None)
    c.set_defaults(func=_run(_prescription_show))
    c = g.add_parser("update", help="change a prescription")
    c.add_argument("prescription_id", type=int)
    c.add_argument("--clinic", type=_id, default=None)
    _prescription_options(c, creating=False)
    c.set_defaults(func=_run(_prescription_update))

    g = dsub.add_parser("session", help="sessions").add_subparsers(dest="what", required=True)
    c = g.add_parser("list", help="sessions, newest first")
    c.add_argument("--patient", type=_id, default=None)
    c.add_argument("--clinic", type=_id, default=None)
    c.add_argument("--limit", type=int, default=50)
    c.set_defaults(func=_run(_session_list))
