"""Import a startup's own customers and events from CSV files (`retain import`).

Customers CSV columns: ``external_id,phone_number,language,vertical,first_name,
marketing_sms_consent``. Events CSV columns: ``event_id,external_id,type,
occur_time,amount,currency``. Only external_id and phone_number, or event_id,
external_id, type and occur_time, must be present; the other columns may be
left out or empty.

Rows are checked here with the rules the services apply. A bad row is
skipped and reported with its line number (the header is line 1), its field
and the reason. Good rows are sent in batches over gRPC. Event ids are
idempotency keys and customers are upserted by external id, so importing the
same files twice adds nothing.
"""

from __future__ import annotations

import csv
import logging
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Protocol, TypeVar

from retain.events.v1 import events_pb2, events_pb2_grpc
from retain.type.v1 import channel_pb2
from retain.user.v1 import user_pb2, user_pb2_grpc
from retain_runtime.credentials import MAX_MESSAGE_BYTES
from retain_runtime.errors import InvalidArgument
from retain_runtime.money import KES, to_micros
from retain_runtime.phone import normalise_phone
from retain_runtime.timestamps import from_datetime, parse_iso

log = logging.getLogger(__name__)

CUSTOMER_COLUMNS = (
    "external_id",
    "phone_number",
    "language",
    "vertical",
    "first_name",
    "marketing_sms_consent",
)
EVENT_COLUMNS = ("event_id", "external_id", "type", "occur_time", "amount", "currency")

# Limits of UserService (UpsertCustomers, LookupCustomers, RecordConsents,
# CheckConsents) and EventsService (IngestEvents), per request.
USER_BATCH = 1000
CHECK_BATCH = 10_000
MAX_EVENTS_PER_BATCH = 5000
# Half the gRPC message limit, which leaves room for framing.
MAX_BATCH_BYTES = MAX_MESSAGE_BYTES // 2
MAX_EXTERNAL_ID_CHARS = 128
MAX_EVENT_ID_CHARS = 128
MAX_FIRST_NAME_CHARS = 64
MAX_MICROS = 2**63 - 1
RPC_TIMEOUT_SECONDS = 60.0

LANGUAGES = {"en": user_pb2.LANGUAGE_EN, "sw": user_pb2.LANGUAGE_SW}
VERTICALS = {
    "transport": user_pb2.VERTICAL_TRANSPORT,
    "health": user_pb2.VERTICAL_HEALTH,
}
CONSENTS = {"yes": True, "no": False}
EVENT_TYPES = {
    "purchase": events_pb2.EVENT_TYPE_PURCHASE,
    "trip": events_pb2.EVENT_TYPE_TRIP,
    "payment": events_pb2.EVENT_TYPE_PAYMENT,
    "booking": events_pb2.EVENT_TYPE_BOOKING,
    "app_open": events_pb2.EVENT_TYPE_APP_OPEN,
    "appointment": events_pb2.EVENT_TYPE_APPOINTMENT,
    "prescription_refill": events_pb2.EVENT_TYPE_PRESCRIPTION_REFILL,
}
_CURRENCY_CODE = re.compile(r"[A-Z]{3}")

T = TypeVar("T")


class CsvFormatError(ValueError):
    """Raised when a CSV file cannot be imported at all, such as a missing column."""


class ImportClients(Protocol):
    """The stubs an import calls, opened with the "operator" certificate."""

    user: user_pb2_grpc.UserServiceStub
    events: events_pb2_grpc.EventsServiceStub


@dataclass(frozen=True)
class RowError:
    """A skipped row: its line number (header = 1), the field and the reason."""

    line: int
    field: str
    reason: str


@dataclass
class ImportReport:
    """Counts and rejected rows of one file's import.

    For customers, accepted counts customers created and duplicates counts
    rows whose external id existed (their profile is updated). For events,
    accepted counts events stored and duplicates counts ids stored before.
    """

    rows: int = 0
    accepted: int = 0
    duplicates: int = 0
    errors: list[RowError] = field(default_factory=list)


