"""Entry point of the comms server: ``python -m retain_comms``."""

from __future__ import annotations

import asyncio
import logging

from retain_runtime import logs
from retain_runtime.clock import Clock
from retain_runtime.server import wait_for_signal

from retain_comms.server import prepare_database, start
from retain_comms.settings import CommsSettings

log = logging.getLogger("retain_comms")


async def serve(settings: CommsSettings) -> None:
    service = await start(settings, Clock(settings.service.clock_offset_seconds))
    log.info("Comms server started on port %d", service.port)
    await wait_for_signal()
    log.info("Comms server stopping")
    await service.stop()


def main() -> None:
    settings = CommsSettings.from_env()
    logs.configure(settings.service.log_format, settings.service.log_level, "comms")
    log.info("Comms server starting")
    prepare_database(settings.service.database_url)
    asyncio.run(serve(settings))


if __name__ == "__main__":
    main()
