"""Faults injected for real in the middle of a campaign: a worker process
killed with SIGKILL, Redis restarted, and the provider returning HTTP 500
and timing out.

After each fault, every message of the campaign must reach one final state,
the emulator must have received each number at most once, and no message may
be lost. The workers run as real processes, ``python -m retain_comms.worker``.

NOTE: a Groq 429 during a launch's ComposeMessages is not tested here. These
tests use the FakeInference double, not the inference service and its Groq
writer, whose own tests cover 429s against the Groq stand-in.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
from comms_doubles import phone_of
from comms_harness import Stack, eventually, open_stack
from comms_processes import WorkerProcess
from retain.comms.v1 import comms_pb2
from retain_cli.infra import Redis

CAMPAIGN_SIZE = 300
SEND_BATCH = 10

# Batches of 10 messages, so a fault hits several queue messages, requests and
# claims of one campaign. Timings short enough for recovery to take seconds.
# A request makes at most three HTTP attempts of 2 s (the connect timeout
# plus AT_TIMEOUT_SECONDS) with at most 2.25 s of backoff between them
# (AfricasTalkingClient's defaults), so no send that is still running reaches
# the sending timeout.
FAULT_SETTINGS = {
    "AT_TIMEOUT_SECONDS": "1",
    "RETAIN_COMMS_SEND_BATCH": str(SEND_BATCH),
    "RETAIN_WORKER_THREADS": "8",
    "RETAIN_COMMS_SWEEP_SECONDS": "0.2",
    "RETAIN_COMMS_REQUEUE_SECONDS": "2",
    "RETAIN_COMMS_SENDING_TIMEOUT_SECONDS": "12",
}

# Seconds to wait for every message to reach a final state after a fault.
SETTLE_TIMEOUT = 30.0

DELIVERED = comms_pb2.MESSAGE_STATE_DELIVERED
DELIVERY_UNKNOWN = comms_pb2.MESSAGE_STATE_DELIVERY_UNKNOWN


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[Redis]:
    """A Redis of this test alone, which it may stop and start."""
    server = Redis(tmp_path / "redis")
    server.start()
    yield server
    server.stop()


@pytest.fixture
async def fault_stack(
    database_url: str, cert_dir: Path, private_redis: Redis
) -> AsyncIterator[Stack]:
    async with open_stack(
        database_url, cert_dir, private_redis.url, FAULT_SETTINGS
    ) as stack:
        yield stack


@pytest.fixture
def start_worker(
    fault_stack: Stack, tmp_path: Path
) -> Iterator[Callable[[], WorkerProcess]]:
    """Start worker processes on fault_stack; stop them before the stack."""
    started: list[WorkerProcess] = []

    def start() -> WorkerProcess:
        log_path = tmp_path / f"worker-{len(started)}.log"
        worker = WorkerProcess(
            fault_stack.environ, fault_stack.clock.offset_seconds, log_path
        )
        worker.start()
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop()


async def launch_campaign(stack: Stack) -> comms_pb2.Campaign:
    stack.add_customers(range(1, CAMPAIGN_SIZE + 1))
    campaign = await stack.launch(holdout_share=0.0)
    assert campaign.counts.treated_count == CAMPAIGN_SIZE
    return campaign


async def wait_for_received(stack: Stack, count: int) -> None:
    async def received() -> bool:
        return sum(stack.emulator.receive_counts().values()) >= count

    await eventually(received, timeout=20.0, interval=0.005)


async def settle(stack: Stack, campaign_id: int) -> list[comms_pb2.Message]:
    """Wait until every message is final; name the states left on timeout."""
    try:
        return await stack.settled(campaign_id, SETTLE_TIMEOUT)
    except AssertionError:
        messages = await stack.messages(campaign_id)
        states = Counter(comms_pb2.MessageState.Name(m.state) for m in messages)
        raise AssertionError(f"messages not final after {SETTLE_TIMEOUT} s: {states}")


def assert_sent_at_most_once(
    stack: Stack, messages: list[comms_pb2.Message]
) -> dict[str, int]:
    """Check the ledger against the emulator; return the receive counts."""
    received = stack.emulator.receive_counts()
    duplicates = {number: n for number, n in received.items() if n > 1}
    assert duplicates == {}
    assert len(messages) == CAMPAIGN_SIZE
    assert set(received) <= {phone_of(m.customer_id) for m in messages}

    accepted = {m["number"]: m["messageId"] for m in stack.emulator.messages()}
    for message in messages:
        if message.state == DELIVERED:
            number = phone_of(message.customer_id)
            assert accepted.get(number) == message.provider_message_id
    return received


async def test_killed_worker_loses_and_repeats_nothing(
    fault_stack: Stack, start_worker: Callable[[], WorkerProcess]
) -> None:
    # Each send waits 20 ms at the emulator, so the kill finds sends in flight.
    fault_stack.emulator.delay_next_requests(CAMPAIGN_SIZE, 0.02)
    first = start_worker()
    campaign = await launch_campaign(fault_stack)

    await wait_for_received(fault_stack, CAMPAIGN_SIZE // 5)
    first.kill()
    received_at_kill = sum(fault_stack.emulator.receive_counts().values())
    start_worker()
    messages = await settle(fault_stack, campaign.campaign_id)

    assert received_at_kill < CAMPAIGN_SIZE
    received = assert_sent_at_most_once(fault_stack, messages)
    interrupted = [m for m in messages if m.state == DELIVERY_UNKNOWN]
    assert interrupted
    assert {m.reason for m in interrupted} == {"send interrupted"}
    assert {m.state for m in messages} == {DELIVERED, DELIVERY_UNKNOWN}
    assert len(received) >= CAMPAIGN_SIZE - len(interrupted)


async def test_redis_restart_loses_and_repeats_nothing(
    fault_stack: Stack,
    private_redis: Redis,
    start_worker: Callable[[], WorkerProcess],
) -> None:
    fault_stack.emulator.delay_next_requests(CAMPAIGN_SIZE, 0.02)
    start_worker()
    campaign = await launch_campaign(fault_stack)

    await wait_for_received(fault_stack, CAMPAIGN_SIZE // 5)
    # Redis runs without persistence, so the restart empties the queue.
    private_redis.stop()
    received_at_stop = sum(fault_stack.emulator.receive_counts().values())
    private_redis.start()
    messages = await settle(fault_stack, campaign.campaign_id)

    assert received_at_stop < CAMPAIGN_SIZE
    received = assert_sent_at_most_once(fault_stack, messages)
    assert {m.state for m in messages} == {DELIVERED}
    assert len(received) == CAMPAIGN_SIZE


async def test_provider_errors_and_timeouts_send_once(
    fault_stack: Stack, start_worker: Callable[[], WorkerProcess]
) -> None:
    # 45 HTTP 500s make some requests fail all three attempts, so their
    # messages go back to PENDING. The first 10 requests, each carrying a
    # whole batch, outlast the client's total timeout (the connect timeout
    # plus AT_TIMEOUT_SECONDS, 2 s here), so the outcome of their messages is
    # unknown to the worker, and the emulator may accept them all the same.
    fault_stack.emulator.fail_next_requests(45, 500)
    fault_stack.emulator.delay_next_requests(10, 2.5)
    start_worker()
    campaign = await launch_campaign(fault_stack)

    messages = await settle(fault_stack, campaign.campaign_id)

    received = assert_sent_at_most_once(fault_stack, messages)
    timed_out = [m for m in messages if m.state == DELIVERY_UNKNOWN]
    assert len(timed_out) == 10 * SEND_BATCH
    assert {m.reason for m in timed_out} == {"TimeoutError after send"}
    assert all(m.attempt_count == 1 for m in messages)
    assert {m.state for m in messages} == {DELIVERED, DELIVERY_UNKNOWN}
    assert len(received) >= CAMPAIGN_SIZE - len(timed_out)
    assert fault_stack.emulator.state.snapshot()["httpFaults"] == []
