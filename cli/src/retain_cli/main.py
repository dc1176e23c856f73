"""The `retain` command line: up, demo, import and certs."""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import time
from pathlib import Path
from typing import Annotated
from urllib.parse import urlparse

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from retain_cli.admin_accounts import AdminAccount, ensure_first_admins
from retain_cli.stack import Stack, StackError, StackOptions
from retain_runtime import logs
from retain_runtime.clock import Clock

app = typer.Typer(help="Retain: churn prediction and consented win-back messages.", no_args_is_help=True)
console = Console(stderr=True)
log = logging.getLogger(__name__)

StateDir = Annotated[
    Path, typer.Option("--state-dir", envvar="RETAIN_STATE_DIR", help="Folder for databases, certificates, logs and models.")
]
STACK_FILE = "stack.json"
# The clock the demo leaves for `retain up`, so the dashboard shows the demo's
# data as of the day after its holdout period rather than decades later.
CLOCK_FILE = "clock.json"


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description:<20}"), BarColumn(), MofNCompleteColumn(),
        TimeElapsedColumn(), console=console, transient=False,
    )


def _write_stack_file(stack: Stack) -> None:
    keys = [k for k in stack.env if k.endswith("_TARGET") or k == "RETAIN_CERT_DIR"]
    path = stack.options.state_dir / STACK_FILE
    path.write_text(json.dumps({k: stack.env[k] for k in keys}, indent=2))


def _save_clock(state_dir: Path, offset_seconds: float) -> None:
    path = state_dir / CLOCK_FILE
    path.write_text(json.dumps({"offset_seconds": offset_seconds}) + "\n")


def _saved_clock(state_dir: Path) -> float:
    path = state_dir / CLOCK_FILE
    if not path.exists():
        return 0.0
    try:
        return float(json.loads(path.read_text())["offset_seconds"])
    except (ValueError, KeyError, TypeError) as error:
        raise typer.BadParameter(f"{path} is not a saved clock ({error}); delete it") from None


def _read_stack_file(state_dir: Path) -> dict[str, str]:
    path = state_dir / STACK_FILE
    if not path.exists():
        raise typer.BadParameter(f"{path} is missing; start the stack with `retain up` first")
    return dict(json.loads(path.read_text()))


@app.command()
def up(state_dir: StateDir = Path(".retain")) -> None:
    """Start PostgreSQL, Redis, the services, the worker and Envoy until Ctrl-C."""
    logs.configure("text", "INFO", "retain")
    offset = _saved_clock(state_dir)
    stack = Stack(StackOptions(state_dir=state_dir, clock_offset_seconds=offset))
    _start_or_exit(stack)
    _write_stack_file(stack)
    try:
        accounts = _first_admins(stack)
    except BaseException:
        stack.stop()
        raise
    console.print(f"Retain is up. Gateway: {stack.gateway_url}  Logs: {stack.log_dir}")
    if offset:
        now = Clock(offset).now()
        console.print(
            f"The clock continues from the demo and reads {now:%Y-%m-%d %H:%M} UTC; "
            f"delete {state_dir / CLOCK_FILE} to run on today's date."
        )
    _print_sign_in(stack, accounts)
    console.print("Press Ctrl-C to stop.")
    stopping = False

    def request_stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, request_stop)
    try:
        while not stopping:
            stack.supervise_once()
            time.sleep(0.5)
    except StackError as error:
        console.print(f"Stopping Retain because {error}")
        raise typer.Exit(1) from None
    finally:
        console.print("Stopping Retain...")
        stack.stop()


@app.command()
def demo(
    state_dir: StateDir = Path(".retain"),
    fresh: Annotated[bool, typer.Option(help="Delete the state folder first.")] = False,
    customers: Annotated[int, typer.Option(help="Use the first N CDNOW customers; 0 for all 23,570.")] = 0,
    summary_json: Annotated[Path | None, typer.Option(help="Also write the summary as JSON here.")] = None,
) -> None:
    """Run the retention loop on the CDNOW data and print a summary."""
    from retain_cli.clients import Clients
    from retain_cli.demo import DEMO_AFTER, DEMO_NOW, Demo, DemoOptions

    logs.configure("text", "WARNING", "retain")
    _refuse_live_account()
    if fresh and state_dir.exists():
        shutil.rmtree(state_dir)
    offset = Clock.starting_at(DEMO_NOW).offset_seconds
    stack = Stack(StackOptions(state_dir=state_dir, clock_offset_seconds=offset))
    with console.status("Starting the stack"):
        started = time.monotonic()
        _start_or_exit(stack)
        startup_seconds = round(time.monotonic() - started, 2)
    _write_stack_file(stack)
    clients = Clients.connect(stack.env)
    try:
        with _progress() as progress:
            summary = Demo(clients, DemoOptions(customers=customers), progress).run()
        summary.stage_seconds = {"startup": startup_seconds, **summary.stage_seconds}
        accounts = ensure_first_admins(clients.user, state_dir)
        _save_clock(state_dir, Clock.starting_at(DEMO_AFTER).offset_seconds)
    finally:
        clients.close()
        stack.stop()
    result = summary.as_dict()
    _print_summary(result)
    console.print("To see this data in the dashboard, run `make up` and open the address below.")
    _print_sign_in(stack, accounts)
    if summary_json:
        summary_json.parent.mkdir(parents=True, exist_ok=True)
        summary_json.write_text(json.dumps(result, indent=2) + "\n")
        console.print(f"Summary written to {summary_json}")


