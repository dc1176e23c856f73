"""Sending through Africa's Talking: per-recipient statuses, retries and
outcomes that are unknown."""

from __future__ import annotations

import dataclasses
import socket
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from comms_doubles import FakeCustomer, phone_of
from comms_harness import API_KEY, USERNAME, Stack, eventually
from retain.comms.v1 import comms_pb2
from retain.type.v1 import channel_pb2
from retain.user.v1 import user_pb2
from retain_comms import africastalking, delivery
from retain_comms.africastalking import (
    AfricasTalkingClient,
    Outcome,
    ProviderRejected,
    ProviderUnavailable,
)
from retain_comms.delivery import REQUESTS_AT_ONCE, Deliverer
from retain_comms.ratelimit import SendRateBusy
from retain_emulator import AfricasTalkingEmulator
from retain_runtime.money import kes


def by_customer(messages: list[comms_pb2.Message]) -> dict[int, comms_pb2.Message]:
    return {m.customer_id: m for m in messages}


async def test_failure_status_inside_201_marks_message_failed(stack: Stack) -> None:
    stack.emulator.fail_recipient(phone_of(2), "DoNotDisturbRejection")
    stack.add_customers(range(1, 4))
    stack.start_worker()

    campaign = await stack.launch(holdout_share=0.0)
    messages = by_customer(await stack.settled(campaign.campaign_id))

    assert messages[2].state == comms_pb2.MESSAGE_STATE_FAILED
    assert messages[2].reason == "DoNotDisturbRejection"
    assert messages[2].attempt_count == 1
    assert messages[1].state == comms_pb2.MESSAGE_STATE_DELIVERED
    assert phone_of(2) not in stack.emulator.receive_counts()


async def test_blacklisted_number_fails_and_records_opt_out(stack: Stack) -> None:
    stack.emulator.fail_recipient(phone_of(1), "UserInBlacklist")
    stack.add_customers([1])
    stack.start_worker()

    campaign = await stack.launch(holdout_share=0.0)
    (message,) = await stack.settled(campaign.campaign_id)

    assert message.state == comms_pb2.MESSAGE_STATE_FAILED
    assert message.reason == "UserInBlacklist"
    (opt_out,) = stack.user.opt_outs
    assert opt_out.phone_number == phone_of(1)
    assert opt_out.channel == channel_pb2.CHANNEL_SMS
    assert opt_out.source == user_pb2.CONSENT_SOURCE_PROVIDER_OPT_OUT


async def test_insufficient_balance_pauses_campaign(stack: Stack) -> None:
    stack.emulator.set_balance("1.0")
    stack.add_customers(range(1, 4))
    stack.start_worker()

    campaign = await stack.launch(holdout_share=0.0)

    async def paused() -> comms_pb2.Campaign | None:
        reply = await stack.comms.GetCampaign(
            comms_pb2.GetCampaignRequest(campaign_id=campaign.campaign_id), timeout=5
        )
        is_paused = reply.campaign.status == comms_pb2.CAMPAIGN_STATUS_PAUSED
        states = {m.state for m in await stack.messages(campaign.campaign_id)}
        in_flight = comms_pb2.MESSAGE_STATE_SENDING in states
        return reply.campaign if is_paused and not in_flight else None

    stopped = await eventually(paused)
    assert stopped.status_reason == "insufficient provider balance"
    alerts = await stack.comms.ListAlerts(comms_pb2.ListAlertsRequest(), timeout=5)
    assert [a.kind for a in alerts.alerts] == ["insufficient_balance"]
    assert alerts.alerts[0].campaign_id == campaign.campaign_id
    assert len(stack.emulator.messages()) == 1

    stack.emulator.set_balance("100")
    await stack.comms.ResumeCampaign(
        comms_pb2.ResumeCampaignRequest(campaign_id=campaign.campaign_id), timeout=5
    )
    await stack.settled(campaign.campaign_id)
    assert stack.emulator.receive_counts() == {phone_of(c): 1 for c in range(1, 4)}


