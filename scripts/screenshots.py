"""Save a screenshot of each dashboard page under docs/screenshots.

Starts a stack of its own on free ports in a temporary folder and runs the
demo on the first --customers CDNOW customers. Then it starts the stack again
with the clock on the day after the holdout period, as `make up` does after
`make demo`, and walks the dashboard in headless Chromium as the first admin
(frontend/e2e/walkthrough.mjs), keeping the pictures. `make screenshots` runs
it, and the README shows the pictures.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from rich.progress import Progress

from retain_cli.admin_accounts import ensure_first_admins
from retain_cli.clients import Clients
from retain_cli.demo import DEMO_AFTER, DEMO_NOW, Demo, DemoOptions
from retain_cli.stack import Stack, StackOptions
from retain_cli.walkthrough import run_walkthrough
from retain_runtime import logs
from retain_runtime.clock import Clock

ROOT = Path(__file__).resolve().parents[1]
log = logging.getLogger("screenshots")
T = TypeVar("T")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=3000)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots")
    args = parser.parse_args()
    logs.configure("text", "INFO", "screenshots")
    with tempfile.TemporaryDirectory(prefix="retain-screenshots-") as state:
        state_dir = Path(state)
        campaign_id = _with_stack(
            state_dir, DEMO_NOW, lambda s: _demo(s, args.customers)
        )
        # As after `make demo` and `make up`: the day after the holdout period.
        return _with_stack(
            state_dir, DEMO_AFTER, lambda s: _walk(s, campaign_id, args.out)
        )


def _with_stack(state_dir: Path, moment: dt.datetime, work: Callable[[Stack], T]) -> T:
    options = StackOptions(
        state_dir=state_dir,
        free_ports=True,
        clock_offset_seconds=Clock.starting_at(moment).offset_seconds,
    )
    stack = Stack(options)
    stack.start()
    try:
        return work(stack)
    finally:
        stack.stop()


def _demo(stack: Stack, customers: int) -> int:
    """Run the demo and return its campaign's id."""
    clients = Clients.connect(stack.env)
    try:
        log.info("Running the demo on %d customers", customers)
        with Progress() as progress:
            summary = Demo(clients, DemoOptions(customers=customers), progress).run()
    finally:
        clients.close()
    return int(summary.values["campaign_id"])


def _walk(stack: Stack, campaign_id: int, out: Path) -> int:
    clients = Clients.connect(stack.env)
    try:
        accounts = ensure_first_admins(clients.user, stack.options.state_dir)
    finally:
        clients.close()
    log.info("Walking the dashboard at %s", stack.gateway_url)
    walk = run_walkthrough(
        stack.gateway_url, accounts, out, results_campaign=campaign_id
    )
    print(walk.output)
    if walk.returncode != 0:
        log.error("The walkthrough failed; see the output above and %s", out)
        return 1
    log.info("Saved screenshots of %d steps in %s", len(walk.outcome["steps"]), out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