def _start_or_exit(stack: Stack) -> None:
    """Start the stack, or print why it cannot start and exit with code 1."""
    try:
        stack.start()
    except (StackError, TimeoutError, RuntimeError, OSError) as error:
        console.print(f"Retain did not start: {error}")
        raise typer.Exit(1) from None


def _first_admins(stack: Stack) -> list[AdminAccount]:
    from retain_cli.clients import Clients

    clients = Clients.connect(stack.env)
    try:
        return ensure_first_admins(clients.user, stack.options.state_dir)
    finally:
        clients.close()


def _print_sign_in(stack: Stack, accounts: list[AdminAccount]) -> None:
    if stack.dashboard_port is None:
        console.print("No dashboard is served: build it with `make frontend`.")
    else:
        console.print(f"Dashboard: {stack.gateway_url}")
    for account in accounts:
        if account.password_saved:
            where = f"password in {account.password_path}"
        else:
            where = "password not saved here (the account existed already)"
        console.print(f"  Sign in as {account.email}, {where}")


def _refuse_live_account() -> None:
    base = os.environ.get("AT_BASE_URL", "")
    if os.environ.get("AT_API_KEY") and urlparse(base).hostname not in ("127.0.0.1", "localhost"):
        console.print(
            "retain demo sends to fictitious phone numbers and refuses to use a live "
            "Africa's Talking account; unset AT_API_KEY to use the local emulator."
        )
        raise typer.Exit(2)


def _print_summary(result: dict[str, object]) -> None:
    table = Table(title="Retain demo summary")
    table.add_column("figure")
    table.add_column("value", justify="right")
    for key, value in result.items():
        if key == "examples":
            continue
        if isinstance(value, dict):
            value = ", ".join(f"{k} {v}" for k, v in value.items())
        table.add_row(key, str(value))
    Console().print(table)
    _print_examples(result.get("examples", []))


def _days(days: float) -> str:
    # Beyond a year the model's long-tailed estimate is too uncertain to print.
    return "over a year" if days > 365 else f"{days:.0f}"


def _print_examples(examples: object) -> None:
    if not isinstance(examples, list) or not examples:
        return
    table = Table(title="Why the model calls them at risk (first at-risk customers)")
    for column in ("customer", "churn probability", "expected days to next purchase"):
        table.add_column(column, justify="right")
    table.add_column("reasons")
    for example in examples:
        table.add_row(
            str(example["customer_id"]),
            f"{example['churn_probability']:.3f}",
            _days(example["expected_days_to_next_activity"]),
            "; ".join(example["reasons"]),
        )
    Console().print(table)


@app.command(name="import")
def import_(
    customers: Annotated[Path | None, typer.Option(help="Customers CSV file.", exists=True, dir_okay=False)] = None,
    events: Annotated[Path | None, typer.Option(help="Events CSV file.", exists=True, dir_okay=False)] = None,
    state_dir: StateDir = Path(".retain"),
) -> None:
    """Import customers and events from CSV files into a running stack."""
    from retain_cli.clients import Clients
    import grpc

    from retain_cli.importer import CsvFormatError, import_customers, import_events

    if customers is None and events is None:
        raise typer.BadParameter("give --customers FILE, --events FILE or both")
    logs.configure("text", "WARNING", "retain")
    clients = Clients.connect(_read_stack_file(state_dir))
    failed = False
    try:
        for path, run in ((customers, import_customers), (events, import_events)):
            if path is None:
                continue
            try:
                report = run(clients, path)
            except CsvFormatError as error:
                console.print(f"{error}; nothing was imported from this file")
                raise typer.Exit(1) from None
            except UnicodeDecodeError as error:
                console.print(
                    f"{path} is not UTF-8 text (byte {error.start}); save it as UTF-8 "
                    "and import it again; nothing was imported from this file"
                )
                raise typer.Exit(1) from None
            except grpc.RpcError as error:
                console.print(
                    f"{path}: the stack did not answer ({error.code().name}: "
                    f"{error.details()}); is `retain up` running?"
                )
                raise typer.Exit(1) from None
            console.print(
                f"{path}: {report.rows} rows, {report.accepted} accepted, "
                f"{report.duplicates} already present, {len(report.errors)} rejected"
            )
            for error in report.errors:
                console.print(f"  line {error.line}: {error.field}: {error.reason}")
            failed = failed or bool(report.errors)
    finally:
        clients.close()
    if failed:
        raise typer.Exit(1)


@app.command()
def certs(
    state_dir: StateDir = Path(".retain"),
) -> None:
    """Create the development CA and one certificate per mesh member."""
    from retain_runtime.certs import issue_mesh
    from retain_runtime.credentials import MESH_NAMES

    directory = state_dir / "certs"
    issued = issue_mesh(directory, MESH_NAMES)
    for name, paths in issued.items():
        console.print(f"{name:<10} {paths.cert}")
