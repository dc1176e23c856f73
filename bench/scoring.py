"""Scoring throughput: customers scored per second end to end, against two ceilings.

The script starts its own PostgreSQL (retain_cli.infra.Postgres) and runs the
events and inference services as subprocesses, the way `retain up` runs them.
It generates N customers with a fixed number of events each and loads them into
the events database with binary COPY (see scoring_data.py), not through
IngestEvents, then builds the packed sequence rows that ingest keeps. The model is an untrained ChurnPredictor with seeded weights and
the default ModelConfig, stored and promoted in the inference database.

Three figures come from the same run:

- end to end: one StartScoringRun as of a fixed moment, from the request until
  GetJob, polled every JOB_POLL_S seconds, reports success. The inference
  service reads ListSequences pages from the events service, builds features,
  runs the model and stores every score with its reasons.
- db_read: `COPY (SELECT ... FROM events ...) TO STDOUT (FORMAT binary)` of the
  same event rows in customer order, read whole by psycopg. This is how fast the
  rows leave PostgreSQL.
- raw_forward: `ChurnModel` over tensors built before the clock starts, in
  batches of --batch-size, at each torch thread count from 1 to the CPU count,
  the faster of two passes each. The ceiling is the fastest of them.

Both ceilings are measured before the events and inference services start.

The ratio is end to end over the lower ceiling. ratio_same_threads takes the
raw forward at the service's own thread count instead: --threads times
--forward-workers. Peak RSS is
the inference service's VmHWM. Stage timings come from the inference service's
log record of the finished run, and CPU seconds from /proc.

Usage: python bench/scoring.py [--customers 200000] [--events-per-customer 50]
       [--page-size N] [--batch-size N] [--threads 1] [--forward-workers 2]
       [--json PATH]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import torch
from psycopg import sql
from retain.inference.v1 import inference_pb2 as pb
from retain.inference.v1 import inference_pb2_grpc
from retain.type.v1 import job_pb2
from retain_cli.infra import Postgres, free_port, stop_process, wait_for_port
from retain_events.server import prepare_database as prepare_events_database
from retain_inference.checkpoint import checkpoint_to_bytes
from retain_inference.features import build_features
from retain_inference.predictor import ChurnPredictor
from retain_inference.server import prepare_database as prepare_inference_database
from retain_runtime.certs import CertPaths, issue_mesh
from retain_runtime.credentials import sync_channel
from retain_runtime.timestamps import from_datetime
from scoring_data import (
    GeneratedEvents,
    copy_events,
    fixed_weight_predictor,
    generate_events,
    libpq_conninfo,
)

logger = logging.getLogger("bench.scoring")

AS_OF = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
MODEL_VERSION = "bench-fixed-weights"
SERVICE_START_TIMEOUT_S = 60
JOB_TIMEOUT_S = 3_600
# Each GetJob costs the inference service and PostgreSQL a query, so polling
# faster takes CPU from the run it measures. The end-to-end time is late by
# at most this much.
JOB_POLL_S = 0.25


@dataclass
class Services:
    """The PostgreSQL server and service subprocesses of one benchmark run."""

    state_dir: Path
    postgres: Postgres
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    ports: dict[str, int] = field(default_factory=dict)

    def url(self, name: str) -> str:
        return self.postgres.url(f"bench_{name}")

    def log_path(self, name: str) -> Path:
        return self.state_dir / f"{name}.log"

    def start(self, name: str, extra_env: dict[str, str]) -> None:
        """Start `python -m retain_<name>` and wait until it listens."""
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("RETAIN_")}
        env.update(
            {
                f"RETAIN_{name.upper()}_PORT": str(port),
                f"RETAIN_{name.upper()}_HEALTH_PORT": str(free_port()),
                f"RETAIN_{name.upper()}_DATABASE_URL": self.url(name),
                "RETAIN_CERT_DIR": str(self.state_dir / "certs"),
                "RETAIN_LOG_FORMAT": "json",
                "PYTHONUNBUFFERED": "1",
                **extra_env,
            }
        )
        with open(self.log_path(name), "ab") as log_file:
            process = subprocess.Popen(
                [sys.executable, "-m", f"retain_{name}"],
                env=env,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.processes[name] = process
        wait_for_port(port, process, SERVICE_START_TIMEOUT_S)
        self.ports[name] = port
        logger.info("Started %s (pid %d) on port %d", name, process.pid, port)

    def cpu_seconds(self) -> dict[str, float]:
        """Return the CPU seconds used so far by each service and by PostgreSQL."""
        assert self.postgres.process is not None
        used = {
            name: cpu_seconds(process.pid) for name, process in self.processes.items()
        }
        used["postgres"] = cpu_seconds(self.postgres.process.pid, children=True)
        return used

    def stop(self) -> None:
        for name, process in reversed(self.processes.items()):
            stop_process(process, name)
        self.postgres.stop()


@dataclass(frozen=True)
class Result:
    customers: int
    threads: int  # RETAIN_TORCH_THREADS of the inference service
    forward_workers: int  # RETAIN_FORWARD_WORKERS of the inference service
    events: int
    load_s: float
    end_to_end_s: float
    db_read_s: float
    db_read_bytes: int
    raw_forward_s: dict[int, float]  # by torch thread count
    peak_rss_mb: float
    events_peak_rss_mb: float
    stage_seconds: dict[str, dict[str, float]]
    cpu_seconds: dict[str, float]

    @property
    def service_threads(self) -> int:
        """Threads that the service's forward passes use together."""
        return self.threads * self.forward_workers

    def document(self) -> dict[str, Any]:
        customers_per_s = self.customers / self.end_to_end_s
        db_read_per_s = self.customers / self.db_read_s
        # The forward ceiling is the best thread count, whatever the service used.
        raw_forward_per_s = self.customers / min(self.raw_forward_s.values())
        same_threads_per_s = self.customers / self.raw_forward_s[self.service_threads]
        return {
            "customers": self.customers,
            "events": self.events,
            "customers_per_s": round(customers_per_s, 1),
            "db_read_per_s": round(db_read_per_s, 1),
            "raw_forward_per_s": round(raw_forward_per_s, 1),
            "ratio": round(customers_per_s / min(db_read_per_s, raw_forward_per_s), 3),
            "service_torch_threads": self.threads,
            "service_forward_workers": self.forward_workers,
            "ratio_same_threads": round(
                customers_per_s / min(db_read_per_s, same_threads_per_s), 3
            ),
            "peak_rss_mb": round(self.peak_rss_mb, 1),
            "events_peak_rss_mb": round(self.events_peak_rss_mb, 1),
            "end_to_end_s": round(self.end_to_end_s, 2),
            "db_read_s": round(self.db_read_s, 2),
            "db_read_mb": round(self.db_read_bytes / 2**20, 1),
            "raw_forward_s": {
                str(threads): round(seconds, 2)
                for threads, seconds in self.raw_forward_s.items()
            },
            "load_s": round(self.load_s, 1),
            "stage_seconds": self.stage_seconds,
            "cpu_seconds": {k: round(v, 2) for k, v in self.cpu_seconds.items()},
        }


