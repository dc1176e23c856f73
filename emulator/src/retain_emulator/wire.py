"""Africa's Talking SMS wire format: status codes, number checks, segments and money.

Sources for the values below: the AT delivery-report docs
(docs.africastalking.com/sms/deliveryreports), the official africastalking-python
SDK, and send replies recorded from the live API in public repositories.
"""

from __future__ import annotations

import math
import re
from decimal import ROUND_HALF_UP, Decimal

# Per-recipient status codes in the send reply, keyed by the `status` text.
RECIPIENT_STATUS_CODES: dict[str, int] = {
    "Processed": 100,
    "Success": 101,
    "Queued": 102,
    "RiskHold": 401,
    "InvalidSenderId": 402,
    "InvalidPhoneNumber": 403,
    "UnsupportedNumberType": 404,
    "InsufficientBalance": 405,
    "UserInBlacklist": 406,
    "CouldNotRoute": 407,
    "DoNotDisturbRejection": 409,
    "InternalServerError": 500,
    "GatewayError": 501,
    "RejectedByGateway": 502,
}

# AT documents code 101 as "Sent", but the live API returns the text "Success" with
# it, so the table above keys 101 by "Success". "Sent" is accepted as an alias.
RECIPIENT_STATUS_ALIASES: dict[str, str] = {"Sent": "Success"}

SUCCESS_STATUS_CODES = frozenset({100, 101, 102})

DELIVERY_STATUSES = frozenset(
    {
        "Sent",
        "Submitted",
        "Buffered",
        "Rejected",
        "Success",
        "Failed",
        "AbsentSubscriber",
        "Expired",
    }
)

# AT sends a failureReason only with these delivery statuses.
STATUSES_WITH_FAILURE_REASON = frozenset({"Rejected", "Failed"})

DEFAULT_FAILURE_REASON = "DeliveryFailure"

# Kenyan mobile numbers in E.164 form: +254, then 7 or 1, then 8 more digits.
KENYA_MOBILE_PATTERN = r"^\+254[17]\d{8}$"

# GSM 03.38 default alphabet. Extension characters take two septets each.
GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENSION = frozenset("^{}\\[~]|€\f")

GSM7_SINGLE_LIMIT = 160
GSM7_PART_LIMIT = 153
UCS2_SINGLE_LIMIT = 70
UCS2_PART_LIMIT = 67

MONEY_QUANTUM = Decimal("0.0001")


def resolve_recipient_status(status: str | int) -> tuple[str, int]:
    """Return the (status text, status code) pair for a status name or code.

    Raises ValueError for a status that AT does not define.
    """
    if isinstance(status, int) and not isinstance(status, bool):
        for name, code in RECIPIENT_STATUS_CODES.items():
            if code == status:
                return name, code
        raise ValueError(f"unknown recipient status code: {status}")

    name = RECIPIENT_STATUS_ALIASES.get(status, status)
    if name not in RECIPIENT_STATUS_CODES:
        known = ", ".join(sorted(RECIPIENT_STATUS_CODES))
        raise ValueError(
            f"unknown recipient status {status!r}; expected one of {known}"
        )
    return name, RECIPIENT_STATUS_CODES[name]


def validate_delivery_status(status: str) -> str:
    """Return the status unchanged, or raise ValueError if AT does not define it."""
    if status not in DELIVERY_STATUSES:
        known = ", ".join(sorted(DELIVERY_STATUSES))
        raise ValueError(f"unknown delivery status {status!r}; expected one of {known}")
    return status


def split_recipients(to_field: str) -> list[str]:
    """Split the comma-separated `to` field into numbers, dropping blank entries."""
    return [part.strip() for part in to_field.split(",") if part.strip()]


def is_valid_number(number: str, pattern: re.Pattern[str]) -> bool:
    return pattern.fullmatch(number) is not None


def is_gsm7(text: str) -> bool:
    return all(char in GSM7_BASIC or char in GSM7_EXTENSION for char in text)


def count_segments(text: str) -> int:
    """Return the number of SMS parts that the text is billed as.

    GSM-7 text fits 160 septets in one part and 153 per part when split. Any other
    text is sent as UCS-2: 70 UTF-16 code units in one part, 67 per part when split.
    """
    if is_gsm7(text):
        units = sum(2 if char in GSM7_EXTENSION else 1 for char in text)
        single_limit, part_limit = GSM7_SINGLE_LIMIT, GSM7_PART_LIMIT
    else:
        units = len(text.encode("utf-16-le")) // 2
        single_limit, part_limit = UCS2_SINGLE_LIMIT, UCS2_PART_LIMIT

    if units <= single_limit:
        return 1
    # NOTE: real encoders never split a two-septet extension character or a
    # surrogate pair across parts, so a few texts near a boundary need one part
    # more than this count.
    return math.ceil(units / part_limit)


def to_money(value: Decimal | str | float) -> Decimal:
    """Convert an amount to a Decimal with AT's four decimal places."""
    amount = Decimal(str(value))
    if not amount.is_finite():
        raise ValueError(f"invalid amount: {value!r}")
    return amount.quantize(MONEY_QUANTUM, rounding=ROUND_HALF_UP)


def format_money(currency: str, amount: Decimal) -> str:
    """Format an amount the way AT does, for example "KES 0.8000"."""
    return f"{currency} {to_money(amount):.4f}"


def format_total_cost(currency: str, total: Decimal) -> str:
    """Format the total in the send summary. AT writes a bare "0" when nothing was sent."""
    if total == 0:
        return "0"
    return format_money(currency, total)


def mask_number(number: str) -> str:
    """Mask a phone number for logs, keeping the first five and last two characters.

    "+254712345601" becomes "+2547******01". Numbers of under nine characters are
    masked completely.
    """
    if len(number) < 9:
        return "*" * len(number)
    return number[:5] + "*" * (len(number) - 7) + number[-2:]
