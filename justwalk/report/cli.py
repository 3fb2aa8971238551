"""``justwalk report``: write a patient's progress report to a file (HTML or PDF).

    justwalk report pt-0042 --from 2026-09-01 --to 2026-11-30 --out report.html
    justwalk report pt-0042 --from 2026-09-01 --to 2026-11-30 --out report.pdf
    justwalk report --example --out docs/example-report.html

The database is ``JUSTWALK_DATABASE_URL`` (or the SQLite file), InfluxDB is
``JUSTWALK_INFLUX_URL`` with the clinics' databases ``<JUSTWALK_INFLUX_DB>_<clinic>``; the
operator's view: any clinic's patient. The format follows the file's extension (``.pdf``:
printed by headless Chromium) unless ``--format`` says. ``--example`` renders the synthetic
patient of ``justwalk.report.example`` (no database or InfluxDB needed). Bad input exits
with status 2 and a message.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from justwalk.config import Settings


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``report`` on the ``justwalk`` command."""
    s = sub.add_parser("report", help="a patient's progress report (HTML or PDF) for a period",
                       description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    s.add_argument("patient", nargs="?", help="pseudonymous patient id")
    s.add_argument("--from", dest="first", metavar="YYYY-MM-DD", help="first day (UTC)")
    s.add_argument("--to", dest="last", metavar="YYYY-MM-DD", help="last day (included)")
    s.add_argument("--out", type=Path, required=True, help="file to write (.html or .pdf)")
    s.add_argument("--format", choices=["html", "pdf"], default=None,
                   help="default: from the extension of --out")
    s.add_argument("--example", action="store_true",
                   help="the synthetic example patient instead of the database")
    s.set_defaults(func=run)


def _fail(message: str) -> int:
    print(f"justwalk report: {message}", file=sys.stderr)
    return 2


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Entry point of ``justwalk report``."""
    from justwalk.db import Conflict, DatabaseError, InputError, NotFound, open_repository
    from justwalk.report.browser import BrowserError, html_to_pdf
    from justwalk.report.data import Period
    from justwalk.report.gather import gather
    from justwalk.report.render import render_html

    kind = args.format or ("pdf" if args.out.suffix.lower() == ".pdf" else "html")
    try:
        if args.example:
            from justwalk.report.example import example_data

            data = example_data()
        else:
            if not args.patient:
                return _fail("give a patient id (or --example)")
            period = Period.parse(args.first, args.last)
            repo = open_repository(settings)
            try:
                data = asyncio.run(gather(settings, repo, None, args.patient, period))
            finally:
                repo.engine.dispose()
        html = render_html(data)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        if kind == "pdf":
            args.out.write_bytes(asyncio.run(
                html_to_pdf(html, chromium_binary=settings.chromium_binary)))
        else:
            args.out.write_text(html, encoding="utf-8")
    except (InputError, NotFound, Conflict, DatabaseError, BrowserError, OSError) as exc:
        return _fail(str(exc))
    print(f"wrote {args.out} ({kind}, {args.out.stat().st_size} bytes)")
    return 0
