"""The emulated AT endpoints over HTTP: reply shapes, checks, faults and balance."""

from __future__ import annotations

import http.client
import re
import time
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import httpx
import pytest
from emulator_helpers import (
    API_KEY,
    AT_HEADERS,
    USERNAME,
    recipients_of,
    send_sms,
    wait_until,
)
from retain_emulator import AfricasTalkingEmulator

NUMBER = "+254712345601"
OTHER_NUMBER = "+254112345678"
MESSAGE_ID = re.compile(r"^ATXid_[0-9a-f]{32}$")


def test_send_reply_has_at_shape(client: httpx.Client) -> None:
    response = send_sms(client, NUMBER)

    assert response.status_code == 201
    assert response.headers["content-type"] == "application/json"
    data = response.json()["SMSMessageData"]
    assert data["Message"] == "Sent to 1/1 Total Cost: KES 0.8000"
    [recipient] = data["Recipients"]
    assert recipient["statusCode"] == 101
    assert recipient["number"] == NUMBER
    assert recipient["status"] == "Success"
    assert recipient["cost"] == "KES 0.8000"
    assert MESSAGE_ID.match(recipient["messageId"])
    assert recipient["messageParts"] == 1


def test_multi_recipient_send_lists_each_number(client: httpx.Client) -> None:
    response = send_sms(client, f"{NUMBER}, {OTHER_NUMBER}")

    data = response.json()["SMSMessageData"]
    assert data["Message"] == "Sent to 2/2 Total Cost: KES 1.6000"
    numbers = [recipient["number"] for recipient in data["Recipients"]]
    assert numbers == [NUMBER, OTHER_NUMBER]
    message_ids = {recipient["messageId"] for recipient in data["Recipients"]}
    assert len(message_ids) == 2


def test_missing_api_key_is_rejected(client: httpx.Client) -> None:
    response = send_sms(client, NUMBER, headers={"Accept": "application/json"})

    assert response.status_code == 401
    assert response.text == "The supplied authentication is invalid"


def test_wrong_api_key_is_rejected(client: httpx.Client) -> None:
    headers = {"apiKey": "wrong", "Accept": "application/json"}

    response = send_sms(client, NUMBER, headers=headers)

    assert response.status_code == 401


def test_api_key_header_name_ignores_case(client: httpx.Client) -> None:
    headers = {"apikey": API_KEY, "Accept": "application/json"}

    response = send_sms(client, NUMBER, headers=headers)

    assert response.status_code == 201


def test_wrong_username_is_rejected(client: httpx.Client) -> None:
    response = client.post(
        "/version1/messaging",
        data={"username": "someone-else", "to": NUMBER, "message": "hi"},
        headers=AT_HEADERS,
    )

    assert response.status_code == 401
    assert response.text == "The supplied authentication is invalid"


@pytest.mark.parametrize("accept", [None, "*/*", "application/xml"])
def test_send_without_json_accept_is_not_acceptable(
    client: httpx.Client, accept: str | None
) -> None:
    headers = {"apiKey": API_KEY}
    if accept is not None:
        headers["Accept"] = accept

    response = send_sms(client, NUMBER, headers=headers)

    assert response.status_code == 406
    assert "Accept: application/json" in response.text


def test_accept_with_several_types_including_json_is_allowed(
    client: httpx.Client,
) -> None:
    headers = {"apiKey": API_KEY, "Accept": "application/xml;q=0.5, application/json"}

    response = send_sms(client, NUMBER, headers=headers)

    assert response.status_code == 201


@pytest.mark.parametrize("field", ["username", "to", "message"])
def test_missing_field_is_named_in_400(client: httpx.Client, field: str) -> None:
    data = {"username": USERNAME, "to": NUMBER, "message": "hi"}
    del data[field]

    response = client.post("/version1/messaging", data=data, headers=AT_HEADERS)

    assert response.status_code == 400
    assert response.text == f"Missing required field: {field}"


def test_blank_to_list_is_a_missing_field(client: httpx.Client) -> None:
    response = send_sms(client, " , ")

    assert response.status_code == 400
    assert response.text == "Missing required field: to"


def test_invalid_bulk_sms_mode_is_rejected(client: httpx.Client) -> None:
    response = send_sms(client, NUMBER, bulkSMSMode="yes")

    assert response.status_code == 400
    assert "bulkSMSMode" in response.text


def test_json_body_is_unsupported_media_type(client: httpx.Client) -> None:
    response = client.post(
        "/version1/messaging",
        json={"username": USERNAME, "to": NUMBER, "message": "hi"},
        headers=AT_HEADERS,
    )

    assert response.status_code == 415


