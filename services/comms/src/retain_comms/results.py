"""Campaign results: the retention of treated against control customers.

A customer counts as retained when they have at least one event in the window
[start, end). Groups are by intention to treat: the treated group includes
customers whose message was suppressed or failed. The uplift's 95% interval
uses the normal approximation to the difference of two proportions. The
minimum detectable effect is for a two-sided test at 5% significance with
80% power, at the pooled retention rate.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist

from retain.comms.v1 import comms_pb2
from retain.events.v1 import events_pb2
from retain_runtime.money import kes
from retain_runtime.timestamps import from_datetime

from retain_comms.ledger import Ledger
from retain_comms.peers import Peers
from retain_comms.selection import call_peer
from retain_comms.store import Store

# Customer ids per GetCustomerActivity request, the most events takes.
ACTIVITY_BATCH = 10_000

Z_95 = NormalDist().inv_cdf(0.975)
Z_POWER_80 = NormalDist().inv_cdf(0.80)


@dataclass(frozen=True)
class Activity:
    event_count: int
    amount_micros: int


@dataclass(frozen=True)
class Comparison:
    treated_count: int
    control_count: int
    retention_treated: float
    retention_control: float
    uplift: float
    ci_low: float
    ci_high: float
    minimum_detectable_effect: float
    treated_mean_spend_micros: float


def compare(treated: Sequence[Activity], control: Sequence[Activity]) -> Comparison:
    """Compare retention of two groups; empty groups give zeros."""
    nt, nc = len(treated), len(control)
    if nt == 0 or nc == 0:
        return Comparison(nt, nc, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)
    pt = sum(1 for a in treated if a.event_count > 0) / nt
    pc = sum(1 for a in control if a.event_count > 0) / nc
    uplift = pt - pc
    half_width = Z_95 * math.sqrt(pt * (1 - pt) / nt + pc * (1 - pc) / nc)
    pooled = (pt * nt + pc * nc) / (nt + nc)
    mde = (Z_95 + Z_POWER_80) * math.sqrt(pooled * (1 - pooled) * (1 / nt + 1 / nc))
    mean_spend = sum(a.amount_micros for a in treated) / nt
    return Comparison(
        nt,
        nc,
        pt,
        pc,
        uplift,
        uplift - half_width,
        uplift + half_width,
        mde,
        mean_spend,
    )


class Results:
    """Reads activity from events and prices a campaign's uplift."""

    def __init__(self, store: Store, ledger: Ledger, peers: Peers) -> None:
        self.store = store
        self.ledger = ledger
        self.peers = peers

    async def campaign_results(
        self, campaign_id: int, start: dt.datetime, end: dt.datetime
    ) -> comms_pb2.GetCampaignResultsResponse:
        members = await self.ledger.arm_members(campaign_id)
        activity = await self._activity(
            members["treatment"] + members["control"], start, end
        )
        comparison = compare(
            [activity[c] for c in members["treatment"]],
            [activity[c] for c in members["control"]],
        )
        spend, _ = (await self.store.money_of([campaign_id]))[campaign_id]
        revenue = round(
            comparison.uplift
            * comparison.treated_count
            * comparison.treated_mean_spend_micros
        )
        return comms_pb2.GetCampaignResultsResponse(
            treated_count=comparison.treated_count,
            control_count=comparison.control_count,
            retention_treated=comparison.retention_treated,
            retention_control=comparison.retention_control,
            uplift=comparison.uplift,
            uplift_ci_low=comparison.ci_low,
            uplift_ci_high=comparison.ci_high,
            minimum_detectable_effect=comparison.minimum_detectable_effect,
            spend=kes(spend),
            revenue_retained=kes(revenue),
            net_revenue=kes(revenue - spend),
        )

    async def _activity(
        self, customer_ids: list[int], start: dt.datetime, end: dt.datetime
    ) -> dict[int, Activity]:
        found: dict[int, Activity] = {c: Activity(0, 0) for c in customer_ids}
        for offset in range(0, len(customer_ids), ACTIVITY_BATCH):
            reply = await call_peer(
                self.peers.events.GetCustomerActivity,
                events_pb2.GetCustomerActivityRequest(
                    customer_ids=customer_ids[offset : offset + ACTIVITY_BATCH],
                    start_time=from_datetime(start),
                    end_time=from_datetime(end),
                ),
                "events.GetCustomerActivity",
            )
            for item in reply.activities:
                found[item.customer_id] = Activity(
                    item.event_count, item.amount.amount_micros
                )
        return found
