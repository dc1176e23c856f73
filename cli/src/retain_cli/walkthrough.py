"""Runs the dashboard walkthrough in headless Chromium against a started stack.

The walkthrough itself is frontend/e2e/walkthrough.mjs, driven by
playwright-core from the dashboard's node_modules. It signs in as the first
admin, creates and launches a campaign that the second admin approves, and
can save a screenshot of each page. Passwords travel in the environment,
never on a command line.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from retain_cli.admin_accounts import AdminAccount

FRONTEND = Path(__file__).resolve().parents[3] / "frontend"
SCRIPT = FRONTEND / "e2e" / "walkthrough.mjs"
CHROMIUM_NAMES = ("chromium", "chromium-browser")
# The walk waits up to three minutes for delivery; the rest takes under one.
TIMEOUT_SECONDS = 420


class WalkthroughError(RuntimeError):
    """The walkthrough could not start: a tool or an account is missing."""


@dataclass
class Walkthrough:
    """The outcome of one run: exit code, console output and recorded facts."""

    returncode: int
    output: str
    outcome: dict[str, Any] = field(default_factory=dict)


def find_chromium(environ: dict[str, str]) -> str:
    """Return the Chromium binary: RETAIN_CHROMIUM, or the first on PATH."""
    chosen = environ.get("RETAIN_CHROMIUM")
    if chosen:
        return chosen
    for name in CHROMIUM_NAMES:
        found = shutil.which(name, path=environ.get("PATH"))
        if found:
            return found
    raise WalkthroughError(
        "Chromium was not found on PATH: install Debian's chromium package "
        "or set RETAIN_CHROMIUM to its binary"
    )


def run_walkthrough(
    gateway_url: str,
    accounts: list[AdminAccount],
    screenshot_dir: Path | None = None,
    results_campaign: int | None = None,
) -> Walkthrough:
    """Walk the dashboard as the first admin, with the second as approver."""
    if not (FRONTEND / "node_modules" / "playwright-core").is_dir():
        raise WalkthroughError("playwright-core is not installed: run `make frontend`")
    admin, approver = _two_admins(accounts)
    env = {
        **os.environ,
        "RETAIN_GATEWAY_URL": gateway_url,
        "RETAIN_ADMIN_EMAIL": admin.email,
        "RETAIN_ADMIN_PASSWORD": _password(admin),
        "RETAIN_APPROVER_EMAIL": approver.email,
        "RETAIN_APPROVER_PASSWORD": _password(approver),
        "RETAIN_CHROMIUM": find_chromium(dict(os.environ)),
    }
    if screenshot_dir is not None:
        env["RETAIN_SCREENSHOT_DIR"] = str(screenshot_dir)
    if results_campaign is not None:
        env["RETAIN_RESULTS_CAMPAIGN"] = str(results_campaign)
    with tempfile.TemporaryDirectory(prefix="retain-walk-") as scratch:
        result_path = Path(scratch) / "outcome.json"
        env["RETAIN_WALKTHROUGH_RESULT"] = str(result_path)
        finished = subprocess.run(
            ["node", str(SCRIPT)],
            cwd=FRONTEND,
            env=env,
            capture_output=True,
            text=True,
            timeout=TIMEOUT_SECONDS,
            check=False,
        )
        outcome = json.loads(result_path.read_text()) if result_path.is_file() else {}
    return Walkthrough(finished.returncode, finished.stdout + finished.stderr, outcome)


def _two_admins(accounts: list[AdminAccount]) -> tuple[AdminAccount, AdminAccount]:
    saved = [account for account in accounts if account.password_saved]
    if len(saved) < 2:
        raise WalkthroughError(
            "the walkthrough needs two admins with saved passwords; "
            "start from a fresh state folder so `retain` creates them"
        )
    return saved[0], saved[1]


def _password(account: AdminAccount) -> str:
    return account.password_path.read_text().strip()
