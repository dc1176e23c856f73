"""Entry point: ``python -m retain_events`` serves EventsService until SIGTERM."""

from __future__ import annotations

import asyncio
import logging
import sys

from retain_runtime import logs, server
from retain_runtime.clock import Clock
from retain_runtime.errors import SettingsError
from retain_runtime.settings import ServiceSettings

from retain_events.server import prepare_database, start

log = logging.getLogger("retain_events")


async def serve(settings: ServiceSettings) -> None:
    """Serve until SIGTERM or SIGINT, then stop gracefully."""
    service = await start(settings, Clock(settings.clock_offset_seconds))
    log.info("Events service started on port %d", service.port)
    await server.wait_for_signal()
    log.info("Events service stopping")
    await service.stop()


def main() -> None:
    try:
        settings = ServiceSettings.from_env("events")
    except SettingsError as error:
        sys.exit(f"retain_events: {error}")
    logs.configure(settings.log_format, settings.log_level, "events")
    prepare_database(settings.database_url)
    asyncio.run(serve(settings))


if __name__ == "__main__":
    main()