@dataclass(frozen=True)
class _Row:
    line: int
    values: dict[str, str]


def _read_csv(
    path: Path, columns: Sequence[str], required: Sequence[str], report: ImportReport
) -> list[_Row]:
    """Return the non-blank data rows; rows with a wrong field count become errors."""
    with path.open(newline="", encoding="utf-8-sig") as file:
        reader = csv.reader(file)
        header = [name.strip() for name in next(reader, [])]
        _check_header(path, header, columns, required)
        rows = []
        try:
            for values in reader:
                if not any(value.strip() for value in values):
                    continue
                report.rows += 1
                if len(values) != len(header):
                    reason = f"has {len(values)} fields; the header has {len(header)}"
                    report.errors.append(RowError(reader.line_num, "row", reason))
                    continue
                named = dict.fromkeys(columns, "") | dict(
                    zip(header, values, strict=True)
                )
                rows.append(_Row(reader.line_num, named))
        except csv.Error as error:
            raise CsvFormatError(f"{path}: line {reader.line_num}: {error}") from None
    return rows


def _check_header(
    path: Path, header: list[str], columns: Sequence[str], required: Sequence[str]
) -> None:
    missing = [name for name in required if name not in header]
    if missing:
        raise CsvFormatError(
            f"{path}: line 1 lacks the column(s) {', '.join(missing)}; "
            f"expected {','.join(columns)}"
        )
    unknown = [name for name in header if name not in columns]
    if unknown:
        raise CsvFormatError(
            f"{path}: line 1 has the unknown column(s) {', '.join(unknown)}; "
            f"expected {','.join(columns)}"
        )
    repeated = sorted({name for name in header if header.count(name) > 1})
    if repeated:
        raise CsvFormatError(
            f"{path}: line 1 repeats the column(s) {', '.join(repeated)}; "
            "name each column once"
        )