async def test_read_timeout_after_send_is_delivery_unknown(stack: Stack) -> None:
    stack.settings = dataclasses.replace(stack.settings, at_timeout_seconds=0.3)
    stack.emulator.delay_next_requests(1, 1.0)
    stack.add_customers([1])
    stack.start_worker()

    campaign = await stack.launch(holdout_share=0.0)
    (message,) = await stack.settled(campaign.campaign_id)

    assert message.state == comms_pb2.MESSAGE_STATE_DELIVERY_UNKNOWN
    assert message.attempt_count == 1

    # The emulator finished the request after the client gave up; the worker
    # never sent it again.
    async def accepted() -> bool:
        return stack.emulator.receive_counts() == {phone_of(1): 1}

    assert await eventually(accepted)


async def test_batch_deadline_releases_unstarted_requests(stack: Stack) -> None:
    stack.emulator.set_callback_url(None)
    customers = range(1, 21)
    for customer_id in customers:
        # A first name each, so each message takes a request of its own.
        name = "Amina" + "abcdefghijklmnopqrstuvwxyz"[customer_id]
        stack.user.add(FakeCustomer(customer_id, first_name=name))
        stack.inference.scores[customer_id] = 0.9
    campaign = await stack.launch(holdout_share=0.0)
    ids = [m.message_id for m in await stack.messages(campaign.campaign_id)]
    assert len(ids) == len(customers)
    stack.emulator.delay_next_requests(len(ids), 1.5)
    settings = dataclasses.replace(stack.settings, batch_send_seconds=0.5)
    deliverer = Deliverer(settings, stack.clock)

    try:
        with pytest.raises(ProviderUnavailable, match="ran out of its 0.5 s"):
            await deliverer.send_batch(ids)
    finally:
        await deliverer.close()

    # The first requests started in time; the others' messages wait again.
    states = Counter(m.state for m in await stack.messages(campaign.campaign_id))
    assert states == {
        comms_pb2.MESSAGE_STATE_SUBMITTED: REQUESTS_AT_ONCE,
        comms_pb2.MESSAGE_STATE_PENDING: len(ids) - REQUESTS_AT_ONCE,
    }
    assert len(stack.emulator.receive_counts()) == REQUESTS_AT_ONCE

    # The worker takes the batch from the queue and sends only the rest.
    stack.start_worker()

    async def all_submitted() -> bool:
        found = await stack.messages(campaign.campaign_id)
        return all(m.state == comms_pb2.MESSAGE_STATE_SUBMITTED for m in found)

    assert await eventually(all_submitted)
    assert stack.emulator.receive_counts() == {phone_of(c): 1 for c in customers}


async def test_server_errors_are_retried(stack: Stack) -> None:
    stack.emulator.fail_next_requests(2, 503)
    stack.add_customers([1])
    stack.start_worker()

    campaign = await stack.launch(holdout_share=0.0)
    (message,) = await stack.settled(campaign.campaign_id)

    assert message.state == comms_pb2.MESSAGE_STATE_DELIVERED
    assert stack.emulator.receive_counts() == {phone_of(1): 1}


async def test_provider_balance_reads_the_account(stack: Stack) -> None:
    request = comms_pb2.GetProviderBalanceRequest()

    healthy = await stack.comms.GetProviderBalance(request, timeout=5)
    stack.emulator.set_balance("12.5")
    low = await stack.comms.GetProviderBalance(request, timeout=5)

    assert healthy.balance == kes(1000 * 1_000_000)
    assert not healthy.low
    assert low.balance == kes(12_500_000)
    assert low.low


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_client_gives_up_on_refused_connections() -> None:
    client = AfricasTalkingClient(
        f"http://127.0.0.1:{closed_port()}", USERNAME, API_KEY, backoff_seconds=0.01
    )
    try:
        with pytest.raises(ProviderUnavailable, match="failed 3 times"):
            await client.send(phone_of(1), "Hello")
    finally:
        await client.aclose()


async def test_client_retries_connection_never_accepted() -> None:
    # A listener with a full backlog drops new connections' SYNs, so connects
    # time out. A timeout this short is under the 5 s connect limit.
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = int(listener.getsockname()[1])
        fillers = [socket.socket() for _ in range(4)]
        for filler in fillers:
            filler.setblocking(False)
            filler.connect_ex(("127.0.0.1", port))
        client = AfricasTalkingClient(
            f"http://127.0.0.1:{port}",
            USERNAME,
            API_KEY,
            timeout_seconds=0.3,
            backoff_seconds=0.01,
        )
        try:
            with pytest.raises(ProviderUnavailable, match="failed 3 times.*Timeout"):
                await client.send(phone_of(1), "Hello")
        finally:
            await client.aclose()
            for filler in fillers:
                filler.close()


