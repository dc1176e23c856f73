"""Rows of the scores table in COPY's text format, built off the event loop.

A scoring run stores each page with one `COPY scores FROM STDIN`, so the
service formats the rows itself: tab-separated columns, one line per
customer, with backslashes doubled as the text format requires. Floats are
written with `repr`, which PostgreSQL reads back as the same double.
"""

from __future__ import annotations

import dataclasses
from json.encoder import encode_basestring_ascii

from retain_inference.reasons import ReasonInputs, explain
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


def reasons_json(inputs: ReasonInputs, row: int) -> str:
    """Return the reasons of one customer as the JSON array the scores table holds.

    Each reason is {"code": ..., "params": {name: value as text}, "text": ...}.
    """
    reasons = explain(inputs, row)
    if not reasons:
        return "[]"
    # Writing the JSON by hand skips a dict per reason and a json.dumps call per
    # customer. encode_basestring_ascii is json's own string encoder, so each
    # string is written as json.dumps would write it.
    encode = encode_basestring_ascii
    items = []
    for reason in reasons:
        params = ", ".join(
            f"{encode(key)}: {encode(str(value))}"
            for key, value in reason.params.items()
        )
        items.append(
            f'{{"code": {encode(reason.code)}, "params": {{{params}}}, '
            f'"text": {encode(reason.text)}}}'
        )
    return f"[{', '.join(items)}]"


def _as_lists(inputs: ReasonInputs) -> ReasonInputs:
    """Return the inputs with Python lists in place of numpy arrays.

    `explain` reads one value at a time, which a list returns faster than an
    array. The values are the same ints and doubles, so the reasons are the
    same.
    """
    columns = {
        field.name: getattr(inputs, field.name).tolist()
        for field in dataclasses.fields(inputs)
    }
    return ReasonInputs(**columns)


def score_lines(run_id: int, version: str, batch: ScoreBatch) -> bytes:
    """Return one COPY text line per customer of the batch."""
    inputs = _as_lists(batch.reason_inputs)
    prefix = f"{run_id}\t"
    middle = f"\t{copy_text(version)}\t"
    lines = []
    for row, (customer_id, probability, days) in enumerate(
        zip(
            batch.customer_ids.tolist(),
            batch.churn_probability.tolist(),
            batch.expected_days_to_next_event.tolist(),
            strict=True,
        )
    ):
        reasons = reasons_json(inputs, row)
        if "\\" in reasons:
            reasons = copy_text(reasons)
        lines.append(
            f"{prefix}{customer_id}{middle}{probability!r}\t{days!r}\t{reasons}\n"
        )
    return "".join(lines).encode()
