"""SMS delivery throughput: from LaunchCampaign to `submitted` at the emulator.

The script starts PostgreSQL and Redis from their wheels. Each run starts a
comms server on a fresh database, with the test doubles of its peers (user,
inference, events), the Africa's Talking emulator and the stand-in for Envoy's
callback routes, all in this process (services/comms/tests/comms_harness.py).
The workers run as N processes, ``python -m retain_comms.worker``. Delivery
reports flow back through the stand-in while the campaign sends.

Runs: 1 worker process, 4 worker processes, and 4 while the emulator returns
HTTP 500 to a random share of send requests (--fault-rate). A bare loop of
HTTP POSTs to an emulator, from 1 and from 4 processes, gives the limit of the
path without the pipeline: once with one recipient per POST, and once with
RETAIN_COMMS_SEND_BATCH recipients per POST, as the workers send one text.

Every customer of a run has another first name, so every text differs and
each message takes a request, as in a campaign whose template fills the first
name. With --shared-text every customer is named Amina, so a batch of messages
has one text and goes out in one request.

A run's rate is messages / (time of the last acceptance at the emulator -
time of the LaunchCampaign call), so it includes selection, the ledger write
and the enqueue. It counts numbers received more than once (duplicates) and
messages without a final state after --settle-timeout seconds (lost).

Usage: python bench/sms.py [--messages 5000] [--threads 8] [--fault-rate 0.05]
       [--shared-text] [--no-reports] [--json PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import logging
import multiprocessing
import os
import signal
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from dataclasses import asdict, dataclass
from http.server import ThreadingHTTPServer
from multiprocessing.synchronize import Barrier
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "services" / "comms" / "tests"))

from comms_doubles import FakeCustomer, phone_of
from comms_harness import API_KEY, FINAL, USERNAME, Stack, open_stack
from comms_processes import WorkerProcess
from retain.comms.v1 import comms_pb2
from retain_cli.infra import Postgres, Redis
from retain_comms.settings import DEFAULT_SEND_BATCH
from retain_comms.tables import messages
from retain_emulator import AfricasTalkingEmulator
from retain_runtime.certs import issue_mesh
from retain_runtime.credentials import MESH_NAMES

log = logging.getLogger("bench.sms")

# Customer ids of the measured campaign start here; warm-up customers are below.
FIRST_CUSTOMER = 1_000_000
# Messages per worker process sent before the measurement, two batches each,
# so the processes have likely opened their database pools, channels and HTTP
# clients. A process that fetched no warm-up batch opens them in the run.
WARM_UP_PER_WORKER = 2 * DEFAULT_SEND_BATCH
# The text of the bare loop's sends: the test template with its name filled.
TEXT = "Hi Amina, we miss you at SafiriRide. Reply STOP to opt out."
# The production default of RETAIN_COMMS_SWEEP_SECONDS, in place of the 0.2 s
# that the test harness sets, and a send rate limit far above what the
# pipeline reaches, so the limiter takes its Redis round trip per batch but
# never makes a worker wait.
OVERRIDES = {
    "RETAIN_COMMS_SWEEP_SECONDS": "5",
    "AT_SEND_RATE_PER_SECOND": "100000",
}


@dataclass
class RunResult:
    workers: int
    fault_rate: float
    messages: int
    launch_seconds: float
    submit_seconds: float
    per_s: float
    done_seconds: float
    duplicates: int
    lost: int
    injected_failures: int
    states: dict[str, int]
    cpu_seconds: dict[str, float]


def main() -> None:
    args = parse_args()
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    for noisy in ("retain_emulator", "retain_comms", "httpx", "dramatiq"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # The sweeper's lines show sends enqueued again during a run.
    logging.getLogger("retain_comms.sweeper").setLevel(logging.INFO)
    with tempfile.TemporaryDirectory(prefix="retain-bench-sms-") as directory:
        try:
            report = asyncio.run(run_all(args, Path(directory)))
        except asyncio.CancelledError:
            log.error("Stopped by a signal; every server and worker was stopped")
            sys.exit(128 + STOP_SIGNALS[-1])
    print(json.dumps(report, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--messages", type=int, default=5000, help="campaign size of each run"
    )
    parser.add_argument(
        "--threads", type=int, default=8, help="Dramatiq threads per worker process"
    )
    parser.add_argument(
        "--fault-rate",
        type=float,
        default=0.05,
        help="share of send requests that get HTTP 500 in the faults run",
    )
    parser.add_argument(
        "--settle-timeout",
        type=float,
        default=600.0,
        help="seconds a run waits for every message to be final; those that are "
        "not by then count as lost",
    )
    parser.add_argument(
        "--no-reports",
        action="store_true",
        help="send no delivery reports during the measured campaigns, to time the "
        "send path alone; a SUBMITTED message then counts as done",
    )
    parser.add_argument(
        "--shared-text",
        action="store_true",
        help="give every customer the first name Amina, so a batch of messages "
        "shares one text and one request",
    )
    parser.add_argument("--json", help="write the results to this file")
    return parser.parse_args()


async def run_all(args: argparse.Namespace, directory: Path) -> dict[str, Any]:
    stop_on_signals()
    cert_dir = directory / "certs"
    issue_mesh(cert_dir, list(MESH_NAMES))
    postgres = Postgres(directory / "pg" / "data")
    redis = Redis(directory / "redis")
    postgres.start()
    redis.start()
    try:
        bare = {n: bare_post_rate(n, args.messages) for n in (1, 4)}
        batched = {
            n: bare_post_rate(n, args.messages, DEFAULT_SEND_BATCH) for n in (1, 4)
        }
        runs = []
        for workers, rate in ((1, 0.0), (4, 0.0), (4, args.fault_rate)):
            check_not_stopped()
            runs.append(
                await pipeline_run(args, directory, postgres, redis, workers, rate)
            )
    finally:
        redis.stop()
        postgres.stop()
    return summary(args, runs, bare, batched)


# Set by SIGINT or SIGTERM. A cancellation can be lost in a library that
# catches it while it cleans up, so the loops also check this.
STOPPING = threading.Event()
# The numbers of the signals received.
STOP_SIGNALS: list[int] = []


def stop_on_signals() -> None:
    """Cancel the running task on SIGINT or SIGTERM, so every finally block
    stops what the script started."""
    task = asyncio.current_task()
    assert task is not None
    loop = asyncio.get_running_loop()

    def stop(signum: int) -> None:
        log.warning("Got signal %d; stopping the servers and workers", signum)
        STOP_SIGNALS.append(signum)
        STOPPING.set()
        task.cancel()

    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop, signum)


def check_not_stopped() -> None:
    if STOPPING.is_set():
        raise asyncio.CancelledError


def summary(
    args: argparse.Namespace,
    runs: list[RunResult],
    bare: dict[int, float],
    batched: dict[int, float],
) -> dict[str, Any]:
    one_worker, four_workers, faults = runs
    return {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "messages": args.messages,
        "threads_per_worker": args.threads,
        "fault_rate": args.fault_rate,
        "delivery_reports": not args.no_reports,
        "shared_text": args.shared_text,
        "per_s_1_worker": round(one_worker.per_s, 1),
        "per_s_4_workers": round(four_workers.per_s, 1),
        "per_s_4_workers_faults": round(faults.per_s, 1),
        "bare_post_per_s": {str(n): round(rate, 1) for n, rate in bare.items()},
        "recipients_per_batched_post": DEFAULT_SEND_BATCH,
        "bare_batched_post_per_s": {
            str(n): round(rate, 1) for n, rate in batched.items()
        },
        "duplicates": sum(run.duplicates for run in runs),
        "lost": sum(run.lost for run in runs),
        "runs": [asdict(run) for run in runs],
        "cpu_count": os.cpu_count(),
        "load_average": os.getloadavg(),
    }


# The bare POST loop


def bare_post_rate(processes: int, total: int, recipients: int = 1) -> float:
    """Return recipients accepted per second from processes looping over their
    share, with recipients numbers per POST."""
    with AfricasTalkingEmulator(USERNAME, API_KEY, balance="10000000") as emulator:
        context = multiprocessing.get_context("spawn")
        barrier = context.Barrier(processes + 1)
        results = context.Queue()
        share = total // processes
        children = [
            context.Process(
                target=post_loop,
                args=(
                    emulator.base_url,
                    index * share,
                    share,
                    recipients,
                    barrier,
                    results,
                ),
            )
            for index in range(processes)
        ]
        for child in children:
            child.start()
        barrier.wait()
        spans = [results.get(timeout=600) for _ in children]
        for child in children:
            child.join()
        accepted = sum(emulator.receive_counts().values())
    start = min(first for first, _ in spans)
    end = max(last for _, last in spans)
    log.info(
        "Bare POST loop, %d processes, %d recipients per POST: %d accepted",
        processes,
        recipients,
        accepted,
    )
    return accepted / (end - start)


def post_loop(
    base_url: str,
    first: int,
    count: int,
    recipients: int,
    barrier: Barrier,
    results: multiprocessing.Queue[tuple[float, float]],
) -> None:
    """POST sends to count numbers one after another on one kept-alive
    connection, recipients numbers per POST."""
    headers = {"apiKey": API_KEY, "Accept": "application/json"}
    with httpx.Client(base_url=base_url, headers=headers, timeout=10) as client:
        barrier.wait()
        start = time.time()
        for index in range(first, first + count, recipients):
            last = min(index + recipients, first + count)
            numbers = ",".join(phone_of(i) for i in range(index, last))
            form = {"username": USERNAME, "to": numbers, "message": TEXT}
            client.post("/version1/messaging", data=form).raise_for_status()
        results.put((start, time.time()))


# The pipeline


async def pipeline_run(
    args: argparse.Namespace,
    directory: Path,
    postgres: Postgres,
    redis: Redis,
    workers: int,
    fault_rate: float,
) -> RunResult:
    database_url = postgres.url(f"bench_{uuid.uuid4().hex[:12]}")
    certs = directory / "certs"
    async with open_stack(database_url, certs, redis.url, OVERRIDES) as stack:
        stack.emulator.set_balance("10000000")
        processes = start_workers(stack, directory, workers, args.threads)
        try:
            await warm_up(stack, workers)
            if args.no_reports:
                stack.emulator.set_callback_url(None)
            if fault_rate:
                stack.emulator.fail_requests_at_rate(fault_rate, 500, seed=1)
            result = await measure(stack, args, processes, postgres, redis)
        finally:
            for process in processes:
                process.stop()
    result.workers = workers
    result.fault_rate = fault_rate
    log.info("Run: %s", result)
    return result


def start_workers(
    stack: Stack, directory: Path, count: int, threads: int
) -> list[WorkerProcess]:
    processes = []
    for index in range(count):
        log_path = directory / f"worker-{uuid.uuid4().hex[:6]}-{index}.log"
        process = WorkerProcess(
            stack.environ, stack.clock.offset_seconds, log_path, threads
        )
        process.start()
        processes.append(process)
    return processes


async def warm_up(stack: Stack, workers: int) -> None:
    """Send a small campaign whose customers the measured one leaves out."""
    stack.add_customers(range(1, WARM_UP_PER_WORKER * workers + 1), probability=0.6)
    campaign = await stack.launch(holdout_share=0.0, min_churn_probability=0.5)
    await stack.settled(campaign.campaign_id, timeout=120)


async def measure(
    stack: Stack,
    args: argparse.Namespace,
    processes: list[WorkerProcess],
    postgres: Postgres,
    redis: Redis,
) -> RunResult:
    ids = range(FIRST_CUSTOMER, FIRST_CUSTOMER + args.messages)
    if args.shared_text:
        stack.add_customers(ids, probability=0.9)
    else:
        add_named_customers(stack, ids)
    numbers = {phone_of(c) for c in ids}
    cpu = CpuMeter(processes, postgres, redis)
    threads = ThreadCpuMeter(stack)

    start = time.time()
    campaign = await stack.launch(holdout_share=0.0, min_churn_probability=0.8)
    launched = time.time()
    done = done_names(args.no_reports)
    await wait_for_done(stack, campaign.campaign_id, done, args.settle_timeout)
    finished = time.time()
    cpu_seconds = cpu.used()
    by_thread = threads.used()
    # Threads that ended during the run, such as the callback stand-in's
    # per-request threads, count only in the process total.
    by_thread["bench_process.ended_threads"] = round(
        cpu_seconds["bench_process"] - sum(by_thread.values()), 2
    )
    cpu_seconds.update(by_thread)

    accepted = [m for m in stack.emulator.messages() if m["number"] in numbers]
    last = max(parse_time(m["time"]) for m in accepted)
    received = Counter(m["number"] for m in accepted)
    states = await state_counts(stack, campaign.campaign_id)
    rate = stack.emulator.state.snapshot()["httpFaultRate"]
    return RunResult(
        workers=0,
        fault_rate=0.0,
        messages=args.messages,
        launch_seconds=round(launched - start, 3),
        submit_seconds=round(last - start, 3),
        per_s=len(received) / (last - start),
        done_seconds=round(finished - start, 3),
        duplicates=sum(1 for count in received.values() if count > 1),
        lost=args.messages - sum(states.get(name, 0) for name in done),
        injected_failures=0 if rate is None else rate["injected"],
        states=states,
        cpu_seconds=cpu_seconds,
    )


def add_named_customers(stack: Stack, ids: range) -> None:
    """Add at-risk customers whose first names all differ."""
    for customer_id in ids:
        stack.user.add(FakeCustomer(customer_id, first_name=name_of(customer_id)))
        stack.inference.scores[customer_id] = 0.9


def name_of(number: int) -> str:
    """Return a first name of letters only that differs for every number."""
    letters = ""
    while number:
        number, digit = divmod(number, 26)
        letters += "abcdefghijklmnopqrstuvwxyz"[digit]
    return "Amina" + letters


def parse_time(text: str) -> float:
    return dt.datetime.fromisoformat(text).timestamp()


def done_names(no_reports: bool) -> set[str]:
    """Return the names of the states in which a message counts as done."""
    done = {comms_pb2.MessageState.Name(state) for state in FINAL}
    if no_reports:
        done.add(comms_pb2.MessageState.Name(comms_pb2.MESSAGE_STATE_SUBMITTED))
    return done


async def wait_for_done(
    stack: Stack, campaign_id: int, done: set[str], timeout: float
) -> None:
    """Poll the ledger until every message of the campaign is done, or timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        check_not_stopped()
        states = await state_counts(stack, campaign_id)
        if sum(states.get(name, 0) for name in done) == sum(states.values()):
            return
        await asyncio.sleep(0.2)
    log.warning("Messages still not done after %.0f s: %s", timeout, states)


