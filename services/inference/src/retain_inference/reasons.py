"""Plain-language reasons behind a churn score, from the customer's own history.

Most reasons contrast a customer's recent purchases with their earlier ones. A
customer with purchases whom no contrast fits gets LAST_PURCHASE, which states the
purchase count and the days since the last purchase, so every customer gets at
least one reason. All reasons state only facts computed from purchases (events of
type `PURCHASE_EVENT_TYPE`) strictly before `as_of`. The reasons describe the
history the model read. They do not attribute the score to inputs.
"""

import dataclasses
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import numpy as np

from retain_inference.features import (
    MICROS_PER_KES,
    SECONDS_PER_DAY,
    EventTable,
    unix_seconds,
)
from retain_inference.sequences import PURCHASE_EVENT_TYPE

logger = logging.getLogger(__name__)

SPEND_WINDOW_DAYS = 30  # SPEND_DOWN compares the last 30 days with the 30 before
PURCHASE_WINDOW_DAYS = 90  # FEW_PURCHASES compares the last 90 days with the past
MIN_IDLE_DAYS = 7  # NO_ACTIVITY_SINCE needs at least this many days without purchase
# ... and this many purchases, because one gap between two purchases is no habit
MIN_PURCHASES_FOR_USUAL_GAP = 3
IDLE_GAP_RATIO = 2.0  # ... and at least this many median gaps
SPEND_DROP_FRACTION = 0.3  # SPEND_DOWN needs spend down by at least 30%
FEW_PURCHASES_RATIO = 0.5  # FEW_PURCHASES needs at most half the earlier rate
MIN_EARLIER_RATE = 1.0  # ... and an earlier rate of at least one per window


@dataclass(frozen=True, eq=False)
class ReasonInputs:
    """Facts about each customer's purchases before `as_of`, one row per customer."""

    customer_ids: np.ndarray  # int64 (B,)
    purchase_count: np.ndarray  # int64 (B,)
    days_since_first_purchase: np.ndarray  # float64 (B,), nan without purchases
    days_since_last_purchase: np.ndarray  # float64 (B,), nan without purchases
    median_gap_days: np.ndarray  # float64 (B,), nan with fewer than 2 purchases
    recent_spend_kes: np.ndarray  # float64 (B,), in the last SPEND_WINDOW_DAYS
    previous_spend_kes: np.ndarray  # float64 (B,), in the SPEND_WINDOW_DAYS before
    recent_purchase_count: np.ndarray  # int64 (B,), in the last PURCHASE_WINDOW_DAYS
    # Purchases per PURCHASE_WINDOW_DAYS from the first purchase to the start of the
    # last PURCHASE_WINDOW_DAYS; nan when that span is shorter than one window.
    earlier_purchase_rate: np.ndarray  # float64 (B,)


@dataclass(frozen=True)
class Reason:
    """One fact that may explain a churn score, as a code, its values and a sentence."""

    code: str
    params: dict[str, str | int | float]
    text: str


def compute_reason_inputs(table: EventTable, as_of: datetime) -> ReasonInputs:
    """Compute `ReasonInputs` from the purchases strictly before `as_of`."""
    as_of_s = unix_seconds(as_of)
    is_past_purchase = (table.occurred_s < as_of_s) & (
        table.event_types == PURCHASE_EVENT_TYPE
    )
    purchases = table.select_events(is_past_purchase)
    row = purchases.customer_index()  # (E,)
    counts = purchases.counts  # (B,)
    first_days, last_days = _days_since_first_and_last(purchases, as_of_s)

    age_days = (as_of_s - purchases.occurred_s) / SECONDS_PER_DAY  # (E,)
    amount_kes = purchases.amounts_micros / MICROS_PER_KES  # (E,)
    is_recent_spend = age_days < SPEND_WINDOW_DAYS
    is_previous_spend = ~is_recent_spend & (age_days < 2 * SPEND_WINDOW_DAYS)
    recent_count = np.bincount(
        row, weights=age_days < PURCHASE_WINDOW_DAYS, minlength=counts.shape[0]
    ).astype(np.int64)

    return ReasonInputs(
        customer_ids=purchases.customer_ids,
        purchase_count=counts,
        days_since_first_purchase=first_days,
        days_since_last_purchase=last_days,
        median_gap_days=_median_gap_days(purchases, row),
        recent_spend_kes=np.bincount(
            row, weights=amount_kes * is_recent_spend, minlength=counts.shape[0]
        ),
        previous_spend_kes=np.bincount(
            row, weights=amount_kes * is_previous_spend, minlength=counts.shape[0]
        ),
        recent_purchase_count=recent_count,
        earlier_purchase_rate=_earlier_purchase_rate(counts, recent_count, first_days),
    )


