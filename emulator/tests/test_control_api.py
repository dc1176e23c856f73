"""The JSON control API under /_emulator."""

from __future__ import annotations

import httpx
import pytest
from emulator_helpers import (
    AT_HEADERS,
    USERNAME,
    CallbackReceiver,
    recipients_of,
    send_sms,
)
from retain_emulator import AfricasTalkingEmulator

NUMBER = "+254712345601"
OTHER_NUMBER = "+254112345678"


def test_messages_route_lists_messages_and_counts(client: httpx.Client) -> None:
    send_sms(client, f"{NUMBER},{NUMBER},{OTHER_NUMBER},bad")

    body = client.get("/_emulator/messages").json()

    assert len(body["messages"]) == 3
    assert body["counts"] == {NUMBER: 2, OTHER_NUMBER: 1}
    assert [entry["status"] for entry in body["rejected"]] == ["InvalidPhoneNumber"]
    first = body["messages"][0]
    assert set(first) >= {"messageId", "number", "message", "time", "status"}


def test_balance_route_sets_balance(client: httpx.Client) -> None:
    response = client.put("/_emulator/balance", json={"balance": "0.5"})
    [recipient] = recipients_of(send_sms(client, NUMBER))

    assert response.json() == {"balance": "KES 0.5000"}
    assert recipient["status"] == "InsufficientBalance"


def test_recipient_failure_route_sets_and_clears(client: httpx.Client) -> None:
    set_response = client.put(
        "/_emulator/recipient-failures",
        json={"number": NUMBER, "status": "UserInBlacklist"},
    )
    failed = recipients_of(send_sms(client, NUMBER))[0]
    client.request("DELETE", "/_emulator/recipient-failures", json={"number": NUMBER})
    cleared = recipients_of(send_sms(client, NUMBER))[0]

    assert set_response.json() == {
        "number": NUMBER,
        "status": "UserInBlacklist",
        "statusCode": 406,
    }
    assert failed["statusCode"] == 406
    assert cleared["statusCode"] == 101


def test_recipient_failure_route_accepts_status_code(client: httpx.Client) -> None:
    response = client.put(
        "/_emulator/recipient-failures", json={"number": NUMBER, "status": 405}
    )

    assert response.json()["status"] == "InsufficientBalance"


def test_http_fault_route_fails_next_sends(client: httpx.Client) -> None:
    response = client.post("/_emulator/http-faults", json={"count": 2})

    statuses = [send_sms(client, NUMBER).status_code for _ in range(3)]

    assert response.json() == {"remaining": 2, "status": 500, "scope": "messaging"}
    assert statuses == [500, 500, 201]


def test_http_fault_with_user_scope_fails_balance_reads(client: httpx.Client) -> None:
    client.post("/_emulator/http-faults", json={"count": 1, "scope": "user"})

    user = client.get(
        "/version1/user", params={"username": USERNAME}, headers=AT_HEADERS
    )
    send = send_sms(client, NUMBER)

    assert user.status_code == 500
    assert send.status_code == 201


def test_fault_rate_route_fails_sends(client: httpx.Client) -> None:
    response = client.put("/_emulator/http-fault-rate", json={"rate": 1, "seed": 3})

    statuses = [send_sms(client, NUMBER).status_code for _ in range(3)]
    state = client.get("/_emulator/state").json()

    assert response.json() == {
        "rate": 1.0,
        "status": 500,
        "scope": "messaging",
        "injected": 0,
    }
    assert statuses == [500, 500, 500]
    assert state["httpFaultRate"]["injected"] == 3


def test_fault_rate_route_rejects_rate_above_one(client: httpx.Client) -> None:
    response = client.put("/_emulator/http-fault-rate", json={"rate": 2})

    assert response.status_code == 400
    assert "rate must be from 0 to 1" in response.json()["error"]


def test_delay_route_holds_next_send(client: httpx.Client) -> None:
    client.post("/_emulator/delays", json={"count": 1, "seconds": 0.5})

    with pytest.raises(httpx.ReadTimeout):
        client.post(
            "/version1/messaging",
            data={"username": USERNAME, "to": NUMBER, "message": "hi"},
            headers=AT_HEADERS,
            timeout=0.1,
        )