def test_get_on_messaging_is_method_not_allowed(client: httpx.Client) -> None:
    response = client.get("/version1/messaging", headers=AT_HEADERS)

    assert response.status_code == 405
    assert response.headers["allow"] == "POST"


def test_unknown_path_is_not_found(client: httpx.Client) -> None:
    response = client.get("/version1/nothing", headers=AT_HEADERS)

    assert response.status_code == 404


@pytest.mark.parametrize(
    "number",
    ["0712345601", "254712345601", "+25471234560", "+2547123456011", "+254212345601"],
)
def test_invalid_number_gets_403_inside_201(client: httpx.Client, number: str) -> None:
    response = send_sms(client, number)

    assert response.status_code == 201
    data = response.json()["SMSMessageData"]
    assert data["Message"] == "Sent to 0/1 Total Cost: 0"
    [recipient] = data["Recipients"]
    assert recipient["statusCode"] == 403
    assert recipient["status"] == "InvalidPhoneNumber"
    assert recipient["cost"] == "0"
    assert recipient["messageId"] == "None"


def test_invalid_number_does_not_stop_valid_ones(client: httpx.Client) -> None:
    response = send_sms(client, f"{NUMBER},12345")

    data = response.json()["SMSMessageData"]
    assert data["Message"] == "Sent to 1/2 Total Cost: KES 0.8000"
    statuses = [recipient["statusCode"] for recipient in data["Recipients"]]
    assert statuses == [101, 403]


@pytest.mark.parametrize(
    ("status", "code"),
    [
        ("UserInBlacklist", 406),
        ("InsufficientBalance", 405),
        ("RiskHold", 401),
        ("CouldNotRoute", 407),
        ("RejectedByGateway", 502),
        (501, 501),
    ],
)
def test_chosen_recipient_failure_is_returned(
    emulator: AfricasTalkingEmulator,
    client: httpx.Client,
    status: str | int,
    code: int,
) -> None:
    emulator.fail_recipient(NUMBER, status)

    response = send_sms(client, f"{NUMBER},{OTHER_NUMBER}")

    assert response.status_code == 201
    failed, sent = recipients_of(response)
    assert failed["statusCode"] == code
    assert failed["cost"] == "0"
    assert failed["messageId"] == "None"
    assert sent["statusCode"] == 101
    assert emulator.receive_counts() == {OTHER_NUMBER: 1}


def test_success_status_cannot_be_a_recipient_failure(
    emulator: AfricasTalkingEmulator,
) -> None:
    with pytest.raises(ValueError, match="success status"):
        emulator.fail_recipient(NUMBER, "Success")


def test_recipient_failures_from_constructor_apply() -> None:
    failures = {NUMBER: "UserInBlacklist"}
    with (
        AfricasTalkingEmulator(USERNAME, API_KEY, recipient_failures=failures) as emu,
        httpx.Client(base_url=emu.base_url) as http,
    ):
        [recipient] = recipients_of(send_sms(http, NUMBER))

    assert recipient["statusCode"] == 406
    assert recipient["status"] == "UserInBlacklist"


def test_http_fault_fails_exactly_count_requests(
    emulator: AfricasTalkingEmulator, client: httpx.Client
) -> None:
    emulator.fail_next_requests(2)

    statuses = [send_sms(client, NUMBER).status_code for _ in range(3)]

    assert statuses == [500, 500, 201]
    assert emulator.receive_counts() == {NUMBER: 1}


def test_messaging_fault_leaves_user_endpoint_alone(
    emulator: AfricasTalkingEmulator, client: httpx.Client
) -> None:
    emulator.fail_next_requests(1, status=503)

    user = client.get(
        "/version1/user", params={"username": USERNAME}, headers=AT_HEADERS
    )
    send = send_sms(client, NUMBER)

    assert user.status_code == 200
    assert send.status_code == 503


def test_failing_requests_from_constructor_apply() -> None:
    with (
        AfricasTalkingEmulator(USERNAME, API_KEY, failing_requests=1) as emu,
        httpx.Client(base_url=emu.base_url) as http,
    ):
        first = send_sms(http, NUMBER).status_code
        second = send_sms(http, NUMBER).status_code

    assert first == 500
    assert second == 201


