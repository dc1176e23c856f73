"""Account state of the emulator: balance, injected faults and the message log.

Every method takes the state lock, so request threads and the control API can use
one EmulatorState at once. A send is processed under a single lock hold, so the
balance debit of a multi-recipient send is atomic.
"""

from __future__ import annotations

import random
import re
import secrets
import threading
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, TypeVar

from retain_emulator.delivery import DeliveryPlan, utc_timestamp
from retain_emulator.wire import (
    SUCCESS_STATUS_CODES,
    count_segments,
    format_money,
    format_total_cost,
    is_valid_number,
    resolve_recipient_status,
    to_money,
)

# Request scopes that a fault applies to: the send endpoint, the user data endpoint,
# the voice call endpoint, or every AT API endpoint. The control API under /_emulator is never faulted.
FAULT_SCOPES = ("messaging", "user", "voice", "all")


@dataclass
class HttpFault:
    """Fail the next `remaining` requests in `scope` with HTTP `status`."""

    remaining: int
    status: int = 500
    scope: str = "messaging"

    def to_json(self) -> dict[str, Any]:
        return {"remaining": self.remaining, "status": self.status, "scope": self.scope}


@dataclass
class DelayFault:
    """Hold the next `remaining` requests in `scope` for `seconds` before responding."""

    remaining: int
    seconds: float
    scope: str = "messaging"

    def to_json(self) -> dict[str, Any]:
        return {
            "remaining": self.remaining,
            "seconds": self.seconds,
            "scope": self.scope,
        }


@dataclass
class HttpFaultRate:
    """Fail each request in `scope` with HTTP `status` with probability `rate`.

    `injected` counts the requests failed so far.
    """

    rate: float
    status: int = 500
    scope: str = "messaging"
    injected: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "rate": self.rate,
            "status": self.status,
            "scope": self.scope,
            "injected": self.injected,
        }


FaultT = TypeVar("FaultT", HttpFault, DelayFault)


@dataclass(frozen=True)
class SendRequest:
    """The parsed form fields of POST /version1/messaging."""

    recipients: list[str]
    message: str
    sender: str | None = None
    bulk_sms_mode: str | None = None
    enqueue: str | None = None


@dataclass
class AcceptedMessage:
    """A message that the emulator accepted for one recipient."""

    message_id: str
    number: str
    message: str
    sender: str | None
    time: str
    cost: str
    message_parts: int
    planned_delivery_status: str
    status: str = "Success"
    status_code: int = 101

    def to_json(self) -> dict[str, Any]:
        return {
            "messageId": self.message_id,
            "number": self.number,
            "message": self.message,
            "from": self.sender,
            "time": self.time,
            "status": self.status,
            "statusCode": self.status_code,
            "cost": self.cost,
            "messageParts": self.message_parts,
            "plannedDeliveryStatus": self.planned_delivery_status,
        }


@dataclass
class SendOutcome:
    """The reply body of a send and the messages to report delivery for."""

    reply: dict[str, Any]
    accepted: list[tuple[AcceptedMessage, DeliveryPlan]] = field(default_factory=list)


def validate_scope(scope: str) -> str:
    if scope not in FAULT_SCOPES:
        raise ValueError(f"invalid scope {scope!r}; expected one of {FAULT_SCOPES}")
    return scope


def new_message_id() -> str:
    return "ATXid_" + secrets.token_hex(16)


