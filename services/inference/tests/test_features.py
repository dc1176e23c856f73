"""Tests of feature building: shapes, padding, the as_of cut and input checks."""

import math
from datetime import UTC, datetime

import numpy as np
import pytest
from retain_inference.features import (
    EVENT_FEATURE_NAMES,
    STATIC_FEATURE_NAMES,
    FeatureNormalizer,
    build_features,
    event_table_from_counts,
    to_event_table,
)
from retain_inference.sequences import CustomerSequence, group_events

AS_OF = datetime(2024, 6, 1, tzinfo=UTC)
DAY_S = 86_400
EVENT = {name: i for i, name in enumerate(EVENT_FEATURE_NAMES)}
STATIC = {name: i for i, name in enumerate(STATIC_FEATURE_NAMES)}


def days_before_as_of(*days: float) -> np.ndarray:
    return np.array([AS_OF.timestamp() - d * DAY_S for d in days], dtype=np.int64)


def customer(
    customer_id: int,
    occurred_s: np.ndarray,
    event_types: list[int] | None = None,
    amounts_kes: list[int] | None = None,
) -> CustomerSequence:
    count = occurred_s.shape[0]
    return CustomerSequence(
        customer_id=customer_id,
        occurred_s=occurred_s,
        event_types=np.array(event_types or [1] * count, dtype=np.int32),
        amounts_micros=np.array(amounts_kes or [100] * count, dtype=np.int64)
        * 1_000_000,
    )


def features_of(sequences: list[CustomerSequence], max_events: int = 8):
    return build_features(
        to_event_table(sequences), AS_OF, max_events=max_events, num_event_types=4
    )


def test_feature_arrays_have_documented_shapes():
    batch = features_of(
        [customer(1, days_before_as_of(9, 3)), customer(2, days_before_as_of(1))]
    )

    assert batch.customer_ids.tolist() == [1, 2]
    assert batch.event_types.shape == (2, 8)
    assert batch.event_features.shape == (2, 8, len(EVENT_FEATURE_NAMES))
    assert batch.static_features.shape == (2, len(STATIC_FEATURE_NAMES))
    assert batch.event_features.dtype == np.float32
    assert batch.static_features.dtype == np.float32


def test_events_are_left_padded():
    batch = features_of(
        [customer(1, days_before_as_of(9, 5, 2), [1, 2, 1])], max_events=5
    )

    assert batch.event_types[0].tolist() == [0, 0, 1, 2, 1]
    assert np.all(batch.event_features[0, :2] == 0)
    days = np.expm1(batch.event_features[0, 2:, EVENT["log_days_before_as_of"]])
    np.testing.assert_allclose(days, [9, 5, 2], rtol=1e-5)


def test_long_history_keeps_last_events():
    times = days_before_as_of(*range(20, 0, -1))  # 20 events, days 20 to 1
    batch = features_of([customer(1, times)], max_events=4)

    days = np.expm1(batch.event_features[0, :, EVENT["log_days_before_as_of"]])
    np.testing.assert_allclose(days, [4, 3, 2, 1], rtol=1e-5)


def test_event_count_covers_whole_history():
    times = days_before_as_of(*range(20, 0, -1))
    batch = features_of([customer(1, times)], max_events=4)

    count = np.expm1(batch.static_features[0, STATIC["log_event_count"]])
    assert count == pytest.approx(20)


def test_features_ignore_events_from_as_of():
    before = customer(1, days_before_as_of(10, 4))
    as_of_s = int(AS_OF.timestamp())
    future_s = np.array([as_of_s, as_of_s + 1, as_of_s + 3 * DAY_S])
    with_future = customer(
        1, np.append(days_before_as_of(10, 4), future_s), [1, 1, 2, 3, 1]
    )

    expected = features_of([before])
    actual = features_of([with_future])

    np.testing.assert_array_equal(actual.event_types, expected.event_types)
    np.testing.assert_array_equal(actual.event_features, expected.event_features)
    np.testing.assert_array_equal(actual.static_features, expected.static_features)