async def test_client_rejects_wrong_key() -> None:
    with AfricasTalkingEmulator(USERNAME, API_KEY) as emulator:
        client = AfricasTalkingClient(emulator.base_url, USERNAME, "wrong-key")
        try:
            with pytest.raises(ProviderRejected, match="HTTP 401"):
                await client.send(phone_of(1), "Hello")
        finally:
            await client.aclose()
        assert emulator.messages() == []


async def test_client_reads_cost_and_message_id() -> None:
    with AfricasTalkingEmulator(USERNAME, API_KEY) as emulator:
        client = AfricasTalkingClient(emulator.base_url, USERNAME, API_KEY)
        try:
            result = await client.send(phone_of(1), "Hello")
        finally:
            await client.aclose()
        (accepted,) = emulator.messages()

    assert result.outcome is Outcome.SUBMITTED
    assert result.provider_message_id == accepted["messageId"]
    assert result.cost_micros == 800_000
    assert result.currency == "KES"


@pytest.mark.parametrize("status", [301, 302, 307, 308])
async def test_client_rejects_redirect_without_following(status: int) -> None:
    with AfricasTalkingEmulator(USERNAME, API_KEY) as emulator:
        redirect = RedirectServer(f"{emulator.base_url}/version1/messaging", status)
        client = AfricasTalkingClient(redirect.base_url, USERNAME, API_KEY)
        try:
            with pytest.raises(ProviderRejected, match=f"HTTP {status}.*AT_BASE_URL"):
                await client.send(phone_of(1), "Hello")
        finally:
            await client.aclose()
            redirect.stop()
        assert emulator.messages() == []


async def test_see_other_after_send_is_unknown() -> None:
    # A 303 means the server acted on the POST, so the message may have gone.
    with AfricasTalkingEmulator(USERNAME, API_KEY) as emulator:
        redirect = RedirectServer(f"{emulator.base_url}/version1/messaging", 303)
        client = AfricasTalkingClient(redirect.base_url, USERNAME, API_KEY)
        try:
            result = await client.send(phone_of(1), "Hello")
        finally:
            await client.aclose()
            redirect.stop()
        assert emulator.messages() == []

    assert result.outcome is Outcome.UNKNOWN


class RedirectServer:
    """An HTTP server that replies to every request with a redirect to
    location."""

    def __init__(self, location: str, status: int) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", "0")))
                self.send_response(status)
                self.send_header("Location", location)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def base_url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


async def test_reply_over_size_limit_is_unknown(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(africastalking, "MAX_REPLY_BYTES", 1000)
    with AfricasTalkingEmulator(USERNAME, API_KEY) as emulator:
        client = AfricasTalkingClient(emulator.base_url, USERNAME, API_KEY)
        numbers = [phone_of(c) for c in range(1, 21)]
        try:
            results = await client.send_bulk(numbers, "Hello")
        finally:
            await client.aclose()
        accepted = len(emulator.messages())

    assert accepted == len(numbers)
    assert {r.outcome for r in results.values()} == {Outcome.UNKNOWN}


async def test_batch_waiting_too_long_for_tokens_claims_nothing(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(delivery, "RATE_WAIT_SECONDS", 0.5)
    stack.add_customers(range(1, 21))
    campaign = await stack.launch(holdout_share=0.0)
    ids = sorted(m.message_id for m in await stack.messages(campaign.campaign_id))
    # One token a second: the first batch takes them all and more.
    settings = dataclasses.replace(stack.settings, at_send_rate_per_second=1.0)
    deliverer = Deliverer(settings, stack.clock)

    try:
        await deliverer.send_batch(ids[:10])
        with pytest.raises(SendRateBusy):
            await deliverer.send_batch(ids[10:])
    finally:
        await deliverer.close()

    states = {m.message_id: m.state for m in await stack.messages(campaign.campaign_id)}
    assert {states[i] for i in ids[10:]} == {comms_pb2.MESSAGE_STATE_PENDING}
    assert len(stack.emulator.receive_counts()) == 10
