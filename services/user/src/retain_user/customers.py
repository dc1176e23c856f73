"""Customer profiles: upsert by external id, reads with masked phone numbers.

Phone numbers and first names are encrypted before they reach the store and
decrypted only here; profiles leave this module with masked numbers.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from retain.user.v1 import user_pb2
from retain_runtime.clock import Clock
from retain_runtime.errors import NotFound
from retain_runtime.logs import mask_phone
from retain_runtime.phone import normalise_phone

from retain_user.crypto import DataCipher
from retain_user.store import UserStore

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CustomerProfile:
    """A customer as callers outside this service see it."""

    customer_id: int
    external_id: str
    phone_number_masked: str
    language: int
    vertical: int
    first_name: str
    fictitious: bool
    create_time: dt.datetime
    update_time: dt.datetime
    attributes: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class UpsertResult:
    customer_ids: list[int]
    created_count: int


class CustomerDirectory:
    """Creates, updates and reads customer profiles."""

    def __init__(self, store: UserStore, cipher: DataCipher, clock: Clock) -> None:
        self._store = store
        self._cipher = cipher
        self._clock = clock

    async def upsert(self, inputs: Sequence[user_pb2.CustomerInput]) -> UpsertResult:
        """Create or update customers; returns their ids in request order."""
        now = self._clock.now()
        rows = [self._row(index, item, now) for index, item in enumerate(inputs)]
        stored = await self._store.upsert_customers(rows)
        ids = [stored[item.external_id][0] for item in inputs]
        created = sum(1 for _, was_created in stored.values() if was_created)
        log.info("Upserted %d customers, %d of them new", len(ids), created)
        return UpsertResult(customer_ids=ids, created_count=created)

    async def get(self, customer_id: int) -> CustomerProfile:
        row = await self._store.get_customer(customer_id)
        if row is None:
            raise NotFound(
                f"customer_id: customer {customer_id} does not exist; "
                "check the id or look it up by external id"
            )
        return self.profile(row)

    async def lookup(self, external_ids: Sequence[str]) -> dict[str, int]:
        return await self._store.lookup_customers(external_ids)

    async def by_phone_number(self, raw_phone: str) -> Sequence[sa.Row[Any]]:
        """Return id, language, vertical and fictitious of the customers who
        share a phone number, in customer id order."""
        phone = normalise_phone(raw_phone)
        rows = await self._store.customers_by_phone_hash(self._cipher.phone_hash(phone))
        log.info("Found %d customers with number %s", len(rows), mask_phone(phone))
        return rows

    async def page(self, after: int, limit: int, prefix: str) -> list[CustomerProfile]:
        rows = await self._store.list_customers(after, limit, prefix)
        return [self.profile(row) for row in rows]

    async def stats(self) -> tuple[int, int, int]:
        return await self._store.customer_stats()

    def profile(self, row: sa.Row[Any]) -> CustomerProfile:
        """Decrypt a customer row into a profile with a masked phone number."""
        return CustomerProfile(
            customer_id=row.customer_id,
            external_id=row.external_id,
            phone_number_masked=mask_phone(self._cipher.decrypt(row.phone_encrypted)),
            language=row.language,
            vertical=row.vertical,
            first_name=self._cipher.decrypt(row.first_name_encrypted),
            fictitious=row.fictitious,
            create_time=row.create_time,
            update_time=row.update_time,
            attributes=dict(row.attributes),
        )

    def _row(
        self, index: int, item: user_pb2.CustomerInput, now: dt.datetime
    ) -> dict[str, Any]:
        phone = normalise_phone(item.phone_number, f"customers[{index}].phone_number")
        return {
            "external_id": item.external_id,
            "phone_encrypted": self._cipher.encrypt(phone),
            "phone_hash": self._cipher.phone_hash(phone),
            "first_name_encrypted": self._cipher.encrypt(item.first_name),
            "personal_digest": self._cipher.personal_digest(phone, item.first_name),
            "language": item.language or user_pb2.LANGUAGE_EN,
            "vertical": item.vertical or user_pb2.VERTICAL_TRANSPORT,
            "attributes": dict(item.attributes),
            "fictitious": item.fictitious,
            "create_time": now,
            "update_time": now,
        }