async def state_counts(stack: Stack, campaign_id: int) -> dict[str, int]:
    query = (
        sa.select(messages.c.state, sa.func.count())
        .where(messages.c.campaign_id == campaign_id)
        .group_by(messages.c.state)
    )
    async with stack.service.engine.connect() as conn:
        rows = (await conn.execute(query)).all()
    return {f"MESSAGE_STATE_{state.upper()}": int(n) for state, n in rows}


class CpuMeter:
    """CPU seconds used since creation by the parts of the pipeline: the
    worker processes, this process alone, and the PostgreSQL and Redis
    servers with their children."""

    def __init__(
        self, processes: list[WorkerProcess], postgres: Postgres, redis: Redis
    ) -> None:
        assert postgres.process is not None and redis.process is not None
        self.groups = {
            "workers": [p.pid for p in processes],
            "postgres": [postgres.process.pid],
            "redis": [redis.process.pid],
        }
        self.start = self._sample()

    def used(self) -> dict[str, float]:
        end = self._sample()
        return {name: round(end[name] - self.start[name], 2) for name in end}

    def _sample(self) -> dict[str, float]:
        used = {
            name: sum(_tree_cpu(pid) for pid in pids)
            for name, pids in self.groups.items()
        }
        # Not _tree_cpu: the workers, PostgreSQL and Redis are children of it.
        own = os.times()
        used["bench_process"] = own.user + own.system
        return used


