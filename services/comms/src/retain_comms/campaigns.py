"""The campaign life cycle: create, submit, approve, launch, pause, resume and
the global stop.

DRAFT -> AWAITING_APPROVAL -> APPROVED -> RUNNING <-> PAUSED -> FINISHED.
The sweeper finishes a RUNNING campaign once none of its messages waits.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging

import redis
from retain.comms.v1 import comms_pb2
from retain_runtime.callers import current_caller
from retain_runtime.clock import Clock
from retain_runtime.errors import FailedPrecondition, NotFound, PermissionDenied

from retain_comms.ledger import Ledger, StaleLaunch, StoppedLaunch
from retain_comms.queue import SendQueue
from retain_comms.selection import Selection, Selector
from retain_comms.states import CampaignStatus
from retain_comms.store import Row, Store

log = logging.getLogger(__name__)

DEFAULT_SEND_WINDOW = (420, 1140)
DEFAULT_FREQUENCY_CAP = (1, 7)
DEFAULT_MAX_SEGMENTS = 1
DEFAULT_MAX_AGE_HOURS = 48


def with_defaults(spec: comms_pb2.CampaignSpec) -> comms_pb2.CampaignSpec:
    """Return a copy of a validated spec with every default of the proto set."""
    filled = comms_pb2.CampaignSpec()
    filled.CopyFrom(spec)
    if not filled.HasField("send_window"):
        filled.send_window.start_minute, filled.send_window.end_minute = (
            DEFAULT_SEND_WINDOW
        )
    if not filled.HasField("frequency_cap"):
        filled.frequency_cap.max_messages, filled.frequency_cap.period_days = (
            DEFAULT_FREQUENCY_CAP
        )
    filled.max_segments = filled.max_segments or DEFAULT_MAX_SEGMENTS
    filled.max_age_hours = filled.max_age_hours or DEFAULT_MAX_AGE_HOURS
    return filled


def spec_of(row: Row) -> comms_pb2.CampaignSpec:
    return comms_pb2.CampaignSpec.FromString(row.spec)


def _actor() -> tuple[str, str]:
    """Return (name for audit columns, subject) of the current caller."""
    caller = current_caller.get()
    if caller is None:
        return "", ""
    return caller.subject or caller.name, caller.subject


class Campaigns:
    """Moves campaigns through their life cycle and launches them."""

    def __init__(
        self,
        store: Store,
        ledger: Ledger,
        selector: Selector,
        queue: SendQueue,
        clock: Clock,
    ) -> None:
        self.store = store
        self.ledger = ledger
        self.selector = selector
        self.queue = queue
        self.clock = clock

    async def create(self, spec: comms_pb2.CampaignSpec) -> Row:
        now = self.clock.now()
        name, subject = _actor()
        row = await self.store.create_campaign(
            {
                "name": spec.name,
                "spec": with_defaults(spec).SerializeToString(),
                "status": CampaignStatus.DRAFT,
                "created_by": name,
                "created_by_subject": subject,
                "create_time": now,
                "update_time": now,
            }
        )
        log.info("Created campaign %d by %s", row.campaign_id, name or "unknown")
        return row

    async def get(self, campaign_id: int) -> Row:
        row = await self.store.get_campaign(campaign_id)
        if row is None:
            raise NotFound(f"campaign {campaign_id} does not exist; check campaign_id")
        return row

    async def submit(self, campaign_id: int) -> Row:
        return await self._move(
            campaign_id, [CampaignStatus.DRAFT], CampaignStatus.AWAITING_APPROVAL
        )

    async def approve(self, campaign_id: int) -> Row:
        row = await self.get(campaign_id)
        name, subject = _actor()
        # The operator CLI has no subject, so the two-person rule binds only
        # when both admins are known.
        if subject and row.created_by_subject == subject:
            raise PermissionDenied(
                f"{subject} created campaign {campaign_id} and may not approve it; "
                "ask a second admin"
            )
        return await self._move(
            campaign_id,
            [CampaignStatus.AWAITING_APPROVAL],
            CampaignStatus.APPROVED,
            approved_by=name,
        )

    async def pause(self, campaign_id: int, reason: str) -> Row:
        name, _ = _actor()
        return await self._move(
            campaign_id,
            [CampaignStatus.RUNNING],
            CampaignStatus.PAUSED,
            status_reason=reason or f"paused by {name or 'unknown'}",
        )

    async def resume(self, campaign_id: int) -> Row:
        stopped, reason = await self.store.stop_state()
        if stopped:
            raise FailedPrecondition(
                f"every campaign is stopped ({reason}); call ResumeAllCampaigns first"
            )
        row = await self._move(
            campaign_id,
            [CampaignStatus.PAUSED],
            CampaignStatus.RUNNING,
            status_reason="",
        )
        await self._enqueue(await self.ledger.pending_ids(campaign_id))
        return row

    async def stop_all(self, reason: str) -> list[int]:
        name, _ = _actor()
        paused = await self.store.stop_all(
            reason or f"stopped by {name}", self.clock.now()
        )
        log.warning("Global stop by %s paused campaigns %s", name or "unknown", paused)
        return paused

    async def resume_all(self) -> None:
        await self.store.resume_all(self.clock.now())
        log.info("Global stop lifted; paused campaigns stay paused")

    async def dry_run(self, campaign_id: int) -> Selection:
        row = await self.get(campaign_id)
        return await self.selector.select(campaign_id, spec_of(row), self.clock.now())

    async def launch(self, campaign_id: int) -> Row:
        """Select recipients, write the ledger and enqueue the PENDING sends."""
        row = await self.get(campaign_id)
        if row.status != CampaignStatus.APPROVED:
            raise FailedPrecondition(
                f"campaign {campaign_id} is {row.status}; only an approved campaign "
                "can be launched"
            )
        spec = spec_of(row)
        now = self.clock.now()
        selection = await self.selector.select(campaign_id, spec, now)
        try:
            pending = await self.ledger.write_launch(
                campaign_id,
                _launch_values(selection, now),
                _assignment_rows(campaign_id, selection),
                _message_rows(campaign_id, spec, selection, now),
                now,
            )
        except StoppedLaunch:
            raise FailedPrecondition(
                "every campaign is stopped; call ResumeAllCampaigns before launching"
            ) from None
        except StaleLaunch:
            raise FailedPrecondition(
                f"campaign {campaign_id} was launched or changed meanwhile"
            ) from None
        log.info(
            "Launched campaign %d with %d pending messages", campaign_id, len(pending)
        )
        await self._enqueue(pending)
        return await self.get(campaign_id)

    async def _enqueue(self, message_ids: list[int]) -> None:
        try:
            await asyncio.to_thread(self.queue.enqueue, message_ids)
        except redis.RedisError:
            # The sweeper enqueues PENDING messages again once they are stale.
            log.exception(
                "Enqueueing %d sends failed; the sweeper retries them", len(message_ids)
            )

    async def _move(
        self,
        campaign_id: int,
        sources: list[CampaignStatus],
        target: CampaignStatus,
        **values: object,
    ) -> Row:
        row = await self.store.move_campaign(
            campaign_id, sources, target, self.clock.now(), **values
        )
        if row is not None:
            log.info("Campaign %d is now %s", campaign_id, target)
            return row
        current = await self.get(campaign_id)
        allowed = " or ".join(sources)
        raise FailedPrecondition(
            f"campaign {campaign_id} is {current.status}; it must be {allowed} "
            f"to become {target}"
        )


def _launch_values(selection: Selection, now: dt.datetime) -> dict[str, object]:
    counts = selection.counts()
    return {
        "launch_time": now,
        "launched_scoring_run_id": selection.scoring_run_id,
        "status_reason": "",
        **{
            name: getattr(counts, name)
            for name in (
                "at_risk_count",
                "no_consent_count",
                "capped_count",
                "eligible_count",
                "treated_count",
                "held_out_count",
                "suppressed_count",
            )
        },
    }


def _assignment_rows(campaign_id: int, selection: Selection) -> list[dict[str, object]]:
    arms: dict[int, tuple[str, str]] = {}
    arms.update((c, ("dropped", "no_consent")) for c in selection.no_consent)
    arms.update((c, ("dropped", "capped")) for c in selection.capped)
    arms.update((c, ("control", "")) for c in selection.control)
    arms.update((r.customer_id, ("treatment", "")) for r in selection.treated)
    return [
        {
            "campaign_id": campaign_id,
            "customer_id": customer_id,
            "arm": arm,
            "drop_reason": reason,
            "churn_probability": selection.probabilities[customer_id],
        }
        for customer_id, (arm, reason) in arms.items()
    ]


def _message_rows(
    campaign_id: int,
    spec: comms_pb2.CampaignSpec,
    selection: Selection,
    now: dt.datetime,
) -> list[dict[str, object]]:
    expire = now + dt.timedelta(hours=spec.max_age_hours)
    return [
        {
            "campaign_id": campaign_id,
            "customer_id": m.customer_id,
            "state": m.state,
            "channel": spec.channel,
            "purpose": spec.purpose,
            "language": m.language,
            "template": m.template,
            "encoding": m.encoding,
            "segments": m.segments,
            "estimated_cost_micros": m.estimated_cost_micros,
            "reason": m.reason,
            "not_before_time": m.not_before_time,
            "expire_time": expire,
            "create_time": now,
            "update_time": now,
        }
        for m in selection.messages
    ]