def _days_since_first_and_last(
    purchases: EventTable, as_of_s: float
) -> tuple[np.ndarray, np.ndarray]:
    """Return days from each customer's first and last purchase to `as_of_s`."""
    has_purchases = purchases.counts > 0
    first_s = purchases.occurred_s[purchases.offsets[:-1][has_purchases]]
    last_s = purchases.occurred_s[purchases.offsets[1:][has_purchases] - 1]
    first_days = np.full(has_purchases.shape[0], np.nan)
    last_days = np.full(has_purchases.shape[0], np.nan)
    first_days[has_purchases] = (as_of_s - first_s) / SECONDS_PER_DAY
    last_days[has_purchases] = (as_of_s - last_s) / SECONDS_PER_DAY
    return first_days, last_days


def _median_gap_days(purchases: EventTable, row: np.ndarray) -> np.ndarray:
    """Return the median days between consecutive purchases of each customer."""
    position = np.arange(row.shape[0]) - purchases.offsets[row]  # (E,)
    later = np.flatnonzero(position > 0)  # (G,), purchases that follow another
    gaps = purchases.occurred_s[later] - purchases.occurred_s[later - 1]  # (G,)
    gaps = _sort_within_groups(gaps, row[later]) / SECONDS_PER_DAY  # (G,)

    gap_counts = np.maximum(purchases.counts - 1, 0)  # (B,)
    starts = np.cumsum(gap_counts) - gap_counts  # (B,)
    has_gaps = gap_counts > 0
    low = starts[has_gaps] + (gap_counts[has_gaps] - 1) // 2
    high = starts[has_gaps] + gap_counts[has_gaps] // 2
    median = np.full(gap_counts.shape[0], np.nan)
    median[has_gaps] = (gaps[low] + gaps[high]) / 2
    return median