def test_event_features_on_known_history():
    batch = features_of([customer(1, days_before_as_of(10, 4), amounts_kes=[999, 49])])
    first, second = batch.event_features[0, -2], batch.event_features[0, -1]

    assert first[EVENT["is_first_event"]] == 1
    assert first[EVENT["log_days_since_previous_event"]] == 0
    assert second[EVENT["is_first_event"]] == 0
    assert second[EVENT["log_days_since_previous_event"]] == pytest.approx(
        math.log1p(6)
    )
    assert first[EVENT["log_amount_kes"]] == pytest.approx(math.log(1000))
    assert second[EVENT["log_amount_kes"]] == pytest.approx(math.log(50))


def test_static_features_on_known_history():
    # Events 30, 20 and 6 days before as_of: mean gap 12, two in the last 30 days.
    batch = features_of(
        [customer(1, days_before_as_of(30, 20, 6), amounts_kes=[10, 20, 60])]
    )
    static = np.expm1(batch.static_features[0].astype(np.float64))

    assert batch.static_features[0, STATIC["has_no_events"]] == 0
    assert batch.static_features[0, STATIC["has_one_event"]] == 0
    assert static[STATIC["log_event_count"]] == pytest.approx(3)
    assert static[STATIC["log_recency_days"]] == pytest.approx(6, rel=1e-5)
    assert static[STATIC["log_tenure_days"]] == pytest.approx(30, rel=1e-5)
    assert static[STATIC["log_mean_gap_days"]] == pytest.approx(12, rel=1e-5)
    assert static[STATIC["log_recency_over_mean_gap"]] == pytest.approx(0.5, rel=1e-5)
    assert static[STATIC["log_mean_amount_kes"]] == pytest.approx(30, rel=1e-5)
    assert static[STATIC["log_last_amount_kes"]] == pytest.approx(60, rel=1e-5)
    assert static[STATIC["log_events_last_30_days"]] == pytest.approx(2)
    assert static[STATIC["log_events_last_90_days"]] == pytest.approx(3)


def test_calendar_features_use_nairobi_time():
    # 2024-01-31 22:30 UTC is Thursday 2024-02-01 01:30 in Nairobi.
    occurred = datetime(2024, 1, 31, 22, 30, tzinfo=UTC)
    batch = features_of([customer(1, np.array([int(occurred.timestamp())]))])
    event = batch.event_features[0, -1]

    thursday, february = 3, 1
    assert event[EVENT["day_of_week_sin"]] == pytest.approx(
        math.sin(2 * math.pi * thursday / 7)
    )
    assert event[EVENT["day_of_week_cos"]] == pytest.approx(
        math.cos(2 * math.pi * thursday / 7)
    )
    assert event[EVENT["month_sin"]] == pytest.approx(
        math.sin(2 * math.pi * february / 12)
    )
    assert event[EVENT["month_cos"]] == pytest.approx(
        math.cos(2 * math.pi * february / 12)
    )


def test_customer_without_events_is_flagged():
    empty = customer(5, np.zeros(0, dtype=np.int64))
    future_only = customer(6, np.array([int(AS_OF.timestamp()) + DAY_S]))
    batch = features_of([empty, future_only])

    assert np.all(batch.event_types == 0)
    assert np.all(batch.event_features == 0)
    assert batch.static_features[:, STATIC["has_no_events"]].tolist() == [1, 1]
    assert np.all(batch.static_features[:, STATIC["log_event_count"]] == 0)


def test_unsorted_events_are_rejected():
    sequences = [
        customer(1, days_before_as_of(5, 4)),
        customer(2, days_before_as_of(4, 5)),
    ]

    with pytest.raises(ValueError, match="customer 2 are not sorted"):
        to_event_table(sequences)


def test_mismatched_array_lengths_are_rejected():
    sequence = CustomerSequence(
        customer_id=9,
        occurred_s=days_before_as_of(3, 2),
        event_types=np.array([1], dtype=np.int32),
        amounts_micros=np.array([0, 0], dtype=np.int64),
    )

    with pytest.raises(
        ValueError, match="customer 9 has 2 event times but 1 event_types"
    ):
        to_event_table([sequence])


