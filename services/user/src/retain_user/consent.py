"""The consent ledger, consent checks, contacts and opt-outs by phone number.

consent_rules states who may receive a message. This module records the
changes that the rule reads, and it returns contacts only for customers who
pass the rule.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from retain.user.v1 import user_pb2
from retain_runtime.clock import Clock
from retain_runtime.errors import NotFound
from retain_runtime.logs import mask_phone
from retain_runtime.phone import normalise_phone
from retain_runtime.timestamps import to_datetime

from retain_user.consent_rules import ALL_CHANNELS
from retain_user.crypto import DataCipher
from retain_user.store import OptOutChange, UserStore

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Contact:
    """The details a sender needs to reach one customer, full phone number included."""

    customer_id: int
    phone_number: str
    language: int
    first_name: str
    vertical: int
    fictitious: bool


# The fields RecordOptOutRequest and RecordOptInRequest share.
OptChange = user_pb2.RecordOptOutRequest | user_pb2.RecordOptInRequest


class ConsentLedger:
    """Appends consent changes and checks who may be messaged."""

    def __init__(self, store: UserStore, cipher: DataCipher, clock: Clock) -> None:
        self._store = store
        self._cipher = cipher
        self._clock = clock

    async def record(
        self, inputs: Sequence[user_pb2.ConsentInput], recorded_by: str
    ) -> int:
        """Append one ledger row per input; returns the number of rows written."""
        now = self._clock.now()
        rows = [
            {
                "customer_id": item.customer_id,
                "channel": item.channel,
                "purpose": item.purpose,
                "granted": item.granted,
                "source": item.source,
                "notice_version": item.notice_version,
                "evidence": item.evidence,
                "recorded_by": recorded_by,
                "occur_time": self._occur_time(item, now),
                "record_time": now,
            }
            for item in inputs
        ]
        count = await self._store.append_consents(rows)
        log.info("Recorded %d consent changes for %s", count, recorded_by)
        return count

    async def events(
        self, customer_id: int, after: int, limit: int
    ) -> Sequence[sa.Row[Any]]:
        rows = await self._store.list_consent_events(customer_id, after, limit)
        if rows is None:
            raise NotFound(
                f"customer_id: customer {customer_id} does not exist; "
                "check the id or look it up by external id"
            )
        return rows

    async def check(
        self, customer_ids: Sequence[int], channel: int, purpose: int
    ) -> Sequence[Any]:
        """Return the customers who may be messaged, with their language and
        vertical, in request order."""
        return await self._store.permitted_customers(customer_ids, channel, purpose)

    async def contacts(
        self, customer_ids: Sequence[int], channel: int, purpose: int
    ) -> list[Contact]:
        """Return contacts of the customers who may be messaged, in request order."""
        rows = await self._store.permitted_contacts(customer_ids, channel, purpose)
        log.info(
            "Handing out %d of %d requested contacts", len(rows), len(customer_ids)
        )
        return [
            Contact(
                customer_id=row.customer_id,
                phone_number=self._cipher.decrypt(row.phone_encrypted),
                language=row.language,
                first_name=self._cipher.decrypt(row.first_name_encrypted),
                vertical=row.vertical,
                fictitious=row.fictitious,
            )
            for row in rows
        ]

    async def opt_out(
        self, request: OptChange, recorded_by: str
    ) -> tuple[list[int], bool]:
        """Opt a number out; returns the affected customers and whether it already was."""
        return await self._change(request, recorded_by, opted_out=True)

    async def opt_in(self, request: OptChange, recorded_by: str) -> list[int]:
        """Lift a number's opt-out and grant marketing consent to its customers."""
        customer_ids, _ = await self._change(request, recorded_by, opted_out=False)
        return customer_ids

    async def _change(
        self, request: OptChange, recorded_by: str, opted_out: bool
    ) -> tuple[list[int], bool]:
        phone = normalise_phone(request.phone_number)
        now = self._clock.now()
        channels = [request.channel] if request.channel else list(ALL_CHANNELS)
        change = OptOutChange(
            phone_hash=self._cipher.phone_hash(phone),
            channels=channels,
            opted_out=opted_out,
            source=request.source,
            evidence=request.evidence,
            occur_time=self._occur_time(request, now),
            recorded_by=recorded_by,
            record_time=now,
        )
        customer_ids, already = await self._store.change_opt_out(change)
        log.info(
            "Recorded opt-%s of %s on channels %s for customers %s%s",
            "out" if opted_out else "in",
            mask_phone(phone),
            channels,
            customer_ids,
            " (already opted out)" if opted_out and already else "",
        )
        return customer_ids, already

    @staticmethod
    def _occur_time(message: Any, now: dt.datetime) -> dt.datetime:
        if message.HasField("occur_time"):
            return to_datetime(message.occur_time)
        return now
