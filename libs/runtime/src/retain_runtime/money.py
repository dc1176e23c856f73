"""Money as integer micros (millionths of the main unit) with a currency."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from retain.type.v1.money_pb2 import Money

from retain_runtime.errors import InvalidArgument

MICROS = 1_000_000
KES = "KES"


def kes(amount_micros: int) -> Money:
    """Return a Money of amount_micros millionths of KES."""
    return Money(currency_code=KES, amount_micros=amount_micros)


def to_micros(amount: Decimal | str | int, field: str = "amount") -> int:
    """Convert a decimal amount to micros exactly, rejecting finer amounts."""
    try:
        value = Decimal(str(amount)) * MICROS
    except InvalidOperation:
        raise InvalidArgument(field, f'"{amount}" is not a decimal amount') from None
    if not value.is_finite():
        raise InvalidArgument(field, f'"{amount}" is not a finite amount')
    if value != value.to_integral_value():
        raise InvalidArgument(field, f'"{amount}" has more than 6 decimal places')
    return int(value)


def parse_provider_cost(text: str) -> tuple[str, int]:
    """Parse an Africa's Talking cost such as "KES 0.8000" into currency and micros.

    Africa's Talking writes "0" for a recipient it did not charge.
    """
    parts = text.strip().split()
    if len(parts) == 1:
        return KES, to_micros(parts[0], "cost")
    if len(parts) != 2:
        raise InvalidArgument("cost", f'"{text}" is not of the form "KES 0.8000"')
    return parts[0], to_micros(parts[1], "cost")


def format_micros(amount_micros: int) -> str:
    """Format micros with four decimals, as Africa's Talking does."""
    return f"{Decimal(amount_micros) / MICROS:.4f}"