def _tree_cpu(pid: int) -> float:
    """Return user and system CPU seconds of a process and its children,
    living and reaped."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        # utime, stime, cutime, cstime are fields 14 to 17 of proc(5).
        total += sum(int(value) for value in fields[11:15]) / ticks
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except FileNotFoundError:
        return total
    return total + sum(_tree_cpu(int(child)) for child in children)


class ThreadCpuMeter:
    """CPU seconds used since creation by the parts of this process, grouped
    by thread: the event loop of the comms server and the peer doubles, the
    emulator's HTTP and report threads, and the callback stand-in."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.start = self._sample()

    def used(self) -> dict[str, float]:
        end = self._sample()
        return {
            f"bench_process.{group}": round(seconds - self.start.get(group, 0.0), 2)
            for group, seconds in end.items()
        }

    def _sample(self) -> dict[str, float]:
        """Sum CPU seconds by group over the living threads of this process;
        threads that Python did not start are grouped by their OS name."""
        python_groups = {
            thread.native_id: self._group(thread) for thread in threading.enumerate()
        }
        groups: Counter[str] = Counter()
        for task in Path("/proc/self/task").iterdir():
            try:
                stat = (task / "stat").read_text()
            except FileNotFoundError:
                continue
            name, fields = stat.split("(", 1)[1].rsplit(")", 1)
            values = fields.split()
            seconds = (int(values[11]) + int(values[12])) / os.sysconf("SC_CLK_TCK")
            group = python_groups.get(
                int(task.name), f"native:{name.rstrip('0123456789')}"
            )
            groups[group] += seconds
        return dict(groups)

    def _group(self, thread: threading.Thread) -> str:
        if thread is threading.main_thread():
            return "event_loop"
        if thread.name.startswith("at-emulator-reports"):
            return "emulator_reports"
        owner = getattr(getattr(thread, "_target", None), "__self__", None)
        if owner is self.stack.bridge.server:
            return "callback_bridge"
        if isinstance(owner, ThreadingHTTPServer):
            return "emulator_http"
        return "other_threads"


if __name__ == "__main__":
    main()
