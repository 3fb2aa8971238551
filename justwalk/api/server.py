"""``justwalk api``: serve the clinics' HTTP API on ``Settings.api_host:api_port``.

Plain HTTP, for loopback or the compose network behind a TLS-terminating proxy, like the
gateway. The database's schema must be the newest (``justwalk db upgrade``).
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys

from aiohttp import web

from justwalk.api.app import create_app
from justwalk.config import Settings
from justwalk.db import DatabaseError, Repository, open_repository

log = logging.getLogger(__name__)


async def serve(settings: Settings, repository: Repository) -> None:
    """Serve until cancelled or SIGTERM."""
    runner = web.AppRunner(create_app(repository, settings), access_log=None, shutdown_timeout=5.0)
    await runner.setup()
    try:
        site = web.TCPSite(runner, settings.api_host, settings.api_port)
        await site.start()
        log.info("API listening on http://%s:%d", settings.api_host, settings.api_port)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        try:
            await stop.wait()
        finally:
            loop.remove_signal_handler(signal.SIGTERM)
    finally:
        await runner.cleanup()


def run_api(settings: Settings) -> int:
    """Entry point of ``justwalk api``."""
    try:
        repository = open_repository(settings)
    except DatabaseError as exc:
        print(f"justwalk api: {exc}", file=sys.stderr)
        return 2
    try:
        asyncio.run(serve(settings, repository))
    finally:
        repository.engine.dispose()
    return 0
