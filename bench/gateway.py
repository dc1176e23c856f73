"""Gateway overhead: one read RPC called directly and through Envoy three ways.

The script starts the whole local stack as `retain up` does (retain_cli.stack:
PostgreSQL and Redis from their wheels, the four services, the worker and
Envoy), on free ports in a temporary folder. It creates the first admins and
one customer, then calls UserService.GetCustomer on that customer by four
paths:

- grpc: gRPC over mTLS straight to the user service, with the operator
  certificate.
- envoy_grpc: gRPC through Envoy, HTTP/2 without TLS to the gateway port,
  with the admin's access token as `authorization: Bearer` metadata.
- grpc_web: gRPC-web through Envoy, HTTP/1.1 POSTs of
  `application/grpc-web+proto` frames, with the same token.
- rest: GET /v1/customers/{customer_id} through Envoy's JSON transcoder, with
  the same token.

Each path makes --warm-up untimed calls. Then each path makes --requests
sequential calls for the latency percentiles, and --requests calls shared by
--concurrency threads for requests per second. The timed calls run in
--rounds blocks per path, and the paths take turns block by block, so a change
in the load from other processes reaches every path alike. Every reply is
decoded into a GetCustomerResponse and compared with the one read directly
before the runs, so a failed call stops the script instead of counting as
fast. The gRPC paths share one channel between threads. The HTTP paths open
one httpx connection per thread.

The script also reads from /proc the CPU microseconds per timed call of the
client (this process), Envoy, the user service, PostgreSQL and the rest of the
stack. The rest is the other services, the worker, the emulator and Redis.

Usage: python bench/gateway.py [--requests 2000] [--concurrency 8]
       [--warm-up 200] [--rounds 10] [--json PATH]
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import logging
import os
import shutil
import signal
import statistics
import struct
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Protocol

import grpc
import httpx
from google.protobuf import json_format
from retain.user.v1 import user_pb2, user_pb2_grpc
from retain_cli.admin_accounts import FIRST_ADMINS, ensure_first_admins
from retain_cli.clients import Clients
from retain_cli.stack import Stack, StackOptions
from retain_runtime.certs import CertPaths
from retain_runtime.credentials import sync_channel

logger = logging.getLogger("bench.gateway")

PATHS = ("grpc", "envoy_grpc", "grpc_web", "rest")
DIRECT = "grpc"

# The target: Envoy adds under 1 ms at p50 and under 5 ms at p99.
TARGET_P50_ADDED_MS = 1.0
TARGET_P99_ADDED_MS = 5.0

CALL_TIMEOUT_S = 10.0
GRPC_WEB_TYPE = "application/grpc-web+proto"
# The first byte of a gRPC-web frame: bit 7 marks trailers, bit 0 compression.
TRAILERS_FLAG = 0x80
COMPRESSED_FLAG = 0x01

# Environment variables that would replace a component of the stack or point
# it at a real provider. They are dropped, so everything runs on loopback.
FOREIGN_PREFIXES = ("RETAIN_", "AT_", "GROQ_")

# The processes whose CPU time is recorded. other_stack is the other services,
# the worker, the emulator, the dashboard's file server and Redis.
CPU_PARTS = ("client", "envoy", "user", "postgres", "other_stack")

# Access tokens outlive any run, because the script signs in once. The user
# service's default lifetime is 15 minutes.
TOKEN_TTL_SECONDS = 24 * 3600

Caller = Callable[[], user_pb2.GetCustomerResponse]


class BenchError(RuntimeError):
    """Raised when a call fails or returns a reply other than the expected one."""


class PathClient(Protocol):
    def caller(self) -> Caller:
        """Return a caller for one thread."""
        ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class PathResult:
    """The figures of one path, and for an Envoy path its comparison with grpc."""

    requests: int
    concurrency: int
    warm_up: int
    p50_ms: float
    p99_ms: float
    mean_ms: float
    rps: float
    cpu_us_per_call: dict[str, float]
    p50_added_ms: float | None = None
    p99_added_ms: float | None = None
    rps_ratio: float | None = None
    target_met: bool | None = None


# The four paths.


class GrpcPath:
    """GetCustomer over one gRPC channel, which every thread shares."""

    def __init__(
        self,
        channel: grpc.Channel,
        request: user_pb2.GetCustomerRequest,
        token: str = "",
    ) -> None:
        self._channel = channel
        self._stub = user_pb2_grpc.UserServiceStub(channel)
        self._request = request
        self._metadata = (("authorization", f"Bearer {token}"),) if token else ()

    def caller(self) -> Caller:
        return functools.partial(
            self._stub.GetCustomer,
            self._request,
            metadata=self._metadata,
            timeout=CALL_TIMEOUT_S,
        )

    def close(self) -> None:
        self._channel.close()


class HttpPath:
    """GetCustomer over HTTP/1.1 through Envoy, one connection per thread."""

    def __init__(
        self,
        base_url: str,
        token: str,
        send: Callable[[httpx.Client], user_pb2.GetCustomerResponse],
    ) -> None:
        self._base_url = base_url
        self._headers = {"authorization": f"Bearer {token}"}
        self._send = send
        self._clients: list[httpx.Client] = []

    def caller(self) -> Caller:
        client = httpx.Client(
            base_url=self._base_url, headers=self._headers, timeout=CALL_TIMEOUT_S
        )
        self._clients.append(client)
        return functools.partial(self._send, client)

    def close(self) -> None:
        for client in self._clients:
            client.close()


def get_over_grpc_web(
    request: user_pb2.GetCustomerRequest, client: httpx.Client
) -> user_pb2.GetCustomerResponse:
    """Call GetCustomer as gRPC-web and return the reply if grpc-status is 0."""
    payload = request.SerializeToString()
    response = client.post(
        "/retain.user.v1.UserService/GetCustomer",
        content=b"\x00" + struct.pack(">I", len(payload)) + payload,
        headers={"content-type": GRPC_WEB_TYPE, "x-grpc-web": "1"},
    )
    if response.status_code != 200:
        raise BenchError(f"gRPC-web call failed with HTTP {response.status_code}")
    messages, trailers = parse_grpc_web(response.content)
    # A reply without messages may carry its status in the headers.
    status = trailers.get("grpc-status", response.headers.get("grpc-status"))
    if status != "0":
        message = trailers.get("grpc-message", response.headers.get("grpc-message"))
        raise BenchError(f"gRPC-web call failed with grpc-status {status}: {message}")
    if len(messages) != 1:
        raise BenchError(f"gRPC-web reply has {len(messages)} messages, expected 1")
    return user_pb2.GetCustomerResponse.FromString(messages[0])


def parse_grpc_web(body: bytes) -> tuple[list[bytes], dict[str, str]]:
    """Split a gRPC-web body into its messages and its trailers."""
    messages: list[bytes] = []
    trailers: dict[str, str] = {}
    offset = 0
    while offset < len(body):
        if len(body) - offset < 5:
            raise BenchError(f"gRPC-web body ends inside a frame header at {offset}")
        flags = body[offset]
        (length,) = struct.unpack_from(">I", body, offset + 1)
        frame = body[offset + 5 : offset + 5 + length]
        if len(frame) != length:
            raise BenchError(f"gRPC-web frame at {offset} is cut short")
        if flags & COMPRESSED_FLAG:
            raise BenchError("gRPC-web frame is compressed, which was not requested")
        if flags & TRAILERS_FLAG:
            for line in frame.decode("ascii").split("\r\n"):
                name, _, value = line.partition(":")
                if name:
                    trailers[name.strip().lower()] = value.strip()
        else:
            messages.append(frame)
        offset += 5 + length
    return messages, trailers


def get_over_rest(
    customer_id: int, client: httpx.Client
) -> user_pb2.GetCustomerResponse:
    """Call GetCustomer's google.api.http route and parse the JSON reply."""
    response = client.get(f"/v1/customers/{customer_id}")
    if response.status_code != 200:
        raise BenchError(
            f"REST call failed with HTTP {response.status_code}: {response.text[:200]}"
        )
    return json_format.Parse(response.text, user_pb2.GetCustomerResponse())