def store_model(url: str, predictor: ChurnPredictor) -> None:
    """Insert the predictor as the active model version of the inference database."""
    config = {
        name: getattr(predictor.config, name)
        for name in predictor.config.__dataclass_fields__
    }
    with psycopg.connect(libpq_conninfo(url), autocommit=True) as conn:
        conn.execute(
            "INSERT INTO model_versions (model_version, status, config, cutoff_time,"
            " label_end_time, horizon_days, metrics, checkpoint, create_time,"
            " promote_time) VALUES (%s, 3, %s, %s, %s, %s, '{}', %s, now(), now())",
            (
                MODEL_VERSION,
                psycopg.types.json.Jsonb(config),
                AS_OF,
                AS_OF,
                predictor.config.horizon_days,
                checkpoint_to_bytes(predictor),
            ),
        )


def measure_db_read(url: str) -> tuple[float, int]:
    """Return the best of two COPY TO STDOUT reads of every event before AS_OF."""
    query = sql.SQL(
        "COPY (SELECT customer_id, occur_time, event_type, amount_micros FROM events"
        " WHERE occur_time < {} ORDER BY customer_id, occur_time, event_id)"
        " TO STDOUT (FORMAT binary)"
    ).format(sql.Literal(AS_OF))
    best, size = float("inf"), 0
    with psycopg.connect(libpq_conninfo(url)) as conn:
        for _ in range(2):
            started = time.perf_counter()
            size = 0
            with conn.cursor().copy(query) as copy:
                for block in copy:
                    size += len(block)
            best = min(best, time.perf_counter() - started)
    return best, size


def measure_raw_forward(
    predictor: ChurnPredictor,
    events: GeneratedEvents,
    batch_size: int,
    service_threads: int,
) -> dict[int, float]:
    """Return the seconds of the model's forward pass over every customer.

    The pass runs twice per torch thread count from 1 to the machine's CPUs,
    and at the service's thread count, and the faster of the two counts, as
    for the COPY read.
    """
    config = predictor.config
    batches = []
    for start in range(0, events.customer_count, batch_size):
        stop = min(start + batch_size, events.customer_count)
        features = build_features(
            events.table(start, stop),
            AS_OF,
            max_events=config.max_events,
            num_event_types=config.num_event_types,
        )
        batches.append(predictor.inputs(features))

    model = predictor.model.eval()
    seconds = {}
    with torch.inference_mode():
        cpus = os.cpu_count() or 1
        for threads in sorted({*range(1, cpus + 1), service_threads}):
            torch.set_num_threads(threads)
            model(*batches[0])  # warm-up
            passes = []
            for _ in range(2):
                started = time.perf_counter()
                for inputs in batches:
                    model(*inputs)
                passes.append(time.perf_counter() - started)
            seconds[threads] = min(passes)
    return seconds


