"""Tests of ChurnModel shapes, padding, the Weibull head and the count head."""

import math

import pytest
import torch
from retain_inference.model import (
    MAX_EXPECTED_DAYS,
    ChurnModel,
    ChurnOutput,
    ModelConfig,
    count_log_likelihood,
    expected_event_count,
    weibull_log_likelihood,
    weibull_mean_days,
)


def weibull_output(log_scale: torch.Tensor, shape: torch.Tensor) -> ChurnOutput:
    """Return outputs with the given Weibull parameters and neutral other heads."""
    zeros = torch.zeros_like(log_scale)
    return ChurnOutput(zeros, log_scale, shape, zeros, torch.ones_like(log_scale))


def count_output(rate: torch.Tensor, dispersion: torch.Tensor) -> ChurnOutput:
    """Return outputs with the given daily rate and dispersion."""
    zeros = torch.zeros_like(rate)
    return ChurnOutput(zeros, zeros, torch.ones_like(rate), rate.log(), dispersion)


def random_inputs(config: ModelConfig, lengths: list[int], max_events: int):
    generator = torch.Generator().manual_seed(0)
    batch = len(lengths)
    event_types = torch.randint(
        1, config.num_event_types, (batch, max_events), generator=generator
    )
    event_features = torch.randn(
        batch, max_events, config.event_feature_dim, generator=generator
    )
    for row, length in enumerate(lengths):
        event_types[row, : max_events - length] = 0
        event_features[row, : max_events - length] = 0
    static_features = torch.randn(batch, config.static_feature_dim, generator=generator)
    return event_types, event_features, static_features


def test_forward_output_shapes(small_config):
    model = ChurnModel(small_config).eval()
    output = model(*random_inputs(small_config, [3, 0, 16], max_events=16))

    assert output.churn_logit.shape == (3,)
    assert output.log_scale.shape == (3,)
    assert output.shape.shape == (3,)
    assert torch.all(output.shape > 0)
    assert output.log_daily_rate.shape == (3,)
    assert output.count_dispersion.shape == (3,)
    assert torch.all(output.count_dispersion > 0)


def test_extra_left_padding_leaves_output_unchanged(small_config):
    torch.manual_seed(0)
    model = ChurnModel(small_config).eval()
    event_types, event_features, static_features = random_inputs(
        small_config, [2, 5], max_events=5
    )
    padded_types = torch.cat([torch.zeros(2, 11, dtype=torch.int64), event_types], 1)
    padded_features = torch.cat(
        [torch.zeros(2, 11, small_config.event_feature_dim), event_features], 1
    )

    with torch.no_grad():
        short = model(event_types, event_features, static_features)
        long = model(padded_types, padded_features, static_features)

    torch.testing.assert_close(long.churn_logit, short.churn_logit, rtol=0, atol=0)
    torch.testing.assert_close(long.log_scale, short.log_scale, rtol=0, atol=0)


def test_output_ignores_batch_mates(small_config):
    torch.manual_seed(0)
    model = ChurnModel(small_config).eval()
    inputs = random_inputs(small_config, [2, 16], max_events=16)

    with torch.no_grad():
        together = model(*inputs).churn_logit[0]
        alone = model(*(tensor[:1] for tensor in inputs)).churn_logit[0]

    assert float(alone) == pytest.approx(float(together), abs=1e-6)


def test_weibull_log_likelihood_matches_torch_distribution():
    scale = torch.tensor([10.0, 40.0, 3.0])
    shape = torch.tensor([0.7, 1.0, 2.5])
    output = weibull_output(scale.log(), shape)
    days = torch.tensor([5.0, 60.0, 2.0])
    weibull = torch.distributions.Weibull(scale, shape)

    observed = weibull_log_likelihood(output, days, torch.ones(3, dtype=torch.bool))
    censored = weibull_log_likelihood(output, days, torch.zeros(3, dtype=torch.bool))

    torch.testing.assert_close(observed, weibull.log_prob(days))
    torch.testing.assert_close(censored, torch.log1p(-weibull.cdf(days)))


def test_weibull_mean_matches_torch():
    scale = torch.tensor([10.0, 40.0])
    shape = torch.tensor([0.7, 2.0])
    output = weibull_output(scale.log(), shape)

    mean = weibull_mean_days(output)

    torch.testing.assert_close(mean, torch.distributions.Weibull(scale, shape).mean)


def test_weibull_mean_is_capped():
    output = weibull_output(torch.tensor([math.log(1e6)]), torch.ones(1))

    assert weibull_mean_days(output).item() == pytest.approx(MAX_EXPECTED_DAYS)


def test_time_head_starts_at_horizon_scale(small_config):
    model = ChurnModel(small_config)

    assert model.time_head.bias[0].item() == pytest.approx(
        math.log(small_config.horizon_days)
    )


def test_count_log_likelihood_matches_torch_distribution():
    rate = torch.tensor([0.01, 0.2, 1.5])
    dispersion = torch.tensor([0.3, 2.0, 50.0])
    counts = torch.tensor([0.0, 4.0, 30.0])
    window_days = 20.0
    mean = rate * window_days
    negative_binomial = torch.distributions.NegativeBinomial(
        total_count=dispersion, logits=mean.log() - dispersion.log()
    )

    log_likelihood = count_log_likelihood(
        count_output(rate, dispersion), counts, window_days
    )

    torch.testing.assert_close(log_likelihood, negative_binomial.log_prob(counts))
    torch.testing.assert_close(negative_binomial.mean, mean)


def test_expected_count_grows_with_window():
    output = count_output(torch.tensor([0.05, 0.5]), torch.ones(2))

    short = expected_event_count(output, 30.0)
    long = expected_event_count(output, 90.0)

    torch.testing.assert_close(short, torch.tensor([1.5, 15.0]))
    assert torch.all(long > short)


def test_count_head_starts_at_one_event_per_horizon(small_config):
    model = ChurnModel(small_config)

    assert model.count_head.bias[0].item() == pytest.approx(
        -math.log(small_config.horizon_days)
    )


@pytest.mark.parametrize(
    ("field", "value"),
    [("hidden_size", 0), ("max_events", -1), ("num_event_types", 1), ("dropout", 1.0)],
    ids=["zero-hidden", "negative-events", "one-event-type", "dropout-one"],
)
def test_config_rejects_invalid_values(field, value):
    with pytest.raises(ValueError, match=field):
        ModelConfig(**{field: value})