def open_path(
    name: str, stack: Stack, request: user_pb2.GetCustomerRequest, token: str
) -> PathClient:
    """Open the client of one path. The direct path ignores token."""
    if name == DIRECT:
        paths = CertPaths.in_directory(stack.cert_dir, "operator")
        return GrpcPath(sync_channel(stack.env["RETAIN_USER_TARGET"], paths), request)
    if name == "envoy_grpc":
        channel = grpc.insecure_channel(f"127.0.0.1:{stack.envoy_port}")
        return GrpcPath(channel, request, token)
    base_url = stack.gateway_url.rstrip("/")
    if name == "grpc_web":
        return HttpPath(base_url, token, functools.partial(get_over_grpc_web, request))
    if name == "rest":
        send = functools.partial(get_over_rest, request.customer_id)
        return HttpPath(base_url, token, send)
    raise ValueError(f"unknown path {name!r}; expected one of {PATHS}")


# Setup through the stack.


def create_customer(clients: Clients) -> user_pb2.GetCustomerResponse:
    """Create the customer that every path reads and return its direct reply."""
    customer = user_pb2.CustomerInput(
        external_id="bench-gateway-1",
        phone_number="+254700000001",
        first_name="Amina",
        attributes={"plan": "bench"},
        fictitious=True,
    )
    reply = clients.user.UpsertCustomers(
        user_pb2.UpsertCustomersRequest(customers=[customer]), timeout=CALL_TIMEOUT_S
    )
    request = user_pb2.GetCustomerRequest(customer_id=reply.customer_ids[0])
    return clients.user.GetCustomer(request, timeout=CALL_TIMEOUT_S)