def test_delivery_plan_route_sets_report_status(
    receiver: CallbackReceiver, client: httpx.Client
) -> None:
    client.put("/_emulator/callback-url", json={"url": receiver.url})
    response = client.put(
        "/_emulator/delivery-plans",
        json={
            "number": NUMBER,
            "status": "Failed",
            "failureReason": "UserDoesNotExist",
            "intermediate": ["Sent"],
        },
    )

    send_sms(client, NUMBER)
    reports = receiver.wait_for(2)

    assert response.status_code == 200
    assert [report["status"] for report in reports] == ["Sent", "Failed"]
    assert reports[1]["failureReason"] == "UserDoesNotExist"


def test_reports_route_lists_outcomes(
    receiver: CallbackReceiver, client: httpx.Client, emulator: AfricasTalkingEmulator
) -> None:
    client.put("/_emulator/callback-url", json={"url": receiver.url})
    send_sms(client, NUMBER)
    assert emulator.wait_for_reports()

    [record] = client.get("/_emulator/reports").json()["reports"]

    assert record["phoneNumber"] == NUMBER
    assert record["outcome"] == "delivered"
    assert record["attempts"] == 1


def test_state_route_shows_active_faults(client: httpx.Client) -> None:
    client.post("/_emulator/http-faults", json={"count": 3, "status": 502})
    client.put("/_emulator/recipient-failures", json={"number": NUMBER, "status": 406})

    state = client.get("/_emulator/state").json()

    assert state["balance"] == "KES 1000.0000"
    assert state["httpFaults"] == [
        {"remaining": 3, "status": 502, "scope": "messaging"}
    ]
    assert state["recipientFailures"] == {
        NUMBER: {"status": "UserInBlacklist", "statusCode": 406}
    }
    assert state["callbackUrl"] is None


def test_reset_route_restores_initial_state(
    client: httpx.Client, emulator: AfricasTalkingEmulator
) -> None:
    send_sms(client, NUMBER)
    client.post("/_emulator/http-faults", json={"count": 1})

    response = client.post("/_emulator/reset")

    assert response.json() == {"reset": True}
    assert emulator.messages() == []
    assert emulator.receive_counts() == {}
    assert str(emulator.balance) == "1000.0000"
    assert send_sms(client, NUMBER).status_code == 201


@pytest.mark.parametrize(
    ("method", "path", "body", "expected_error"),
    [
        ("PUT", "/_emulator/balance", {}, "missing required field: balance"),
        ("PUT", "/_emulator/balance", {"balance": "lots"}, "invalid"),
        (
            "PUT",
            "/_emulator/recipient-failures",
            {"number": NUMBER, "status": "Nope"},
            "unknown",
        ),
        ("POST", "/_emulator/http-faults", {"count": 0}, "count must be 1 or more"),
        ("POST", "/_emulator/http-faults", {"count": True}, "invalid field count"),
        ("POST", "/_emulator/http-faults", {"count": 1, "status": 200}, "400 to 599"),
        (
            "POST",
            "/_emulator/http-faults",
            {"count": 1, "scope": "sms"},
            "invalid scope",
        ),
        ("POST", "/_emulator/delays", {"count": 1, "seconds": -1}, "seconds must be"),
        (
            "PUT",
            "/_emulator/delivery-plans",
            {"status": "Delivered"},
            "unknown delivery",
        ),
        ("PUT", "/_emulator/callback-url", {"url": "ftp://x"}, "http(s) URL"),
        ("PUT", "/_emulator/callback-url", {}, "missing required field: url"),
    ],
)
def test_invalid_control_request_is_400(
    client: httpx.Client,
    method: str,
    path: str,
    body: dict[str, object],
    expected_error: str,
) -> None:
    response = client.request(method, path, json=body)

    assert response.status_code == 400
    assert expected_error in response.json()["error"]


def test_malformed_json_is_400(client: httpx.Client) -> None:
    response = client.put(
        "/_emulator/balance",
        content=b"{not json",
        headers={"Content-Type": "application/json"},
    )

    assert response.status_code == 400
    assert "invalid JSON body" in response.json()["error"]


def test_unknown_control_route_is_404(client: httpx.Client) -> None:
    assert client.get("/_emulator/nothing").status_code == 404


def test_wrong_method_on_control_route_is_405(client: httpx.Client) -> None:
    assert client.get("/_emulator/balance").status_code == 405
