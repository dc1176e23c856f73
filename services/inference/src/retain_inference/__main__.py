"""Entry point: `python -m retain_inference`."""

from __future__ import annotations

import asyncio
import logging

from retain_inference import server
from retain_inference.settings import InferenceSettings
from retain_runtime import logs
from retain_runtime.server import wait_for_signal

log = logging.getLogger("retain_inference")


async def main() -> None:
    settings = InferenceSettings.from_env()
    logs.configure(settings.service.log_format, settings.service.log_level, "inference")
    server.prepare_database(settings.service.database_url)
    service = await server.start(settings)
    log.info("Inference service started on port %d", service.port)
    await wait_for_signal()
    log.info("Inference service stopping")
    await service.stop()


if __name__ == "__main__":
    asyncio.run(main())
