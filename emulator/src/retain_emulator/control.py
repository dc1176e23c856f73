"""JSON control API under /_emulator for tests: inject faults and read what was sent.

Routes, with request and reply bodies in JSON:

    GET    /_emulator/messages          {"messages": [...], "rejected": [...],
                                         "counts": {number: accepted count}}
    GET    /_emulator/reports           {"reports": [...]}
    GET    /_emulator/state             balance, faults, plans and callback URL
    PUT    /_emulator/balance           {"balance": "12.5"}
    PUT    /_emulator/recipient-failures {"number": "+254...", "status": "UserInBlacklist"}
    DELETE /_emulator/recipient-failures {"number": "+254..."}, or no body for all
    POST   /_emulator/http-faults       {"count": 3, "status": 500, "scope": "messaging"}
    PUT    /_emulator/http-fault-rate   {"rate": 0.05, "status": 500, "scope": "messaging",
                                         "seed": 7}; rate 0 stops it
    POST   /_emulator/delays            {"count": 1, "seconds": 2.0, "scope": "messaging"}
    PUT    /_emulator/delivery-plans    {"number": "+254...", "status": "Failed", ...}
    DELETE /_emulator/delivery-plans    {"number": "+254..."}, or no body for all
    PUT    /_emulator/callback-url      {"url": "http://127.0.0.1:9000/dlr"} or null
    POST   /_emulator/reset             restores the initial balance and clears faults,
                                        plans, messages and reports

The control API has no authentication, so the emulator must listen on loopback only.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

from retain_emulator.delivery import (
    SAFARICOM_NETWORK_CODE,
    DeliveryPlan,
    DeliveryReporter,
    redact_url,
)
from retain_emulator.http_types import ApiRequest, Response, json_response
from retain_emulator.state import (
    DelayFault,
    EmulatorState,
    HttpFault,
    HttpFaultRate,
    plan_to_json,
)

logger = logging.getLogger(__name__)

CONTROL_PREFIX = "/_emulator"


class ControlError(ValueError):
    """An invalid control request. The message is returned with HTTP 400."""


def _error(status: int, message: str) -> Response:
    return json_response(status, {"error": message})


def _field(body: dict[str, Any], name: str, kind: type | tuple[type, ...]) -> Any:
    """Return a required field of the JSON body, checking its JSON type."""
    if name not in body:
        raise ControlError(f"missing required field: {name}")
    return _typed(body, name, kind)


def _optional(
    body: dict[str, Any], name: str, kind: type | tuple[type, ...], default: Any
) -> Any:
    if body.get(name) is None:
        return default
    return _typed(body, name, kind)


def _typed(body: dict[str, Any], name: str, kind: type | tuple[type, ...]) -> Any:
    value = body[name]
    # bool is a subclass of int, but true and false are never valid numbers here.
    if isinstance(value, bool) or not isinstance(value, kind):
        raise ControlError(f"invalid field {name}: {value!r}")
    return value


class ControlApi:
    """Route /_emulator requests to the account state and the delivery reporter."""

    def __init__(self, state: EmulatorState, reporter: DeliveryReporter) -> None:
        self._state = state
        self._reporter = reporter
        self._routes: dict[tuple[str, str], Callable[[dict[str, Any]], Any]] = {
            ("GET", "/messages"): self._messages,
            ("GET", "/reports"): self._reports,
            ("GET", "/state"): self._snapshot,
            ("PUT", "/balance"): self._set_balance,
            ("PUT", "/recipient-failures"): self._fail_recipient,
            ("DELETE", "/recipient-failures"): self._clear_recipient_failures,
            ("POST", "/http-faults"): self._add_http_fault,
            ("PUT", "/http-fault-rate"): self._set_http_fault_rate,
            ("POST", "/delays"): self._add_delay,
            ("PUT", "/delivery-plans"): self._set_delivery_plan,
            ("DELETE", "/delivery-plans"): self._clear_delivery_plans,
            ("PUT", "/callback-url"): self._set_callback_url,
            ("POST", "/reset"): self._reset,
        }

    def handle(self, request: ApiRequest) -> Response:
        route_path = request.path.removeprefix(CONTROL_PREFIX)
        route = self._routes.get((request.method, route_path))
        if route is None:
            known = any(path == route_path for _, path in self._routes)
            if known:
                return _error(
                    405, f"method {request.method} is not allowed on {request.path}"
                )
            return _error(404, f"no control route {request.path}")

        try:
            body = request.json_body()
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            return _error(400, f"invalid JSON body: {error}")
        if body is None:
            body = {}
        if not isinstance(body, dict):
            return _error(400, "invalid JSON body: expected an object")

        try:
            return json_response(200, route(body))
        except ValueError as error:
            return _error(400, str(error))

    def _messages(self, _body: dict[str, Any]) -> dict[str, Any]:
        return {
            "messages": self._state.accepted_messages(),
            "rejected": self._state.rejected_messages(),
            "counts": self._state.receive_counts(),
        }

    def _reports(self, _body: dict[str, Any]) -> dict[str, Any]:
        return {"reports": self._reporter.records()}

    def _snapshot(self, _body: dict[str, Any]) -> dict[str, Any]:
        return {**self._state.snapshot(), "callbackUrl": self._reporter.callback_url}

    def _set_balance(self, body: dict[str, Any]) -> dict[str, Any]:
        amount = _field(body, "balance", (str, int, float))
        try:
            self._state.set_balance(amount)
        except ArithmeticError as error:
            raise ControlError(f"invalid field balance: {amount!r}") from error
        return {"balance": self._state.formatted_balance()}

    def _fail_recipient(self, body: dict[str, Any]) -> dict[str, Any]:
        number = _field(body, "number", str)
        status = _field(body, "status", (str, int))
        name, code = self._state.fail_recipient(number, status)
        return {"number": number, "status": name, "statusCode": code}

    def _clear_recipient_failures(self, body: dict[str, Any]) -> dict[str, Any]:
        self._state.clear_recipient_failures(_optional(body, "number", str, None))
        return {"cleared": True}

    def _add_http_fault(self, body: dict[str, Any]) -> dict[str, Any]:
        fault = HttpFault(
            remaining=_field(body, "count", int),
            status=_optional(body, "status", int, 500),
            scope=_optional(body, "scope", str, "messaging"),
        )
        self._state.add_http_fault(fault)
        return fault.to_json()

    def _set_http_fault_rate(self, body: dict[str, Any]) -> dict[str, Any]:
        fault = HttpFaultRate(
            rate=float(_field(body, "rate", (int, float))),
            status=_optional(body, "status", int, 500),
            scope=_optional(body, "scope", str, "messaging"),
        )
        self._state.set_http_fault_rate(fault, _optional(body, "seed", int, None))
        return fault.to_json()

    def _add_delay(self, body: dict[str, Any]) -> dict[str, Any]:
        fault = DelayFault(
            remaining=_field(body, "count", int),
            seconds=float(_field(body, "seconds", (int, float))),
            scope=_optional(body, "scope", str, "messaging"),
        )
        self._state.add_delay_fault(fault)
        return fault.to_json()

    def _set_delivery_plan(self, body: dict[str, Any]) -> dict[str, Any]:
        number = _optional(body, "number", str, None)
        intermediate = _optional(body, "intermediate", list, [])
        if not all(isinstance(status, str) for status in intermediate):
            raise ControlError(f"invalid field intermediate: {intermediate!r}")
        plan = DeliveryPlan(
            final_status=_optional(body, "status", str, "Success"),
            failure_reason=_optional(body, "failureReason", str, None),
            intermediate_statuses=tuple(intermediate),
            duplicates=_optional(body, "duplicates", int, 0),
            network_code=_optional(body, "networkCode", str, SAFARICOM_NETWORK_CODE),
            retry_count=_optional(body, "retryCount", int, 0),
        )
        self._state.set_delivery_plan(plan, number)
        return {"number": number, **plan_to_json(plan)}

    def _clear_delivery_plans(self, body: dict[str, Any]) -> dict[str, Any]:
        self._state.clear_delivery_plans(_optional(body, "number", str, None))
        return {"cleared": True}

    def _set_callback_url(self, body: dict[str, Any]) -> dict[str, Any]:
        if "url" not in body:
            raise ControlError("missing required field: url")
        url = _optional(body, "url", str, None)
        self._reporter.set_callback_url(url)
        logger.info("Callback URL set to %s", redact_url(url))
        return {"url": url}

    def _reset(self, _body: dict[str, Any]) -> dict[str, Any]:
        self._state.reset()
        self._reporter.clear_records()
        logger.info("Emulator state reset")
        return {"reset": True}
