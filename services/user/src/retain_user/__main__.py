"""Entry point: `python -m retain_user` runs the user service until SIGTERM."""

from __future__ import annotations

import asyncio
import logging
import sys

from retain_runtime import logs
from retain_runtime.clock import Clock
from retain_runtime.errors import SettingsError
from retain_runtime.server import wait_for_signal

from retain_user import server
from retain_user.settings import UserSettings

log = logging.getLogger("retain_user")


async def serve(settings: UserSettings) -> None:
    # Install the signal handlers before the service announces itself, so a
    # supervisor that stops it right after the start line is honoured.
    stop_signal = asyncio.create_task(wait_for_signal())
    await asyncio.sleep(0)
    service = await server.start(settings, Clock(settings.clock_offset_seconds))
    log.info("User service started on port %d", service.port)
    await stop_signal
    log.info("User service received a stop signal; stopping")
    await service.stop()


def main() -> None:
    logs.configure(service="user")
    try:
        settings = UserSettings.from_env()
    except SettingsError as error:
        log.error("User service cannot start: %s", error)
        sys.exit(2)
    logs.configure(settings.log_format, settings.log_level, "user")
    server.prepare_database(settings.database_url)
    asyncio.run(serve(settings))


if __name__ == "__main__":
    main()