class EmulatorState:
    """Balance, faults, delivery plans and logs of one emulated AT account.

    The message logs grow without limit until reset(), which suits test runs.
    """

    def __init__(
        self,
        *,
        balance: Decimal,
        currency: str,
        cost_per_segment: Decimal,
        number_pattern: str,
        sender_ids: Iterable[str] | None,
        default_plan: DeliveryPlan,
    ) -> None:
        self._lock = threading.Lock()
        self._initial_balance = to_money(balance)
        self._balance = self._initial_balance
        self._currency = currency
        self._cost_per_segment = to_money(cost_per_segment)
        self._number_pattern = re.compile(number_pattern)
        self._sender_ids = None if sender_ids is None else frozenset(sender_ids)
        self._initial_default_plan = default_plan
        self._default_plan = default_plan
        self._plans: dict[str, DeliveryPlan] = {}
        self._recipient_failures: dict[str, tuple[str, int]] = {}
        self._http_faults: list[HttpFault] = []
        self._delay_faults: list[DelayFault] = []
        self._fault_rate: HttpFaultRate | None = None
        self._random = random.Random()
        self._accepted: list[AcceptedMessage] = []
        self._rejected: list[dict[str, Any]] = []
        self._receive_counts: Counter[str] = Counter()

    # Balance

    @property
    def currency(self) -> str:
        return self._currency

    def balance(self) -> Decimal:
        with self._lock:
            return self._balance

    def formatted_balance(self) -> str:
        return format_money(self._currency, self.balance())

    def set_balance(self, amount: Decimal | str | float) -> Decimal:
        value = to_money(amount)
        if value < 0:
            raise ValueError(f"balance must be 0 or more, got {amount!r}")
        with self._lock:
            self._balance = value
        return value

    # Faults

    def fail_recipient(self, number: str, status: str | int) -> tuple[str, int]:
        """Make every send to `number` fail with the given recipient status."""
        name, code = resolve_recipient_status(status)
        if code in SUCCESS_STATUS_CODES:
            raise ValueError(
                f"status {name} ({code}) is a success status, not a failure"
            )
        with self._lock:
            self._recipient_failures[number] = (name, code)
        return name, code

    def clear_recipient_failures(self, number: str | None = None) -> None:
        with self._lock:
            if number is None:
                self._recipient_failures.clear()
            else:
                self._recipient_failures.pop(number, None)

    def add_http_fault(self, fault: HttpFault) -> None:
        validate_scope(fault.scope)
        if fault.remaining < 1:
            raise ValueError(f"count must be 1 or more, got {fault.remaining}")
        _check_error_status(fault.status)
        with self._lock:
            self._http_faults.append(fault)

    def set_http_fault_rate(
        self, fault: HttpFaultRate | None, seed: int | None = None
    ) -> None:
        """Fail a random share of requests from now on; None or rate 0 stops it.

        `seed` makes the choice of failed requests repeatable.
        """
        if fault is not None:
            validate_scope(fault.scope)
            if not 0.0 <= fault.rate <= 1.0:
                raise ValueError(f"rate must be from 0 to 1, got {fault.rate}")
            _check_error_status(fault.status)
        with self._lock:
            self._fault_rate = fault if fault is not None and fault.rate else None
            self._random = random.Random(seed)

    def add_delay_fault(self, fault: DelayFault) -> None:
        validate_scope(fault.scope)
        if fault.remaining < 1:
            raise ValueError(f"count must be 1 or more, got {fault.remaining}")
        if not fault.seconds >= 0:
            raise ValueError(f"seconds must be 0 or more, got {fault.seconds}")
        with self._lock:
            self._delay_faults.append(fault)

    def take_delay(self, endpoint: str) -> float:
        """Consume one matching delay fault and return its seconds, or 0."""
        with self._lock:
            fault = _take_fault(self._delay_faults, endpoint)
        return 0.0 if fault is None else fault.seconds

    def take_http_fault(self, endpoint: str) -> int | None:
        """Consume one matching HTTP fault and return its status, or None.

        Counted faults come first, then the fault rate draws.
        """
        with self._lock:
            fault = _take_fault(self._http_faults, endpoint)
            if fault is not None:
                return fault.status
            rated = self._fault_rate
            if rated is None or rated.scope not in ("all", endpoint):
                return None
            if self._random.random() >= rated.rate:
                return None
            rated.injected += 1
            return rated.status

    # Delivery plans

    def set_delivery_plan(self, plan: DeliveryPlan, number: str | None = None) -> None:
        """Set the plan for one number, or the default plan when `number` is None."""
        with self._lock:
            if number is None:
                self._default_plan = plan
            else:
                self._plans[number] = plan

    def clear_delivery_plans(self, number: str | None = None) -> None:
        """Remove one number's plan, or every plan and the default when None."""
        with self._lock:
            if number is None:
                self._plans.clear()
                self._default_plan = self._initial_default_plan
            else:
                self._plans.pop(number, None)

    # Sending

    def send(self, request: SendRequest) -> SendOutcome:
        """Process one send request and return the AT reply body."""
        with self._lock:
            if not self._sender_allowed(request.sender):
                return SendOutcome(_reply("InvalidSenderId", []))

            parts = count_segments(request.message)
            cost = self._cost_per_segment * parts
            outcome = SendOutcome(reply={})
            recipients = [
                self._send_one(request, number, parts, cost, outcome)
                for number in request.recipients
            ]
            sent = len(outcome.accepted)
            total = cost * sent
            summary = (
                f"Sent to {sent}/{len(recipients)} Total Cost: "
                f"{format_total_cost(self._currency, total)}"
            )
            outcome.reply = _reply(summary, recipients)
            return outcome

    def _sender_allowed(self, sender: str | None) -> bool:
        if self._sender_ids is None or sender is None:
            return True
        return sender in self._sender_ids

    def _send_one(
        self,
        request: SendRequest,
        number: str,
        parts: int,
        cost: Decimal,
        outcome: SendOutcome,
    ) -> dict[str, Any]:
        """Process one recipient with the lock held and return its reply entry."""
        if not is_valid_number(number, self._number_pattern):
            return self._reject(request, number, "InvalidPhoneNumber", 403)
        failure = self._recipient_failures.get(number)
        if failure is not None:
            return self._reject(request, number, *failure)
        if self._balance < cost:
            return self._reject(request, number, "InsufficientBalance", 405)

        self._balance -= cost
        plan = self._plans.get(number, self._default_plan)
        message = AcceptedMessage(
            message_id=new_message_id(),
            number=number,
            message=request.message,
            sender=request.sender,
            time=utc_timestamp(),
            cost=format_money(self._currency, cost),
            message_parts=parts,
            planned_delivery_status=plan.final_status,
        )
        self._accepted.append(message)
        self._receive_counts[number] += 1
        outcome.accepted.append((message, plan))
        return {
            "statusCode": message.status_code,
            "number": number,
            "status": message.status,
            "cost": message.cost,
            "messageId": message.message_id,
            "messageParts": parts,
        }

    def _reject(
        self, request: SendRequest, number: str, status: str, code: int
    ) -> dict[str, Any]:
        self._rejected.append(
            {
                "number": number,
                "message": request.message,
                "from": request.sender,
                "time": utc_timestamp(),
                "status": status,
                "statusCode": code,
            }
        )
        return {
            "statusCode": code,
            "number": number,
            "status": status,
            "cost": "0",
            "messageId": "None",
        }

    # Read API

    def accepted_messages(self) -> list[dict[str, Any]]:
        with self._lock:
            return [message.to_json() for message in self._accepted]

    def rejected_messages(self) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(entry) for entry in self._rejected]

    def receive_counts(self) -> dict[str, int]:
        with self._lock:
            return dict(self._receive_counts)

    def snapshot(self) -> dict[str, Any]:
        """Return the balance and every active fault as JSON-ready data."""
        with self._lock:
            return {
                "balance": format_money(self._currency, self._balance),
                "recipientFailures": {
                    number: {"status": name, "statusCode": code}
                    for number, (name, code) in self._recipient_failures.items()
                },
                "httpFaults": [fault.to_json() for fault in self._http_faults],
                "delays": [fault.to_json() for fault in self._delay_faults],
                "httpFaultRate": (
                    None if self._fault_rate is None else self._fault_rate.to_json()
                ),
                "deliveryPlans": {
                    number: plan_to_json(plan) for number, plan in self._plans.items()
                },
                "defaultDeliveryPlan": plan_to_json(self._default_plan),
            }

    def reset(self) -> None:
        """Restore the initial balance and clear faults, plans and logs."""
        with self._lock:
            self._balance = self._initial_balance
            self._default_plan = self._initial_default_plan
            self._plans.clear()
            self._recipient_failures.clear()
            self._http_faults.clear()
            self._delay_faults.clear()
            self._fault_rate = None
            self._accepted.clear()
            self._rejected.clear()
            self._receive_counts.clear()


def plan_to_json(plan: DeliveryPlan) -> dict[str, Any]:
    return {
        "status": plan.final_status,
        "failureReason": plan.failure_reason,
        "intermediate": list(plan.intermediate_statuses),
        "duplicates": plan.duplicates,
        "networkCode": plan.network_code,
        "retryCount": plan.retry_count,
    }


def _check_error_status(status: int) -> None:
    if not 400 <= status <= 599:
        raise ValueError(f"status must be an HTTP error from 400 to 599, got {status}")


def _take_fault(faults: list[FaultT], endpoint: str) -> FaultT | None:
    """Decrement the first fault that matches the endpoint and drop it when spent."""
    for index, fault in enumerate(faults):
        if fault.scope in ("all", endpoint):
            fault.remaining -= 1
            if fault.remaining <= 0:
                del faults[index]
            return fault
    return None


def _reply(message: str, recipients: list[dict[str, Any]]) -> dict[str, Any]:
    return {"SMSMessageData": {"Message": message, "Recipients": recipients}}