def sign_in(stack: Stack) -> str:
    """Sign in as the first admin through Envoy and return the access token."""
    email, filename = FIRST_ADMINS[0]
    password = (stack.options.state_dir / filename).read_text().strip()
    response = httpx.post(
        stack.gateway_url + "v1/auth:signIn",
        json={"email": email, "password": password},
        timeout=CALL_TIMEOUT_S,
    )
    if response.status_code != 200:
        raise BenchError(f"sign-in as {email} failed with HTTP {response.status_code}")
    return str(response.json()["accessToken"])


# Measurement.


@dataclass
class PathRun:
    """One path's client and what its timed calls gathered so far."""

    name: str
    client: PathClient
    check: Callable[[user_pb2.GetCustomerResponse], None]
    # The caller of the sequential calls, and one caller per thread.
    call: Caller | None = None
    thread_calls: list[Caller] = field(default_factory=list)
    samples_ms: list[float] = field(default_factory=list)
    concurrent_seconds: float = 0.0
    timed_calls: int = 0
    cpu_seconds: Counter[str] = field(default_factory=Counter)


def check_reply(
    expected: user_pb2.GetCustomerResponse,
    path: str,
    reply: user_pb2.GetCustomerResponse,
) -> None:
    if reply != expected:
        raise BenchError(f"{path} returned {reply} instead of {expected}")


def sequential_latencies(
    call: Caller, check: Callable[[user_pb2.GetCustomerResponse], None], count: int
) -> list[float]:
    """Return the milliseconds of count calls made one after another."""
    samples = []
    for _ in range(count):
        started = time.perf_counter_ns()
        reply = call()
        samples.append((time.perf_counter_ns() - started) / 1e6)
        check(reply)
    return samples


def concurrent_seconds(
    callers: list[Caller],
    check: Callable[[user_pb2.GetCustomerResponse], None],
    count: int,
) -> float:
    """Return the wall seconds of count calls shared by one thread per caller."""
    remaining = iter(range(count))
    lock = threading.Lock()
    stop = threading.Event()
    start = threading.Barrier(len(callers) + 1)

    def work(call: Caller) -> None:
        start.wait()
        while not stop.is_set():
            with lock:
                if next(remaining, None) is None:
                    return
            check(call())

    with ThreadPoolExecutor(len(callers)) as pool:
        futures = [pool.submit(work, call) for call in callers]
        try:
            start.wait()
            started = time.perf_counter()
            for future in futures:
                future.result()
            return time.perf_counter() - started
        finally:
            # Ctrl-C or a failed call ends the other threads at their next call.
            stop.set()