def test_fault_rate_fails_that_share_of_sends(
    emulator: AfricasTalkingEmulator, client: httpx.Client
) -> None:
    emulator.fail_requests_at_rate(0.25, status=503, seed=7)

    statuses = [send_sms(client, NUMBER).status_code for _ in range(400)]

    failed = statuses.count(503)
    assert 60 <= failed <= 140
    assert statuses.count(201) == 400 - failed
    assert emulator.receive_counts() == {NUMBER: 400 - failed}
    assert emulator.state.snapshot()["httpFaultRate"]["injected"] == failed


def test_fault_rate_comes_after_counted_faults(
    emulator: AfricasTalkingEmulator, client: httpx.Client
) -> None:
    emulator.fail_next_requests(2, status=502)
    emulator.fail_requests_at_rate(1.0)

    statuses = [send_sms(client, NUMBER).status_code for _ in range(3)]

    assert statuses == [502, 502, 500]


def test_fault_rate_zero_stops_failures(
    emulator: AfricasTalkingEmulator, client: httpx.Client
) -> None:
    emulator.fail_requests_at_rate(1.0)
    emulator.fail_requests_at_rate(0.0)

    assert send_sms(client, NUMBER).status_code == 201
    assert emulator.state.snapshot()["httpFaultRate"] is None


@pytest.mark.parametrize(
    ("rate", "status", "scope"),
    [
        (1.5, 500, "messaging"),
        (-0.1, 500, "messaging"),
        (0.1, 200, "messaging"),
        (0.1, 500, "billing"),
    ],
    ids=["rate-above-one", "negative-rate", "success-status", "unknown-scope"],
)
def test_fault_rate_rejects_invalid_values(
    emulator: AfricasTalkingEmulator, rate: float, status: int, scope: str
) -> None:
    with pytest.raises(ValueError):
        emulator.fail_requests_at_rate(rate, status, scope)


def test_delayed_request_times_out_but_is_processed(
    emulator: AfricasTalkingEmulator, client: httpx.Client
) -> None:
    emulator.delay_next_requests(1, 0.5)

    with pytest.raises(httpx.ReadTimeout):
        client.post(
            "/version1/messaging",
            data={"username": USERNAME, "to": NUMBER, "message": "late"},
            headers=AT_HEADERS,
            timeout=0.1,
        )
    prompt = send_sms(client, OTHER_NUMBER)

    assert prompt.status_code == 201
    assert wait_until(lambda: emulator.receive_counts().get(NUMBER) == 1)


def test_gsm7_message_over_160_characters_costs_two_parts(
    client: httpx.Client,
) -> None:
    [recipient] = recipients_of(send_sms(client, NUMBER, message="a" * 161))

    assert recipient["messageParts"] == 2
    assert recipient["cost"] == "KES 1.6000"


def test_unicode_message_over_70_characters_costs_two_parts(
    client: httpx.Client,
) -> None:
    [recipient] = recipients_of(send_sms(client, NUMBER, message="ü" + "ж" * 70))

    assert recipient["messageParts"] == 2


def test_cost_per_segment_is_configurable() -> None:
    with (
        AfricasTalkingEmulator(USERNAME, API_KEY, cost_per_segment="1.25") as emu,
        httpx.Client(base_url=emu.base_url) as http,
    ):
        response = send_sms(http, f"{NUMBER},{OTHER_NUMBER}")

    data = response.json()["SMSMessageData"]
    assert data["Message"] == "Sent to 2/2 Total Cost: KES 2.5000"
    assert data["Recipients"][0]["cost"] == "KES 1.2500"


def test_user_data_returns_balance(client: httpx.Client) -> None:
    response = client.get(
        "/version1/user", params={"username": USERNAME}, headers=AT_HEADERS
    )

    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"UserData": {"balance": "KES 1000.0000"}}


def test_user_data_checks_credentials(client: httpx.Client) -> None:
    no_key = client.get(
        "/version1/user",
        params={"username": USERNAME},
        headers={"Accept": "application/json"},
    )
    wrong_user = client.get(
        "/version1/user", params={"username": "x"}, headers=AT_HEADERS
    )
    no_user = client.get("/version1/user", headers=AT_HEADERS)
    no_accept = client.get(
        "/version1/user", params={"username": USERNAME}, headers={"apiKey": API_KEY}
    )

    assert no_key.status_code == 401
    assert wrong_user.status_code == 401
    assert no_user.status_code == 400
    assert no_accept.status_code == 406


def test_send_debits_balance(
    emulator: AfricasTalkingEmulator, client: httpx.Client
) -> None:
    send_sms(client, f"{NUMBER},{OTHER_NUMBER}")

    response = client.get(
        "/version1/user", params={"username": USERNAME}, headers=AT_HEADERS
    )

    assert response.json()["UserData"]["balance"] == "KES 998.4000"
    assert emulator.balance == Decimal("998.4000")


