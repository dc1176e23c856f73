"""Scores stored with COPY read back exactly as scoring computed them."""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
from retain.events.v1 import events_pb2
from retain_inference import server
from retain_inference.events_client import table_from_packed
from retain_inference.features import to_event_table
from retain_inference.reasons import compute_reason_inputs, explain
from retain_inference.score_copy import copy_text, reasons_json_column, score_lines
from retain_inference.scoring import score, score_table
from retain_inference.store import Store
from retain_runtime import db

# A version string with every character that COPY's text format escapes.
ODD_VERSION = "gru\\back\ttab\nline"


def packed_page(sequences):
    """Return sequences as the events service's packed page, decoded."""
    table = to_event_table(sequences)
    return table_from_packed(
        events_pb2.PackedSequences(
            customer_ids=table.customer_ids.tolist(),
            event_counts=np.diff(table.offsets).tolist(),
            occur_unix_seconds=table.occurred_s.astype("<i8").tobytes(),
            event_types=table.event_types.astype("<i2").tobytes(),
            amounts_micros=table.amounts_micros.astype("<i8").tobytes(),
        )
    )


def test_packed_page_scores_like_sequences(trained, sequences, label_end) -> None:
    from_sequences = score(trained.predictor, sequences, label_end, batch_size=64)
    from_page = score_table(
        trained.predictor, packed_page(sequences), label_end, batch_size=64
    )

    np.testing.assert_array_equal(from_page.customer_ids, from_sequences.customer_ids)
    np.testing.assert_array_equal(
        from_page.churn_probability, from_sequences.churn_probability
    )
    np.testing.assert_array_equal(
        from_page.expected_days_to_next_event,
        from_sequences.expected_days_to_next_event,
    )


def test_reasons_column_matches_explain(synthetic_customers, cutoff) -> None:
    as_of = cutoff + dt.timedelta(days=20)
    customers = synthetic_customers(600, seed=5, end=as_of + dt.timedelta(days=30))
    inputs = compute_reason_inputs(to_event_table(customers), as_of)

    column = reasons_json_column(inputs)

    assert len(column) == len(customers)
    codes = set()
    for row, text in enumerate(column):
        expected = [
            {
                "code": reason.code,
                "params": {k: str(v) for k, v in reason.params.items()},
                "text": reason.text,
            }
            for reason in explain(inputs, row)
        ]
        assert json.loads(text) == expected, f"customer row {row}"
        codes.update(reason["code"] for reason in expected)
    assert len(codes) == 6  # every reason code, LAST_PURCHASE included


def test_reasons_column_of_no_customers_is_empty(cutoff) -> None:
    inputs = compute_reason_inputs(to_event_table([]), cutoff)

    assert reasons_json_column(inputs) == []


def test_copy_text_escapes_separators() -> None:
    assert copy_text(ODD_VERSION) == "gru\\\\back\\ttab\\nline"


async def test_copied_scores_read_back_exactly(
    trained, sequences, label_end, database_url: str
) -> None:
    batch = score(trained.predictor, sequences, label_end, batch_size=64)
    server.prepare_database(database_url)
    engine = db.async_engine(database_url)
    store = Store(engine)
    job = await store.create_job("scoring_run", dt.datetime.now(dt.UTC))
    run_id = await store.create_run(
        {
            "model_version": ODD_VERSION,
            "as_of_time": label_end,
            "min_customer_id": 0,
            "max_customer_id": 0,
            "job_id": job["job_id"],
        }
    )

    lines = score_lines(run_id, ODD_VERSION, batch)
    await store.copy_scores(run_id, lines, len(sequences))
    rows = await store.list_scores(run_id, 0.0, None, 10_000)
    run = await store.get_run(run_id)
    await engine.dispose()

    assert run["scored_count"] == len(sequences)
    assert [r["customer_id"] for r in rows] == batch.customer_ids.tolist()
    assert [r["churn_probability"] for r in rows] == batch.churn_probability.tolist()
    assert [r["expected_days"] for r in rows] == (
        batch.expected_days_to_next_event.tolist()
    )
    assert {r["model_version"] for r in rows} == {ODD_VERSION}
    for index, row in enumerate(rows):
        expected = [
            {
                "code": reason.code,
                "params": {k: str(v) for k, v in reason.params.items()},
                "text": reason.text,
            }
            for reason in explain(batch.reason_inputs, index)
        ]
        assert row["reasons"] == expected
    assert any(row["reasons"] for row in rows)