def cpu_seconds(pid: int, children: bool = False) -> float:
    """Return the user and system CPU seconds of a process.

    With children, add those of its live child processes and of those it has
    reaped, which is how PostgreSQL's backends are counted.
    """
    fields = _stat_fields(pid)
    ticks = int(fields[11]) + int(fields[12])
    if children:
        ticks += int(fields[13]) + int(fields[14])
        for entry in Path("/proc").iterdir():
            child = _stat_fields(int(entry.name)) if entry.name.isdigit() else []
            if child and int(child[1]) == pid:
                ticks += int(child[11]) + int(child[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int) -> list[str]:
    """Return the fields of /proc/PID/stat after the command name, or []."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return []
    return text[text.rindex(")") + 2 :].split()


def cpu_snapshot(stack: Stack) -> Counter[str]:
    """Return CPU seconds so far of Envoy, the user service, PostgreSQL and the
    rest of the stack."""
    pids = {child.name: child.process.pid for child in stack.children if child.process}
    assert stack.postgres is not None and stack.postgres.process is not None
    assert stack.redis is not None and stack.redis.process is not None
    other = [pid for name, pid in pids.items() if name not in ("envoy", "user")]
    return Counter(
        envoy=cpu_seconds(pids["envoy"]),
        user=cpu_seconds(pids["user"]),
        postgres=cpu_seconds(stack.postgres.process.pid, children=True),
        other_stack=sum(map(cpu_seconds, [*other, stack.redis.process.pid])),
    )


def block_sizes(requests: int, rounds: int) -> list[int]:
    """Split requests into rounds blocks that differ by one call at most."""
    size, extra = divmod(requests, rounds)
    sizes = [size + 1] * extra + [size] * (rounds - extra)
    return [block for block in sizes if block > 0]


def in_turn(runs: list[PathRun], round_index: int) -> list[PathRun]:
    """Return the runs starting at a different path in each round."""
    first = round_index % len(runs)
    return runs[first:] + runs[:first]


def warm_up(run: PathRun, args: argparse.Namespace) -> None:
    """Open the path's callers and make the untimed calls."""
    logger.info("%s: %d warm-up calls", run.name, args.warm_up)
    run.call = run.client.caller()
    for _ in range(args.warm_up):
        run.check(run.call())
    # Each thread's first call opens its connection, outside the clock.
    run.thread_calls = [run.client.caller() for _ in range(args.concurrency)]
    for call in run.thread_calls:
        run.check(call())


def timed_block(run: PathRun, size: int, stack: Stack, concurrent: bool) -> None:
    """Make size timed calls, sequential or from the threads, and add up the
    time and the CPU seconds that they took."""
    assert run.call is not None
    before = cpu_snapshot(stack)
    client_before = time.process_time()
    if concurrent:
        run.concurrent_seconds += concurrent_seconds(run.thread_calls, run.check, size)
    else:
        run.samples_ms += sequential_latencies(run.call, run.check, size)
    run.cpu_seconds["client"] += time.process_time() - client_before
    run.cpu_seconds += cpu_snapshot(stack) - before
    run.timed_calls += size


def measure(runs: list[PathRun], args: argparse.Namespace, stack: Stack) -> None:
    """Warm every path up, then time its calls in blocks, the paths in turn."""
    for run in runs:
        warm_up(run, args)
    sizes = block_sizes(args.requests, args.rounds)
    for concurrent in (False, True):
        kind = (
            f"Calls from {args.concurrency} threads"
            if concurrent
            else "Sequential calls"
        )
        for round_index, size in enumerate(sizes):
            logger.info("%s, round %d of %d", kind, round_index + 1, len(sizes))
            for run in in_turn(runs, round_index):
                timed_block(run, size, stack, concurrent)


def path_result(run: PathRun, args: argparse.Namespace) -> PathResult:
    samples = run.samples_ms
    return PathResult(
        requests=args.requests,
        concurrency=args.concurrency,
        warm_up=args.warm_up,
        p50_ms=round(statistics.median(samples), 3),
        p99_ms=round(statistics.quantiles(samples, n=100, method="inclusive")[98], 3),
        mean_ms=round(statistics.fmean(samples), 3),
        rps=round(args.requests / run.concurrent_seconds, 1),
        cpu_us_per_call={
            part: round(run.cpu_seconds.get(part, 0.0) / run.timed_calls * 1e6, 1)
            for part in CPU_PARTS
        },
    )


def compare_with_direct(result: PathResult, direct: PathResult) -> PathResult:
    """Return result with the added latency and rps ratio against direct gRPC."""
    p50_added = round(result.p50_ms - direct.p50_ms, 3)
    p99_added = round(result.p99_ms - direct.p99_ms, 3)
    return dataclasses.replace(
        result,
        p50_added_ms=p50_added,
        p99_added_ms=p99_added,
        rps_ratio=round(result.rps / direct.rps, 3),
        target_met=p50_added < TARGET_P50_ADDED_MS and p99_added < TARGET_P99_ADDED_MS,
    )


def run_paths(args: argparse.Namespace, stack: Stack) -> dict[str, PathResult]:
    """Create the admins and the customer, then measure every path."""
    clients = Clients.connect(stack.env)
    try:
        ensure_first_admins(clients.user, stack.options.state_dir)
        expected = create_customer(clients)
    finally:
        clients.close()
    request = user_pb2.GetCustomerRequest(customer_id=expected.customer.customer_id)
    logger.info("Created customer %d", request.customer_id)
    token = sign_in(stack)

    runs: list[PathRun] = []
    try:
        for name in PATHS:
            client = open_path(name, stack, request, token)
            check = functools.partial(check_reply, expected, name)
            runs.append(PathRun(name, client, check))
        measure(runs, args, stack)
    finally:
        for path_run in runs:
            path_run.client.close()

    results = {path_run.name: path_result(path_run, args) for path_run in runs}
    direct = results[DIRECT]
    return {
        name: result if name == DIRECT else compare_with_direct(result, direct)
        for name, result in results.items()
    }


def print_table(results: dict[str, PathResult]) -> None:
    """Print the results as a Markdown table with the target per path."""
    print(
        "| path | p50 ms | p99 ms | rps | p50 added ms | p99 added ms | rps ratio"
        " | target |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
    for name, result in results.items():
        if result.target_met is None:
            compared = "- | - | - | -"
        else:
            status = "met" if result.target_met else "missed"
            compared = (
                f"{result.p50_added_ms:+.3f} | {result.p99_added_ms:+.3f}"
                f" | {result.rps_ratio:.3f} | {status}"
            )
        print(
            f"| {name} | {result.p50_ms:.3f} | {result.p99_ms:.3f}"
            f" | {result.rps:.1f} | {compared} |"
        )
    print(
        f"Target: Envoy adds under {TARGET_P50_ADDED_MS:g} ms at p50 and under "
        f"{TARGET_P99_ADDED_MS:g} ms at p99."
    )
    print()
    print("CPU microseconds per timed call:")
    print("| path | " + " | ".join(CPU_PARTS) + " |")
    print("| --- |" + " ---: |" * len(CPU_PARTS))
    for name, result in results.items():
        used = " | ".join(f"{result.cpu_us_per_call[part]:.0f}" for part in CPU_PARTS)
        print(f"| {name} | {used} |")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--requests",
        type=int,
        default=2000,
        help="timed calls per path, both sequential and concurrent",
    )
    parser.add_argument(
        "--concurrency",
        type=int,
        default=8,
        help="threads that share the calls of the requests-per-second run",
    )
    parser.add_argument(
        "--warm-up", type=int, default=200, help="untimed calls before each path"
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=10,
        help="blocks that each path's timed calls are split into, the paths "
        "taking turns block by block",
    )
    parser.add_argument("--json", help="write the results to this file")
    args = parser.parse_args()
    for option, minimum in (("requests", 2), ("concurrency", 1), ("rounds", 1)):
        if getattr(args, option) < minimum:
            parser.error(f"--{option} must be at least {minimum}")
    if args.warm_up < 0:
        parser.error("--warm-up must be 0 or more")
    return args


def run_stack(
    args: argparse.Namespace, directory: Path, environ: dict[str, str]
) -> dict[str, PathResult]:
    """Start the stack in directory, measure every path and stop the stack."""
    stack = Stack(StackOptions(state_dir=directory, free_ports=True), environ=environ)
    logger.info("Starting the stack in %s", directory)
    stack.start()
    try:
        logger.info("Load average before the calls: %s", os.getloadavg())
        results = run_paths(args, stack)
        logger.info("Load average after the calls: %s", os.getloadavg())
        return results
    finally:
        logger.info("Stopping the stack")
        stack.stop()


def main() -> None:
    args = parse_args()
    # SIGTERM unwinds like Ctrl-C, so the stack stops.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # httpx logs every request at INFO.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    environ = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(FOREIGN_PREFIXES)
    }
    environ["RETAIN_USER_ACCESS_TOKEN_TTL_SECONDS"] = str(TOKEN_TTL_SECONDS)
    directory = Path(tempfile.mkdtemp(prefix="retain-bench-gateway-"))
    try:
        results = run_stack(args, directory, environ)
    except BaseException:
        logger.error(
            "The run did not finish; its logs are kept in %s", directory / "logs"
        )
        raise
    shutil.rmtree(directory)
    print_table(results)
    if args.json:
        document = {name: asdict(result) for name, result in results.items()}
        Path(args.json).write_text(json.dumps(document, indent=2) + "\n")


if __name__ == "__main__":
    main()