def test_low_balance_gives_insufficient_balance(
    emulator: AfricasTalkingEmulator, client: httpx.Client
) -> None:
    emulator.set_balance("1.0")

    response = send_sms(client, f"{NUMBER},{OTHER_NUMBER}")

    data = response.json()["SMSMessageData"]
    assert data["Message"] == "Sent to 1/2 Total Cost: KES 0.8000"
    sent, refused = data["Recipients"]
    assert sent["statusCode"] == 101
    assert refused["statusCode"] == 405
    assert refused["status"] == "InsufficientBalance"
    assert refused["cost"] == "0"
    assert emulator.balance == Decimal("0.2000")


def test_sender_id_outside_allowed_list_is_invalid() -> None:
    with (
        AfricasTalkingEmulator(USERNAME, API_KEY, sender_ids=["RETAIN"]) as emu,
        httpx.Client(base_url=emu.base_url) as http,
    ):
        refused = send_sms(http, NUMBER, **{"from": "OTHER"})
        allowed = send_sms(http, NUMBER, **{"from": "RETAIN"})

    assert refused.status_code == 201
    assert refused.json() == {
        "SMSMessageData": {"Message": "InvalidSenderId", "Recipients": []}
    }
    assert recipients_of(allowed)[0]["statusCode"] == 101


def test_message_log_records_accepted_messages(
    emulator: AfricasTalkingEmulator, client: httpx.Client
) -> None:
    response = send_sms(
        client, f"{NUMBER},{NUMBER},bad", message="Hi", **{"from": "RETAIN"}
    )
    message_id = recipients_of(response)[0]["messageId"]

    messages = emulator.messages()

    assert len(messages) == 2
    assert messages[0]["messageId"] == message_id
    assert messages[0]["number"] == NUMBER
    assert messages[0]["message"] == "Hi"
    assert messages[0]["from"] == "RETAIN"
    assert messages[0]["status"] == "Success"
    assert messages[0]["time"].endswith("Z")
    assert emulator.receive_counts() == {NUMBER: 2}
    assert [entry["number"] for entry in emulator.rejected_messages()] == ["bad"]


def test_keep_alive_connection_serves_several_requests(
    emulator: AfricasTalkingEmulator,
) -> None:
    host, port = emulator.address
    connection = http.client.HTTPConnection(host, port, timeout=5)
    try:
        statuses = []
        for _ in range(3):
            connection.request("GET", "/_emulator/state")
            response = connection.getresponse()
            response.read()
            statuses.append(response.status)
            assert response.getheader("Connection") != "close"
    finally:
        connection.close()

    assert statuses == [200, 200, 200]


def test_sequential_sends_do_not_wait_for_delayed_acks(
    client: httpx.Client,
) -> None:
    # With Nagle's algorithm on, each reply waited about 40 ms for the
    # client's delayed ACK, so 50 sends took 2 s or more.
    start = time.monotonic()
    for _ in range(50):
        send_sms(client, NUMBER)

    assert time.monotonic() - start < 1.5


def test_concurrent_sends_are_all_counted(emulator: AfricasTalkingEmulator) -> None:
    workers, sends_per_worker = 8, 40

    def send_many(_: int) -> list[int]:
        with httpx.Client(base_url=emulator.base_url, timeout=10) as http:
            return [send_sms(http, NUMBER).status_code for _ in range(sends_per_worker)]

    with ThreadPoolExecutor(workers) as pool:
        statuses = [
            status for batch in pool.map(send_many, range(workers)) for status in batch
        ]

    total = workers * sends_per_worker
    assert statuses == [201] * total
    assert emulator.receive_counts() == {NUMBER: total}
    assert emulator.balance == Decimal(1000) - Decimal("0.8") * total


def test_stop_closes_kept_alive_connections() -> None:
    emu = AfricasTalkingEmulator(USERNAME, API_KEY)
    emu.start()
    http = httpx.Client(base_url=emu.base_url, timeout=2)
    try:
        assert send_sms(http, NUMBER).status_code == 201
        emu.stop()
        with pytest.raises(httpx.TransportError):
            send_sms(http, NUMBER)
    finally:
        http.close()
        emu.stop()


def test_start_returns_bound_loopback_address() -> None:
    emu = AfricasTalkingEmulator(USERNAME, API_KEY, port=0)
    try:
        host, port = emu.start()
    finally:
        emu.stop()

    assert host == "127.0.0.1"
    assert port > 0
    assert emu.base_url == f"http://127.0.0.1:{port}"