def run_scoring(target: str, certs: CertPaths) -> tuple[float, pb.ScoringRun]:
    """Start one scoring run as of AS_OF and return its wall time and final state."""
    with sync_channel(target, certs) as channel:
        stub = inference_pb2_grpc.InferenceServiceStub(channel)
        started = time.perf_counter()
        run = stub.StartScoringRun(
            pb.StartScoringRunRequest(as_of_time=from_datetime(AS_OF)), timeout=60
        ).scoring_run
        deadline = time.monotonic() + JOB_TIMEOUT_S
        while time.monotonic() < deadline:
            job = stub.GetJob(pb.GetJobRequest(job_id=run.job.job_id), timeout=10).job
            if job.state == job_pb2.JOB_STATE_SUCCEEDED:
                elapsed = time.perf_counter() - started
                reply = stub.GetScoringRun(
                    pb.GetScoringRunRequest(scoring_run_id=run.scoring_run_id),
                    timeout=10,
                )
                return elapsed, reply.scoring_run
            if job.state in (job_pb2.JOB_STATE_FAILED, job_pb2.JOB_STATE_CANCELLED):
                raise RuntimeError(f"scoring job {job.job_id} ended: {job.message}")
            time.sleep(JOB_POLL_S)
    raise TimeoutError(f"scoring run did not finish within {JOB_TIMEOUT_S} s")


def stage_seconds(log_path: Path, run_id: int) -> dict[str, dict[str, float]]:
    """Return the per-stage wall and CPU seconds that the service logged."""
    for line in log_path.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if record.get("scoring_run_id") == run_id and "stage_seconds" in record:
            return {
                stage: {
                    "wall": seconds,
                    "cpu": record["stage_cpu_seconds"].get(stage, 0.0),
                }
                for stage, seconds in record["stage_seconds"].items()
            }
    return {}


def cpu_seconds(pid: int, children: bool = False) -> float:
    """Return the CPU seconds (user and system) that a process has used.

    With children, add the CPU time of its live child processes and of those it
    has reaped, which is how PostgreSQL's backends are counted.
    """
    ticks = os.sysconf("SC_CLK_TCK")
    fields = _stat_fields(pid)
    total = int(fields[11]) + int(fields[12])
    if children:
        total += int(fields[13]) + int(fields[14])
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                child = _stat_fields(int(entry.name))
                if child and int(child[1]) == pid:
                    total += int(child[11]) + int(child[12])
    return total / ticks


def _stat_fields(pid: int) -> list[str]:
    """Return the fields of /proc/PID/stat after the command name, or [] if gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return []
    return text[text.rindex(")") + 2 :].split()


def peak_rss_mb(process: subprocess.Popen[bytes]) -> float:
    """Return the process's peak resident set size (VmHWM) in MiB."""
    status = Path(f"/proc/{process.pid}/status").read_text()
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"/proc/{process.pid}/status has no VmHWM line")


