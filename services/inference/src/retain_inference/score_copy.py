"""Rows of the scores table in COPY's text format, built off the event loop.

A scoring run stores each page with one `COPY scores FROM STDIN`, so the
service formats the rows itself: tab-separated columns, one line per
customer, with backslashes doubled as the text format requires. Floats are
written with `repr`, which PostgreSQL reads back as the same double.
"""

from __future__ import annotations

import functools
from json.encoder import encode_basestring_ascii

import numpy as np

from retain_inference.reasons import (
    ReasonInputs,
    RuleHits,
    find_reasons,
    rank_reasons,
    reason_text,
)
from retain_inference.scoring import ScoreBatch

COLUMNS = (
    "scoring_run_id",
    "customer_id",
    "model_version",
    "churn_probability",
    "expected_days",
    "reasons",
)
_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def copy_text(value: str) -> str:
    """Escape a value for one column of COPY's text format."""
    return value.translate(_ESCAPES)


def reasons_json_column(inputs: ReasonInputs, max_reasons: int = 3) -> list[str]:
    """Return each customer's reasons as the JSON array the scores table holds.

    Each reason is {"code": ..., "params": {name: value as text}, "text": ...},
    strongest first, as `explain` returns them. The rules run over whole arrays,
    and the JSON of each distinct reason is cached.
    """
    hits = find_reasons(inputs)
    ranked = rank_reasons(hits, max_reasons)  # (B, K), -1 pads
    num_customers = ranked.shape[0]
    column = np.full(num_customers, "", dtype=object)
    for slot in range(ranked.shape[1]):
        rule = ranked[:, slot]  # (B,)
        if not (rule >= 0).any():
            break
        items = np.full(num_customers, "", dtype=object)
        for index, hit in enumerate(hits):
            rows = np.flatnonzero(rule == index)
            items[rows] = _reason_items(hit, rows)
        separator = ", " if slot else ""
        column = np.where(rule >= 0, column + separator + items, column)
    return ["[" + text + "]" for text in column.tolist()]


def _reason_items(hit: RuleHits, rows: np.ndarray) -> list[str]:
    """Return the JSON object of `hit`'s reason for each of `rows`."""
    names = tuple(hit.params)
    columns = [hit.params[name][rows].tolist() for name in names]
    keys = zip(*columns, strict=True) if names else [()] * rows.shape[0]
    return [_reason_item(hit.code, names, key) for key in keys]


# Reasons repeat across customers and pages (the same idle days and usual gap,
# say), so each distinct one is written once while it stays in the cache.
@functools.lru_cache(maxsize=65_536)
def _reason_item(
    code: str, names: tuple[str, ...], values: tuple[int | float, ...]
) -> str:
    # Writing the JSON by hand skips a dict per reason and a json.dumps call.
    # encode_basestring_ascii is json's own string encoder, so each string is
    # written as json.dumps would write it.
    encode = encode_basestring_ascii
    params = dict(zip(names, values, strict=True))
    fields = ", ".join(
        f"{encode(name)}: {encode(str(value))}" for name, value in params.items()
    )
    text = encode(reason_text(code, params))
    return f'{{"code": {encode(code)}, "params": {{{fields}}}, "text": {text}}}'


def score_lines(run_id: int, version: str, batch: ScoreBatch) -> bytes:
    """Return one COPY text line per customer of the batch."""
    prefix = f"{run_id}\t"
    middle = f"\t{copy_text(version)}\t"
    lines = []
    for customer_id, probability, days, reasons in zip(
        batch.customer_ids.tolist(),
        batch.churn_probability.tolist(),
        batch.expected_days_to_next_event.tolist(),
        reasons_json_column(batch.reason_inputs),
        strict=True,
    ):
        if "\\" in reasons:
            reasons = copy_text(reasons)
        lines.append(
            f"{prefix}{customer_id}{middle}{probability!r}\t{days!r}\t{reasons}\n"
        )
    return "".join(lines).encode()