def _chunks(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _reason(error: InvalidArgument) -> str:
    return str(error).removeprefix(f"{error.field}: ")


def _choice(values: dict[str, str], name: str, choices: dict[str, T]) -> T | None:
    """Return the choice named in a column, None when the column is empty."""
    raw = values[name].strip()
    if not raw:
        return None
    if raw.lower() not in choices:
        raise InvalidArgument(name, f'"{raw}" is not one of {", ".join(choices)}')
    return choices[raw.lower()]


def _text(values: dict[str, str], name: str, maximum: int, required: bool) -> str:
    text = values[name].strip()
    if required and not text:
        raise InvalidArgument(name, "is empty")
    if len(text) > maximum:
        raise InvalidArgument(
            name, f"has {len(text)} characters; shorten it to at most {maximum}"
        )
    return text


# Customers.


@dataclass(frozen=True)
class _CustomerRow:
    line: int
    customer: user_pb2.CustomerInput
    consent: bool | None


def _parse_customer(row: _Row) -> _CustomerRow:
    """Check one customers row; raise InvalidArgument naming the bad field."""
    values = row.values
    customer = user_pb2.CustomerInput(
        external_id=_text(values, "external_id", MAX_EXTERNAL_ID_CHARS, True),
        phone_number=normalise_phone(values["phone_number"].strip(), "phone_number"),
        language=_choice(values, "language", LANGUAGES) or 0,
        vertical=_choice(values, "vertical", VERTICALS) or 0,
        first_name=_text(values, "first_name", MAX_FIRST_NAME_CHARS, False),
    )
    consent = _choice(values, "marketing_sms_consent", CONSENTS)
    return _CustomerRow(row.line, customer, consent)


def _valid_customers(rows: list[_Row], report: ImportReport) -> list[_CustomerRow]:
    """Return the good rows; bad rows and repeated external ids become errors."""
    good: list[_CustomerRow] = []
    first_line: dict[str, int] = {}
    for row in rows:
        try:
            parsed = _parse_customer(row)
        except InvalidArgument as error:
            report.errors.append(RowError(row.line, error.field, _reason(error)))
            continue
        external_id = parsed.customer.external_id
        if external_id in first_line:
            reason = (
                f'repeats external id "{external_id}" of line {first_line[external_id]}'
            )
            report.errors.append(RowError(row.line, "external_id", reason))
            continue
        first_line[external_id] = row.line
        good.append(parsed)
    return good


def import_customers(clients: ImportClients, path: Path) -> ImportReport:
    """Upsert the good rows of a customers CSV and record their SMS marketing consent."""
    report = ImportReport()
    customers = _valid_customers(
        _read_csv(path, CUSTOMER_COLUMNS, CUSTOMER_COLUMNS[:2], report), report
    )
    changes: list[tuple[int, _CustomerRow]] = []
    for batch in _chunks(customers, USER_BATCH):
        request = user_pb2.UpsertCustomersRequest(customers=[c.customer for c in batch])
        reply = clients.user.UpsertCustomers(request, timeout=RPC_TIMEOUT_SECONDS)
        report.accepted += reply.created_count
        report.duplicates += len(batch) - reply.created_count
        changes.extend(zip(reply.customer_ids, batch, strict=True))
    consents = [(cid, row) for cid, row in changes if row.consent is not None]
    recorded = _record_consents(clients.user, consents, path.name)
    report.errors.sort(key=lambda error: error.line)
    log.info(
        "Imported %s: %d rows, %d created, %d updated, %d rejected, %d consents recorded",
        path,
        report.rows,
        report.accepted,
        report.duplicates,
        len(report.errors),
        recorded,
    )
    return report


def _record_consents(
    user: user_pb2_grpc.UserServiceStub,
    consents: list[tuple[int, _CustomerRow]],
    file_name: str,
) -> int:
    """Record a grant or withdrawal where the file differs from the current state."""
    # Recording only changes keeps a second import of the same file from
    # appending the same grants to the ledger again.
    # NOTE: CheckConsents also reports opted-out numbers as not granted, so a
    # "yes" row of an opted-out customer records a grant on every import.
    granted: set[int] = set()
    for batch in _chunks([customer_id for customer_id, _ in consents], CHECK_BATCH):
        request = user_pb2.CheckConsentsRequest(
            customer_ids=batch,
            channel=channel_pb2.CHANNEL_SMS,
            purpose=channel_pb2.PURPOSE_MARKETING,
        )
        reply = user.CheckConsents(request, timeout=RPC_TIMEOUT_SECONDS)
        granted.update(reply.granted_customer_ids)
    inputs = [
        user_pb2.ConsentInput(
            customer_id=customer_id,
            channel=channel_pb2.CHANNEL_SMS,
            purpose=channel_pb2.PURPOSE_MARKETING,
            granted=bool(row.consent),
            source=user_pb2.CONSENT_SOURCE_IMPORT,
            evidence=f"{file_name} line {row.line}",
        )
        for customer_id, row in consents
        if row.consent != (customer_id in granted)
    ]
    for batch in _chunks(inputs, USER_BATCH):
        request = user_pb2.RecordConsentsRequest(consents=batch)
        user.RecordConsents(request, timeout=RPC_TIMEOUT_SECONDS)
    return len(inputs)


# Events.


@dataclass(frozen=True)
class _EventRow:
    line: int
    external_id: str
    event: events_pb2.Event


def _parse_amount(values: dict[str, str], event: events_pb2.Event) -> None:
    raw = values["amount"].strip()
    if not raw:
        return
    try:
        finite = Decimal(raw).is_finite()
    except InvalidOperation:
        finite = False
    if not finite:
        raise InvalidArgument("amount", f'"{raw}" is not a decimal amount like 150.50')
    micros = to_micros(raw, "amount")
    if micros < 0:
        raise InvalidArgument("amount", f'"{raw}" is negative; amounts start at 0')
    if micros > MAX_MICROS:
        raise InvalidArgument("amount", f'"{raw}" is too large for 64-bit micros')
    currency = values["currency"].strip().upper() or KES
    if not _CURRENCY_CODE.fullmatch(currency):
        raise InvalidArgument(
            "currency", f'"{values["currency"]}" is not a 3-letter code like KES'
        )
    event.amount.currency_code = currency
    event.amount.amount_micros = micros


def _parse_event(row: _Row) -> _EventRow:
    """Check one events row; raise InvalidArgument naming the bad field."""
    values = row.values
    event_id = _text(values, "event_id", MAX_EVENT_ID_CHARS, True)
    external_id = _text(values, "external_id", MAX_EXTERNAL_ID_CHARS, True)
    event_type = _choice(values, "type", EVENT_TYPES)
    if event_type is None:
        raise InvalidArgument("type", f"is empty; use one of {', '.join(EVENT_TYPES)}")
    raw_time = values["occur_time"].strip()
    if not raw_time:
        raise InvalidArgument(
            "occur_time", "is empty; use a time like 2024-01-31T08:00:00+03:00"
        )
    event = events_pb2.Event(
        event_id=event_id,
        type=event_type,
        occur_time=from_datetime(parse_iso(raw_time, "occur_time")),
    )
    _parse_amount(values, event)
    return _EventRow(row.line, external_id, event)


def _lookup(
    user: user_pb2_grpc.UserServiceStub, external_ids: list[str]
) -> dict[str, int]:
    customer_ids: dict[str, int] = {}
    for batch in _chunks(external_ids, USER_BATCH):
        request = user_pb2.LookupCustomersRequest(external_ids=batch)
        reply = user.LookupCustomers(request, timeout=RPC_TIMEOUT_SECONDS)
        customer_ids.update(reply.customer_ids)
    return customer_ids


def _known_events(
    user: user_pb2_grpc.UserServiceStub, rows: list[_EventRow], report: ImportReport
) -> list[events_pb2.Event]:
    """Set each event's customer id; rows of unknown external ids become errors."""
    customer_ids = _lookup(user, sorted({row.external_id for row in rows}))
    events = []
    for row in rows:
        customer_id = customer_ids.get(row.external_id)
        if customer_id is None:
            reason = f'no customer has external id "{row.external_id}"; import it first'
            report.errors.append(RowError(row.line, "external_id", reason))
            continue
        row.event.customer_id = customer_id
        events.append(row.event)
    return events


def split_batches(
    events: Sequence[events_pb2.Event],
    max_events: int = MAX_EVENTS_PER_BATCH,
    max_bytes: int = MAX_BATCH_BYTES,
) -> Iterator[list[events_pb2.Event]]:
    """Yield consecutive batches of at most max_events and about max_bytes encoded."""
    batch: list[events_pb2.Event] = []
    size = 0
    for event in events:
        # Each repeated element adds a tag and a length prefix of a few bytes.
        event_size = event.ByteSize() + 6
        if batch and (len(batch) == max_events or size + event_size > max_bytes):
            yield batch
            batch, size = [], 0
        batch.append(event)
        size += event_size
    if batch:
        yield batch


def import_events(clients: ImportClients, path: Path) -> ImportReport:
    """Ingest the good rows of an events CSV for customers imported before."""
    report = ImportReport()
    rows = []
    for row in _read_csv(path, EVENT_COLUMNS, EVENT_COLUMNS[:4], report):
        try:
            rows.append(_parse_event(row))
        except InvalidArgument as error:
            report.errors.append(RowError(row.line, error.field, _reason(error)))
    events = _known_events(clients.user, rows, report)
    for batch in split_batches(events):
        request = events_pb2.IngestEventsRequest(events=batch)
        reply = clients.events.IngestEvents(request, timeout=RPC_TIMEOUT_SECONDS)
        report.accepted += reply.accepted_count
        report.duplicates += reply.duplicate_count
    report.errors.sort(key=lambda error: error.line)
    log.info(
        "Imported %s: %d rows, %d events stored, %d seen before, %d rejected",
        path,
        report.rows,
        report.accepted,
        report.duplicates,
        len(report.errors),
    )
    return report