def run(args: argparse.Namespace, state_dir: Path) -> Result:
    """Set up the stack, measure the ceilings and one scoring run."""
    events = generate_events(args.customers, args.events_per_customer, AS_OF, 0)
    predictor = fixed_weight_predictor(events, AS_OF, seed=0)
    issue_mesh(state_dir / "certs", ["events", "inference", "operator"])
    services = Services(state_dir, Postgres(state_dir / "pg" / "data"))
    services.postgres.start()
    try:
        started = time.perf_counter()
        prepare_events_database(services.url("events"))
        copy_events(libpq_conninfo(services.url("events")), events)
        load_s = time.perf_counter() - started
        logger.info("Loaded %d events in %.1f s", events.customer_ids.shape[0], load_s)
        prepare_inference_database(services.url("inference"))
        store_model(services.url("inference"), predictor)

        # The ceilings are measured before the services start, so that no
        # idle service process can share the CPUs with them.
        db_read_s, db_read_bytes = measure_db_read(services.url("events"))
        logger.info("COPY read %.1f MiB in %.2f s", db_read_bytes / 2**20, db_read_s)
        raw_forward_s = measure_raw_forward(
            predictor, events, args.batch_size, args.threads * args.forward_workers
        )
        logger.info("Raw forward took %s s by torch threads", raw_forward_s)
        services.start("events", {})
        services.start(
            "inference",
            {
                "RETAIN_EVENTS_TARGET": f"127.0.0.1:{services.ports['events']}",
                "RETAIN_TORCH_THREADS": str(args.threads),
                "RETAIN_FORWARD_WORKERS": str(args.forward_workers),
                **_optional_env(args),
            },
        )

        target = f"127.0.0.1:{services.ports['inference']}"
        certs = CertPaths.in_directory(state_dir / "certs", "operator")
        cpu_before = services.cpu_seconds()
        end_to_end_s, scoring_run = run_scoring(target, certs)
        cpu_after = services.cpu_seconds()
        if scoring_run.scored_count != events.customer_count:
            raise RuntimeError(
                f"the run scored {scoring_run.scored_count} customers, "
                f"expected {events.customer_count}"
            )
        return Result(
            customers=events.customer_count,
            threads=args.threads,
            forward_workers=args.forward_workers,
            events=events.customer_ids.shape[0],
            load_s=load_s,
            end_to_end_s=end_to_end_s,
            db_read_s=db_read_s,
            db_read_bytes=db_read_bytes,
            raw_forward_s=raw_forward_s,
            peak_rss_mb=peak_rss_mb(services.processes["inference"]),
            events_peak_rss_mb=peak_rss_mb(services.processes["events"]),
            stage_seconds=stage_seconds(
                services.log_path("inference"), scoring_run.scoring_run_id
            ),
            cpu_seconds={
                name: cpu_after[name] - cpu_before[name] for name in cpu_before
            },
        )
    finally:
        services.stop()


def _optional_env(args: argparse.Namespace) -> dict[str, str]:
    env = {}
    if args.page_size:
        env["RETAIN_SCORE_PAGE_SIZE"] = str(args.page_size)
    if args.batch_size:
        env["RETAIN_SCORE_BATCH_SIZE"] = str(args.batch_size)
    return env


def print_report(document: dict[str, Any]) -> None:
    seconds = document["raw_forward_s"]
    lines = [
        f"customers            {document['customers']:>12,}",
        f"events               {document['events']:>12,}",
        (
            f"end to end           {document['customers_per_s']:>12,.0f} customers/s"
            f"  ({document['end_to_end_s']} s)"
        ),
        (
            f"db read ceiling      {document['db_read_per_s']:>12,.0f} customers/s"
            f"  ({document['db_read_s']} s, {document['db_read_mb']} MiB)"
        ),
        (
            f"raw forward ceiling  {document['raw_forward_per_s']:>12,.0f} customers/s"
            f"  (seconds by torch threads: {seconds})"
        ),
        f"ratio                {document['ratio']:>12.3f}",
        (
            f"ratio, same threads {document['ratio_same_threads']:>12.3f}"
            f"  (raw forward at the service's {document['service_torch_threads']}"
            f" x {document['service_forward_workers']} forward workers)"
        ),
        f"peak RSS inference   {document['peak_rss_mb']:>12,.0f} MiB",
        f"peak RSS events      {document['events_peak_rss_mb']:>12,.0f} MiB",
        "inference stages, seconds summed over pages (stages overlap):",
        f"  {'stage':<19} {'wall':>8} {'cpu':>8}",
    ]
    for stage, times in document["stage_seconds"].items():
        lines.append(f"  {stage:<19} {times['wall']:>8.2f} {times['cpu']:>8.2f}")
    lines.append("CPU seconds during the end-to-end run:")
    for process, used in document["cpu_seconds"].items():
        lines.append(f"  {process:<19} {used:>8.2f}")
    print("\n".join(lines))


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--customers", type=int, default=200_000, help="customers to generate"
    )
    parser.add_argument(
        "--events-per-customer", type=int, default=50, help="events per customer"
    )
    parser.add_argument(
        "--page-size",
        type=int,
        default=0,
        help="RETAIN_SCORE_PAGE_SIZE for the service; 0 keeps its default",
    )
    parser.add_argument(
        "--batch-size",
        type=int,
        default=2048,
        help="customers per forward pass, for the service and the raw ceiling",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="RETAIN_TORCH_THREADS for the inference service",
    )
    parser.add_argument(
        "--forward-workers",
        type=int,
        default=2,
        help="RETAIN_FORWARD_WORKERS for the inference service",
    )
    parser.add_argument("--json", type=Path, help="write the figures as JSON here")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    # SIGTERM unwinds like Ctrl-C, so PostgreSQL and the services stop.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    with tempfile.TemporaryDirectory(prefix="retain-bench-") as directory:
        result = run(args, Path(directory))
    document = result.document()
    document["bench_peak_rss_mb"] = round(
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1
    )
    print_report(document)
    if args.json:
        args.json.write_text(json.dumps(document, indent=2) + "\n")


if __name__ == "__main__":
    main()