def test_event_type_outside_config_is_rejected():
    with pytest.raises(ValueError, match="customer 1 has event type 7"):
        features_of([customer(1, days_before_as_of(3), [7])])


def test_naive_as_of_is_rejected():
    table = to_event_table([customer(1, days_before_as_of(3))])

    with pytest.raises(ValueError, match="has no timezone"):
        build_features(table, datetime(2024, 6, 1), max_events=4, num_event_types=4)


def test_normalizer_keeps_padding_at_zero():
    batch = features_of(
        [customer(1, days_before_as_of(9, 3)), customer(2, days_before_as_of(1))]
    )
    normalizer = FeatureNormalizer.fit(batch)
    normalized = normalizer.transform(batch)

    assert np.all(normalized.event_features[batch.event_types == 0] == 0)
    np.testing.assert_allclose(normalized.static_features.mean(axis=0), 0, atol=1e-6)


def test_group_events_sorts_events():
    sequences = group_events(
        customer_ids=np.array([2, 1, 2, 1]),
        occurred_s=np.array([50, 30, 10, 20]),
        event_types=np.array([1, 1, 2, 1]),
        amounts_micros=np.array([5, 3, 1, 2]),
    )

    assert [s.customer_id for s in sequences] == [1, 2]
    assert sequences[0].occurred_s.tolist() == [20, 30]
    assert sequences[1].occurred_s.tolist() == [10, 50]
    assert sequences[1].event_types.tolist() == [2, 1]
    assert sequences[1].amounts_micros.tolist() == [1, 5]


def test_table_from_counts_matches_sequences():
    sequences = [
        customer(4, days_before_as_of(9, 3), [1, 2]),
        customer(9, days_before_as_of(5)),
    ]
    expected = to_event_table(sequences)

    table = event_table_from_counts(
        np.array([4, 9]),
        np.array([2, 1]),
        expected.occurred_s,
        expected.event_types.astype(np.int16),
        expected.amounts_micros,
    )

    for name in ("customer_ids", "offsets", "occurred_s", "event_types"):
        np.testing.assert_array_equal(getattr(table, name), getattr(expected, name))
    assert table.event_types.dtype == np.int32


@pytest.mark.parametrize(
    ("counts", "times", "message"),
    [
        ([2, 2], [1, 2, 3], "event counts add up to 4 but there are 3 event times"),
        ([2, 1], [5, 4, 3], "events of customer 1 are not sorted by time"),
    ],
    ids=["short column", "unsorted times"],
)
def test_table_from_counts_rejects_bad_columns(counts, times, message):
    events = len(times)
    with pytest.raises(ValueError, match=message):
        event_table_from_counts(
            np.array([1, 2]),
            np.array(counts),
            np.array(times),
            np.ones(events, dtype=np.int16),
            np.zeros(events, dtype=np.int64),
        )


def test_normalised_build_matches_transform():
    sequences = [
        customer(1, days_before_as_of(40, 12, 3), [1, 2, 1], [50, 0, 900]),
        customer(2, days_before_as_of(*range(80, 0, -1))),
        customer(3, days_before_as_of(-2)),  # only an event after as_of
        customer(4, days_before_as_of(7)),
    ]
    table = to_event_table(sequences)
    plain = build_features(table, AS_OF, max_events=16, num_event_types=4)
    normalizer = FeatureNormalizer.fit(plain)

    fused = build_features(
        table, AS_OF, max_events=16, num_event_types=4, normalizer=normalizer
    )
    expected = normalizer.transform(plain)

    np.testing.assert_array_equal(fused.event_types, expected.event_types)
    np.testing.assert_array_equal(fused.event_features, expected.event_features)
    np.testing.assert_array_equal(fused.static_features, expected.static_features)
    assert fused.event_features.dtype == np.float32
    assert fused.static_features.dtype == np.float32
