"""Save a screenshot of each dashboard page under docs/screenshots.

Starts a stack of its own on free ports in a temporary folder, runs the demo
on the first --customers CDNOW customers, then walks the dashboard in headless
Chromium as the first admin (frontend/e2e/walkthrough.mjs) and keeps the
pictures. `make screenshots` runs it; the README shows the pictures.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
from pathlib import Path

from rich.progress import Progress

from retain_cli.admin_accounts import ensure_first_admins
from retain_cli.clients import Clients
from retain_cli.demo import DEMO_NOW, Demo, DemoOptions
from retain_cli.stack import Stack, StackOptions
from retain_cli.walkthrough import run_walkthrough
from retain_runtime import logs
from retain_runtime.clock import Clock

ROOT = Path(__file__).resolve().parents[1]
log = logging.getLogger("screenshots")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=3000)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots")
    args = parser.parse_args()
    logs.configure("text", "INFO", "screenshots")
    with tempfile.TemporaryDirectory(prefix="retain-screenshots-") as state:
        options = StackOptions(
            state_dir=Path(state),
            free_ports=True,
            clock_offset_seconds=Clock.starting_at(DEMO_NOW).offset_seconds,
        )
        stack = Stack(options)
        stack.start()
        try:
            return _capture(stack, args.customers, args.out)
        finally:
            stack.stop()


def _capture(stack: Stack, customers: int, out: Path) -> int:
    clients = Clients.connect(stack.env)
    try:
        log.info("Running the demo on %d customers", customers)
        with Progress() as progress:
            summary = Demo(clients, DemoOptions(customers=customers), progress).run()
        accounts = ensure_first_admins(clients.user, stack.options.state_dir)
    finally:
        clients.close()
    log.info("Walking the dashboard at %s", stack.gateway_url)
    walk = run_walkthrough(
        stack.gateway_url, accounts, out, results_campaign=summary.values["campaign_id"]
    )
    print(walk.output)
    if walk.returncode != 0:
        log.error("The walkthrough failed; see the output above and %s", out)
        return 1
    log.info("Saved screenshots of %d steps in %s", len(walk.outcome["steps"]), out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
