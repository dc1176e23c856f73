"""`retain import` logic against a real user service and a real events service.

Both services run in this process on port 0, each on its own fresh database.
The importer calls them over mTLS with the "operator" certificate from a
worker thread, as the blocking CLI does.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from cryptography.fernet import Fernet
from retain.events.v1 import events_pb2, events_pb2_grpc
from retain.type.v1 import channel_pb2
from retain.user.v1 import user_pb2, user_pb2_grpc
from retain_cli.importer import (
    CsvFormatError,
    ImportReport,
    RowError,
    import_customers,
    import_events,
    split_batches,
)
from retain_cli.infra import Postgres
from retain_events import server as events_server
from retain_runtime.certs import CertPaths
from retain_runtime.clock import Clock
from retain_runtime.credentials import sync_channel
from retain_runtime.settings import ServiceSettings
from retain_runtime.timestamps import parse_iso
from retain_user import server as user_server
from retain_user.settings import UserSettings

CUSTOMERS_HEADER = (
    "external_id,phone_number,language,vertical,first_name,marketing_sms_consent"
)
EVENTS_HEADER = "event_id,external_id,type,occur_time,amount,currency"


@dataclass
class Clients:
    user: user_pb2_grpc.UserServiceStub
    events: events_pb2_grpc.EventsServiceStub


@pytest.fixture
async def events_port(database_url: str, cert_dir: Path) -> AsyncIterator[int]:
    await asyncio.to_thread(events_server.prepare_database, database_url)
    settings = ServiceSettings.from_env(
        "events",
        {
            "RETAIN_EVENTS_PORT": "0",
            "RETAIN_EVENTS_DATABASE_URL": database_url,
            "RETAIN_CERT_DIR": str(cert_dir),
        },
    )
    service = await events_server.start(settings, Clock())
    yield service.port
    await service.stop(0)


@pytest.fixture
async def user_port(postgres: Postgres, cert_dir: Path) -> AsyncIterator[int]:
    url = postgres.url(f"test_user_{uuid.uuid4().hex[:12]}")
    await asyncio.to_thread(user_server.prepare_database, url)
    settings = UserSettings.from_env(
        "user",
        {
            "RETAIN_USER_PORT": "0",
            "RETAIN_USER_DATABASE_URL": url,
            "RETAIN_CERT_DIR": str(cert_dir),
            "RETAIN_USER_DATA_KEY": Fernet.generate_key().decode(),
        },
    )
    service = await user_server.start(settings, Clock())
    yield service.port
    await service.stop(0)


@pytest.fixture
def clients(user_port: int, events_port: int, cert_dir: Path) -> Iterator[Clients]:
    paths = CertPaths.in_directory(cert_dir, "operator")
    user_channel = sync_channel(f"127.0.0.1:{user_port}", paths)
    events_channel = sync_channel(f"127.0.0.1:{events_port}", paths)
    yield Clients(
        user=user_pb2_grpc.UserServiceStub(user_channel),
        events=events_pb2_grpc.EventsServiceStub(events_channel),
    )
    user_channel.close()
    events_channel.close()


def write_csv(tmp_path: Path, name: str, header: str, *lines: str) -> Path:
    path = tmp_path / name
    path.write_text("\n".join([header, *lines]) + "\n", encoding="utf-8")
    return path


async def run_customers(clients: Clients, path: Path) -> ImportReport:
    return await asyncio.to_thread(import_customers, clients, path)


async def run_events(clients: Clients, path: Path) -> ImportReport:
    return await asyncio.to_thread(import_events, clients, path)


async def lookup(clients: Clients, *external_ids: str) -> dict[str, int]:
    request = user_pb2.LookupCustomersRequest(external_ids=external_ids)
    reply = await asyncio.to_thread(clients.user.LookupCustomers, request, timeout=10)
    return dict(reply.customer_ids)


async def sequences(clients: Clients) -> dict[int, events_pb2.CustomerSequence]:
    request = events_pb2.ListSequencesRequest()
    reply = await asyncio.to_thread(clients.events.ListSequences, request, timeout=10)
    return {s.customer_id: s for s in reply.sequences}


async def import_two_customers(clients: Clients, tmp_path: Path) -> dict[str, int]:
    path = write_csv(
        tmp_path,
        "customers.csv",
        CUSTOMERS_HEADER,
        "c1,0712345678,en,transport,Amina,yes",
        "c2,+254 722 000 111,sw,health,,no",
    )
    report = await run_customers(clients, path)
    assert report.errors == []
    return await lookup(clients, "c1", "c2")


async def test_customers_bad_rows_skipped_with_lines(
    clients: Clients, tmp_path: Path
) -> None:
    path = write_csv(
        tmp_path,
        "customers.csv",
        CUSTOMERS_HEADER,
        "c1,0712345678,en,transport,Amina,yes",
        "c2,0722 12,en,transport,,",
        "c3,0712000003,fr,transport,,",
        "",
        ",0712000004,,,,",
        "c5,0712000005,,,,maybe",
        "c1,0712000006,,,,",
        "c7,0112000007,SW,Health,Baraka,",
        "c8,0712000008,en",
    )

    report = await run_customers(clients, path)

    assert report.rows == 8
    assert report.accepted == 2
    assert report.duplicates == 0
    assert [(e.line, e.field) for e in report.errors] == [
        (3, "phone_number"),
        (4, "language"),
        (6, "external_id"),
        (7, "marketing_sms_consent"),
        (8, "external_id"),
        (10, "row"),
    ]
    assert "0722 12" in report.errors[0].reason
    assert report.errors[4].reason == 'repeats external id "c1" of line 2'
    assert set(await lookup(clients, "c1", "c2", "c3", "c7")) == {"c1", "c7"}


async def test_customers_reimport_adds_nothing(
    clients: Clients, tmp_path: Path
) -> None:
    customer_ids = await import_two_customers(clients, tmp_path)
    path = tmp_path / "customers.csv"

    again = await run_customers(clients, path)

    assert (again.rows, again.accepted, again.duplicates) == (2, 0, 2)
    request = user_pb2.ListConsentEventsRequest(customer_id=customer_ids["c1"])
    ledger = await asyncio.to_thread(clients.user.ListConsentEvents, request)
    assert len(ledger.consent_events) == 1
    assert ledger.consent_events[0].source == user_pb2.CONSENT_SOURCE_IMPORT
    assert ledger.consent_events[0].evidence == "customers.csv line 2"


async def test_consent_yes_grants_marketing_sms(
    clients: Clients, tmp_path: Path
) -> None:
    customer_ids = await import_two_customers(clients, tmp_path)

    request = user_pb2.CheckConsentsRequest(
        customer_ids=[customer_ids["c1"], customer_ids["c2"]],
        channel=channel_pb2.CHANNEL_SMS,
        purpose=channel_pb2.PURPOSE_MARKETING,
    )
    reply = await asyncio.to_thread(clients.user.CheckConsents, request)

    assert list(reply.granted_customer_ids) == [customer_ids["c1"]]


async def test_consent_change_recorded_on_reimport(
    clients: Clients, tmp_path: Path
) -> None:
    customer_ids = await import_two_customers(clients, tmp_path)
    path = write_csv(
        tmp_path, "update.csv", CUSTOMERS_HEADER, "c1,0712345678,en,transport,,no"
    )

    await run_customers(clients, path)

    request = user_pb2.CheckConsentsRequest(
        customer_ids=[customer_ids["c1"]],
        channel=channel_pb2.CHANNEL_SMS,
        purpose=channel_pb2.PURPOSE_MARKETING,
    )
    reply = await asyncio.to_thread(clients.user.CheckConsents, request)
    assert list(reply.granted_customer_ids) == []


async def test_events_bad_rows_skipped_with_lines(
    clients: Clients, tmp_path: Path
) -> None:
    customer_ids = await import_two_customers(clients, tmp_path)
    path = write_csv(
        tmp_path,
        "events.csv",
        EVENTS_HEADER,
        "e1,c1,trip,2024-05-01T08:00:00+03:00,150.50,",
        "e2,c1,trip,2024-05-01T08:00:00,10,KES",
        "e3,c2,teleport,2024-05-02T08:00:00Z,,",
        "e4,c2,purchase,2024-05-02T08:00:00Z,-5,",
        "e5,c2,purchase,2024-05-02T08:00:00Z,1.0000001,",
        "e6,c2,purchase,2024-05-02T08:00:00Z,12,KSHS",
        "e7,nobody,purchase,2024-05-02T08:00:00Z,,",
        ",c2,purchase,2024-05-02T08:00:00Z,,",
        "e9,c2,app_open,2024-05-03T06:00:00Z,,",
        "e10,c2,payment,yesterday,5,",
        "e11,c2,payment,2024-05-04T06:00:00Z,Infinity,",
    )

    report = await run_events(clients, path)

    assert report.rows == 11
    assert report.accepted == 2
    assert report.duplicates == 0
    assert [(e.line, e.field) for e in report.errors] == [
        (3, "occur_time"),
        (4, "type"),
        (5, "amount"),
        (6, "amount"),
        (7, "currency"),
        (8, "external_id"),
        (9, "event_id"),
        (11, "occur_time"),
        (12, "amount"),
    ]
    assert report.errors[0] == RowError(
        3,
        "occur_time",
        '"2024-05-01T08:00:00" has no UTC offset; add one, for example +03:00 or Z',
    )
    stored = await sequences(clients)
    assert list(stored[customer_ids["c1"]].amounts_micros) == [150_500_000]
    assert list(stored[customer_ids["c2"]].event_types) == [
        events_pb2.EVENT_TYPE_APP_OPEN
    ]


async def test_events_reimport_adds_nothing(clients: Clients, tmp_path: Path) -> None:
    await import_two_customers(clients, tmp_path)
    path = write_csv(
        tmp_path,
        "events.csv",
        EVENTS_HEADER,
        *(
            f"e{n},c{1 + n % 2},trip,2024-05-0{1 + n % 9}T08:00:00+03:00,,"
            for n in range(40)
        ),
    )

    first = await run_events(clients, path)
    second = await run_events(clients, path)

    assert (first.accepted, first.duplicates) == (40, 0)
    assert (second.accepted, second.duplicates) == (0, 40)
    stored = await sequences(clients)
    assert sum(len(s.event_types) for s in stored.values()) == 40


async def test_events_offset_forms_are_one_instant(
    clients: Clients, tmp_path: Path
) -> None:
    customer_ids = await import_two_customers(clients, tmp_path)
    path = write_csv(
        tmp_path,
        "events.csv",
        EVENTS_HEADER,
        "n,c1,trip,2024-05-01T11:00:00+03:00,,",
        "z,c1,trip,2024-05-01T08:00:00Z,,",
    )

    await run_events(clients, path)

    stored = await sequences(clients)
    instant = int(parse_iso("2024-05-01T08:00:00Z", "t").timestamp())
    assert list(stored[customer_ids["c1"]].occur_unix_seconds) == [instant, instant]


async def test_events_beyond_one_batch_stored(clients: Clients, tmp_path: Path) -> None:
    await import_two_customers(clients, tmp_path)
    path = write_csv(
        tmp_path,
        "events.csv",
        EVENTS_HEADER,
        *(
            f"big{n},c{1 + n % 2},purchase,2024-06-01T08:00:00Z,1.25,KES"
            for n in range(5003)
        ),
    )

    report = await run_events(clients, path)

    assert (report.rows, report.accepted, report.errors) == (5003, 5003, [])


def test_batches_split_by_count_and_by_size() -> None:
    events = [events_pb2.Event(event_id=f"e{n:03}", customer_id=1) for n in range(10)]

    by_count = [len(b) for b in split_batches(events, max_events=4)]
    by_size = [len(b) for b in split_batches(events, max_bytes=35)]

    assert by_count == [4, 4, 2]
    # Each event encodes to 8 bytes plus 6 counted for framing: two fit in 35.
    assert by_size == [2, 2, 2, 2, 2]


@pytest.mark.parametrize(
    ("header", "message"),
    [
        ("event_id,external_id,type,amount", "lacks the column(s) occur_time"),
        (EVENTS_HEADER + ",colour", "has the unknown column(s) colour"),
        (EVENTS_HEADER + ",amount", "repeats the column(s) amount"),
    ],
    ids=["missing column", "unknown column", "repeated column"],
)
def test_bad_header_rejects_file(tmp_path: Path, header: str, message: str) -> None:
    path = write_csv(tmp_path, "events.csv", header)

    with pytest.raises(CsvFormatError) as caught:
        import_events(Clients(user=None, events=None), path)  # type: ignore[arg-type]

    assert message in str(caught.value)


async def test_import_without_services_fails(tmp_path: Path, cert_dir: Path) -> None:
    paths = CertPaths.in_directory(cert_dir, "operator")
    channel = sync_channel("127.0.0.1:1", paths)
    dead = Clients(
        user=user_pb2_grpc.UserServiceStub(channel),
        events=events_pb2_grpc.EventsServiceStub(channel),
    )
    path = write_csv(tmp_path, "c.csv", CUSTOMERS_HEADER, "c1,0712345678,,,,")

    with pytest.raises(grpc.RpcError) as caught:
        await run_customers(dead, path)

    assert caught.value.code() is grpc.StatusCode.UNAVAILABLE  # type: ignore[attr-defined]
    channel.close()