def _sort_within_groups(values: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Sort non-negative int64 `values` within runs of ascending `groups`."""
    if values.shape[0] == 0:
        return values
    # One sort of a combined key is several times faster than np.lexsort.
    span = int(values.max()) + 1
    if int(groups.max()) < np.iinfo(np.int64).max // span:
        return np.sort(groups * span + values) % span
    return values[np.lexsort((values, groups))]


def _earlier_purchase_rate(
    counts: np.ndarray, recent_count: np.ndarray, first_days: np.ndarray
) -> np.ndarray:
    earlier_span_days = first_days - PURCHASE_WINDOW_DAYS  # nan without purchases
    rate = np.full(counts.shape[0], np.nan)
    long_enough = earlier_span_days >= PURCHASE_WINDOW_DAYS  # False where nan
    rate[long_enough] = (
        (counts - recent_count)[long_enough]
        / earlier_span_days[long_enough]
        * PURCHASE_WINDOW_DAYS
    )
    return rate


@dataclass(frozen=True, eq=False)
class RuleHits:
    """The outcome of one reason rule for each customer: fired, strength, parameters.

    `strength` and `params` are meaningful only where `fired` is true.
    """

    code: str
    fired: np.ndarray  # bool (B,)
    strength: np.ndarray  # float64 (B,)
    params: dict[str, np.ndarray]  # name -> int64 or float64 (B,)


def find_reasons(inputs: ReasonInputs) -> list[RuleHits]:
    """Evaluate every reason rule for every customer, in rule order.

    The last hits are the LAST_PURCHASE fallback, which fires for each customer
    with purchases where no other rule fired.
    """
    hits = [rule(inputs) for rule in _RULES]
    any_fired = np.logical_or.reduce([hit.fired for hit in hits])  # (B,)
    hits.append(_last_purchase(inputs, ~any_fired))
    return hits


def rank_reasons(hits: list[RuleHits], max_reasons: int = 3) -> np.ndarray:
    """Return each customer's rule indices, strongest first, shape (B, max_reasons).

    NO_PURCHASES ranks first. The other reasons rank by about how many times the
    recent behaviour falls short of the customer's usual one, and equal strengths
    keep rule order. Slots beyond a customer's reasons hold -1.
    """
    fired = np.stack([hit.fired for hit in hits], axis=1)  # (B, R)
    strength = np.stack([hit.strength for hit in hits], axis=1)  # (B, R)
    # NaN sorts last, so rules that did not fire come after those that did.
    keys = np.where(fired, -strength, np.nan)  # (B, R)
    order = np.argsort(keys, axis=1, kind="stable")[:, :max_reasons]  # (B, K)
    ranked_fired = np.take_along_axis(fired, order, axis=1)  # (B, K)
    return np.where(ranked_fired, order, -1)


def explain(inputs: ReasonInputs, row: int, max_reasons: int = 3) -> list[Reason]:
    """Return up to `max_reasons` reasons for customer `row`, strongest first.

    Every customer gets at least one reason, because NO_PURCHASES, SINGLE_PURCHASE
    or the LAST_PURCHASE fallback covers anyone no other rule fits.
    """
    one_row = ReasonInputs(
        **{
            field.name: getattr(inputs, field.name)[row : row + 1]
            for field in dataclasses.fields(inputs)
        }
    )
    hits = find_reasons(one_row)
    ranked = rank_reasons(hits, max_reasons)[0]
    return [reason_at(hits[rule], 0) for rule in ranked.tolist() if rule >= 0]


def reason_at(hit: RuleHits, row: int) -> Reason:
    """Return the reason that `hit` gives customer `row`, where it fired."""
    params = {name: values[row].item() for name, values in hit.params.items()}
    return Reason(hit.code, params, reason_text(hit.code, params))


def reason_text(code: str, params: dict[str, int | float]) -> str:
    """Return the sentence of a reason from its code and parameters."""
    return _TEXTS[code](params)


def _hits(
    code: str, fired: np.ndarray, strength: np.ndarray, **params: np.ndarray
) -> RuleHits:
    # Zero the values where the rule did not fire, so casts see no nan or inf.
    strength = np.where(fired, strength, 0.0)
    clean = {name: np.where(fired, values, 0) for name, values in params.items()}
    return RuleHits(code, fired, strength, clean)


def _floor_days(days: np.ndarray) -> np.ndarray:
    return np.floor(np.nan_to_num(days)).astype(np.int64)


def _no_purchases(inputs: ReasonInputs) -> RuleHits:
    fired = inputs.purchase_count == 0
    return _hits("NO_PURCHASES", fired, np.full(fired.shape[0], math.inf))


def _single_purchase(inputs: ReasonInputs) -> RuleHits:
    fired = inputs.purchase_count == 1
    days = _floor_days(inputs.days_since_first_purchase)
    return _hits("SINGLE_PURCHASE", fired, 1 + days / SPEND_WINDOW_DAYS, days=days)


def _no_activity_since(inputs: ReasonInputs) -> RuleHits:
    idle_days = inputs.days_since_last_purchase
    median_gap = inputs.median_gap_days
    # Three or more purchases, so neither value is nan where the rule fires.
    fired = (
        (inputs.purchase_count >= MIN_PURCHASES_FOR_USUAL_GAP)
        & (idle_days >= MIN_IDLE_DAYS)
        & (idle_days >= IDLE_GAP_RATIO * median_gap)
    )
    # np.rint rounds halves to even, as Python's round does.
    usual_gap = np.maximum(1, np.rint(np.nan_to_num(median_gap))).astype(np.int64)
    return _hits(
        "NO_ACTIVITY_SINCE",
        fired,
        idle_days / np.maximum(np.nan_to_num(median_gap), 1.0),
        days=_floor_days(idle_days),
        usual_gap_days=usual_gap,
    )


def _spend_down(inputs: ReasonInputs) -> RuleHits:
    recent = inputs.recent_spend_kes
    previous = inputs.previous_spend_kes
    fired = (recent > 0) & (recent <= (1 - SPEND_DROP_FRACTION) * previous)
    safe_recent = np.where(fired, recent, 1.0)
    safe_previous = np.where(fired, previous, 1.0)
    percent = np.rint(100 * (1 - safe_recent / safe_previous)).astype(np.int64)
    return _hits(
        "SPEND_DOWN",
        fired,
        safe_previous / safe_recent,
        percent=percent,
        recent_kes=np.rint(recent).astype(np.int64),
        previous_kes=np.rint(previous).astype(np.int64),
        window_days=np.full(fired.shape[0], SPEND_WINDOW_DAYS),
    )


def _few_purchases(inputs: ReasonInputs) -> RuleHits:
    earlier_rate = inputs.earlier_purchase_rate
    count = inputs.recent_purchase_count
    fired = (earlier_rate >= MIN_EARLIER_RATE) & (  # False where nan
        count <= FEW_PURCHASES_RATIO * earlier_rate
    )
    # Python's round to one decimal, which np.round does not always match.
    usual = np.zeros(fired.shape[0])
    rows = np.flatnonzero(fired)
    usual[rows] = [round(rate, 1) for rate in earlier_rate[rows].tolist()]
    return _hits(
        "FEW_PURCHASES",
        fired,
        np.nan_to_num(earlier_rate) / np.maximum(count, 0.5),
        count=count.astype(np.int64),
        window_days=np.full(fired.shape[0], PURCHASE_WINDOW_DAYS),
        usual_count=usual,
    )


def _last_purchase(inputs: ReasonInputs, no_other_reason: np.ndarray) -> RuleHits:
    fired = no_other_reason & (inputs.purchase_count >= 1)
    span_days = inputs.days_since_first_purchase - inputs.days_since_last_purchase
    return _hits(
        "LAST_PURCHASE",
        fired,
        np.zeros(fired.shape[0]),  # the only reason wherever it fires
        count=inputs.purchase_count.astype(np.int64),
        days=_floor_days(inputs.days_since_last_purchase),
        first_to_last_days=_floor_days(span_days),
    )


# LAST_PURCHASE is not in this tuple because it depends on the other rules' hits.
_RULES: tuple[Callable[[ReasonInputs], RuleHits], ...] = (
    _no_purchases,
    _single_purchase,
    _no_activity_since,
    _spend_down,
    _few_purchases,
)


def _single_purchase_text(params: dict[str, int | float]) -> str:
    return f"only one purchase so far, {_age(int(params['days']))} ago"


def _last_purchase_text(params: dict[str, int | float]) -> str:
    count, days = int(params["count"]), int(params["days"])
    last = "the last in the past day" if days == 0 else f"the last {_days(days)} ago"
    if count == 2:
        apart = _age(int(params["first_to_last_days"]))
        return f"2 purchases so far, {apart} apart; {last}"
    return f"{count} purchases so far, {last}"


def _no_activity_text(params: dict[str, int | float]) -> str:
    days, usual_gap = int(params["days"]), int(params["usual_gap_days"])
    return f"no purchases in {_days(days)}; usually one every {_days(usual_gap)}"


def _spend_down_text(params: dict[str, int | float]) -> str:
    return (
        f"spent KES {params['recent_kes']:,} in the last {SPEND_WINDOW_DAYS} days, "
        f"down {params['percent']}% on the {SPEND_WINDOW_DAYS} days before"
    )


def _few_purchases_text(params: dict[str, int | float]) -> str:
    count = int(params["count"])
    recent_text = "no purchases" if count == 0 else _count(count, "purchase")
    return (
        f"{recent_text} in the last {PURCHASE_WINDOW_DAYS} days; before that, "
        f"{params['usual_count']:g} per {PURCHASE_WINDOW_DAYS} days on average"
    )


_TEXTS: dict[str, Callable[[dict[str, int | float]], str]] = {
    "NO_PURCHASES": lambda params: "no purchases yet",
    "SINGLE_PURCHASE": _single_purchase_text,
    "NO_ACTIVITY_SINCE": _no_activity_text,
    "SPEND_DOWN": _spend_down_text,
    "FEW_PURCHASES": _few_purchases_text,
    "LAST_PURCHASE": _last_purchase_text,
}


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"


def _days(number: int) -> str:
    return _count(number, "day")


def _age(days: int) -> str:
    """Return a whole number of days as words, with 0 as "less than a day"."""
    return "less than a day" if days == 0 else _days(days)
