"""ChurnModel: a GRU over recent events plus an MLP over customer summaries.

The model has three heads. The churn head returns the logit of the probability that
the customer has no event in the `horizon_days` days from `as_of`. The
time-to-event head returns a Weibull distribution over the days from `as_of` to the
customer's next event, trained with right-censoring at the end of the label window.
The count head returns a daily event rate and a dispersion, the mean and shape of a
negative binomial over the number of events in a window that starts at `as_of`,
trained on the counts of the label window.
"""

import logging
import math
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import nn
from torch.nn import functional as F

from retain_inference.features import EVENT_FEATURE_NAMES, STATIC_FEATURE_NAMES

logger = logging.getLogger(__name__)

# Shortest gap the Weibull likelihood sees, 1 hour, so that log(days) stays finite.
_MIN_DAYS = 1 / 24
# Lower bound of the Weibull shape, which keeps the mean finite.
_MIN_SHAPE = 0.3
# Lower bound of the negative binomial's total count, which bounds its variance.
_MIN_DISPERSION = 1e-2
# NOTE: training sees gaps only up to the end of the label window, so a mean far
# beyond horizon_days is the fitted Weibull's extrapolation, not an observed rate.
MAX_EXPECTED_DAYS = 3_650.0


@dataclass
class ModelConfig:
    """Constructor arguments of `ChurnModel`, stored in every checkpoint."""

    max_events: int = 64  # events per customer the GRU reads, the most recent ones
    horizon_days: int = 90  # churn means no event in this many days after as_of
    num_event_types: int = 8  # event type codes 1 to num_event_types - 1; 0 pads
    event_embedding_dim: int = 8
    event_feature_dim: int = len(EVENT_FEATURE_NAMES)
    static_feature_dim: int = len(STATIC_FEATURE_NAMES)
    gru_input_size: int = 32
    hidden_size: int = 64  # GRU state size
    static_hidden_size: int = 32
    trunk_size: int = 64
    dropout: float = 0.1

    def __post_init__(self) -> None:
        for name, value in vars(self).items():
            if name != "dropout" and (not isinstance(value, int) or value < 1):
                raise ValueError(
                    f"ModelConfig.{name} must be a positive integer, got {value!r}"
                )
        if self.num_event_types < 2:
            raise ValueError(
                f"ModelConfig.num_event_types must be at least 2 because code 0 "
                f"is padding, got {self.num_event_types}"
            )
        if not 0 <= self.dropout < 1:
            raise ValueError(
                f"ModelConfig.dropout must be in [0, 1), got {self.dropout}"
            )


class ChurnOutput(NamedTuple):
    """Outputs of `ChurnModel` for a batch of B customers."""

    churn_logit: torch.Tensor  # (B,), logit of P(no event within horizon_days)
    log_scale: torch.Tensor  # (B,), log of the Weibull scale in days
    shape: torch.Tensor  # (B,), Weibull shape, at least _MIN_SHAPE
    log_daily_rate: torch.Tensor  # (B,), log of the expected events per day
    count_dispersion: torch.Tensor  # (B,), negative binomial total count r


class EventEncoder(nn.Module):
    """Embeds each event and summarises the sequence with a GRU."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.embedding = nn.Embedding(
            config.num_event_types, config.event_embedding_dim, padding_idx=0
        )
        self.projection = nn.Linear(
            config.event_embedding_dim + config.event_feature_dim,
            config.gru_input_size,
        )
        # Without biases, a zero input leaves a zero state at zero, so the left
        # padding before a customer's first event does not change the final state.
        self.gru = nn.GRU(
            config.gru_input_size, config.hidden_size, batch_first=True, bias=False
        )

    def forward(
        self, event_types: torch.Tensor, event_features: torch.Tensor
    ) -> torch.Tensor:
        is_event = event_types != 0  # (B, L)
        # Padding is a no-op, so columns that are padding for every customer can go.
        longest = int(is_event.sum(dim=1).max()) if is_event.numel() else 0
        if longest == 0:
            return event_features.new_zeros(event_types.shape[0], self.gru.hidden_size)

        event_types = event_types[:, -longest:]  # (B, T)
        is_event = is_event[:, -longest:, None]  # (B, T, 1)
        x = torch.cat([self.embedding(event_types), event_features[:, -longest:]], -1)
        x = self.projection(x) * is_event  # (B, T, gru_input_size), 0 at padding
        _, state = self.gru(x)  # (1, B, hidden_size)
        final: torch.Tensor = state[0]  # (B, hidden_size)
        return final


class ChurnModel(nn.Module):
    """Churn logit and time-to-next-event distribution from a customer's history."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.events = EventEncoder(config)
        self.static = nn.Sequential(
            nn.Linear(config.static_feature_dim, config.static_hidden_size),
            nn.GELU(),
        )
        self.trunk = nn.Sequential(
            nn.Linear(
                config.hidden_size + config.static_hidden_size, config.trunk_size
            ),
            nn.GELU(),
            nn.Dropout(config.dropout),
        )
        self.churn_head = nn.Linear(config.trunk_size, 1)
        self.time_head = nn.Linear(config.trunk_size, 2)
        self.count_head = nn.Linear(config.trunk_size, 2)
        with torch.no_grad():
            # Start the Weibull scale at the horizon, the order of the gaps it
            # learns, and the count head at one event per horizon.
            self.time_head.bias[0] = math.log(config.horizon_days)
            self.count_head.bias[0] = -math.log(config.horizon_days)

    def forward(
        self,
        event_types: torch.Tensor,  # int64 (B, L), 0 at padding
        event_features: torch.Tensor,  # float32 (B, L, event_feature_dim)
        static_features: torch.Tensor,  # float32 (B, static_feature_dim)
    ) -> ChurnOutput:
        sequence = self.events(event_types, event_features)  # (B, hidden_size)
        summary = self.static(static_features)  # (B, static_hidden_size)
        h = self.trunk(torch.cat([sequence, summary], dim=-1))  # (B, trunk_size)
        churn_logit = self.churn_head(h).squeeze(-1)  # (B,)
        log_scale, raw_shape = self.time_head(h).unbind(-1)  # (B,), (B,)
        log_rate, raw_dispersion = self.count_head(h).unbind(-1)  # (B,), (B,)
        return ChurnOutput(
            churn_logit,
            log_scale,
            F.softplus(raw_shape) + _MIN_SHAPE,
            log_rate,
            F.softplus(raw_dispersion) + _MIN_DISPERSION,
        )


def weibull_log_likelihood(
    output: ChurnOutput, days: torch.Tensor, observed: torch.Tensor
) -> torch.Tensor:
    """Return the log-likelihood of each gap under the model's Weibull, shape (B,).

    An observed gap scores its log density. A censored one, where no event came
    before the end of the label window, scores the log probability of a longer gap.
    """
    log_days = torch.log(days.clamp_min(_MIN_DAYS))  # (B,)
    # Clamping z keeps exp(z) finite for gaps far beyond the predicted scale.
    z = (output.shape * (log_days - output.log_scale)).clamp(max=30.0)  # (B,)
    log_survival = -torch.exp(z)  # (B,)
    log_density = torch.log(output.shape) - log_days + z + log_survival  # (B,)
    return torch.where(observed, log_density, log_survival)


def weibull_mean_days(output: ChurnOutput) -> torch.Tensor:
    """Return the mean of each customer's Weibull distribution in days, shape (B,).

    Means are capped at MAX_EXPECTED_DAYS.
    """
    log_mean = output.log_scale + torch.lgamma(1 + 1 / output.shape)  # (B,)
    return torch.exp(log_mean.clamp(max=math.log(MAX_EXPECTED_DAYS)))


def expected_event_count(
    output: ChurnOutput, window_days: float | torch.Tensor
) -> torch.Tensor:
    """Return the expected number of events in `window_days` from as_of, shape (B,).

    NOTE: training uses counts of one window only, `horizon_days` long, and the
    forecast keeps the daily rate constant. For other windows this is a
    proportional extrapolation, which overstates long windows for customers who
    may stop.
    """
    return torch.exp(output.log_daily_rate) * window_days


def count_log_likelihood(
    output: ChurnOutput, counts: torch.Tensor, window_days: float
) -> torch.Tensor:
    """Return the log-likelihood of each window's event count, shape (B,).

    The count is negative binomial with mean `rate * window_days` and total count
    r, so its variance is mean + mean^2 / r.
    """
    r = output.count_dispersion  # (B,)
    log_r = torch.log(r)
    log_mean = output.log_daily_rate + math.log(window_days)  # (B,)
    log_total = torch.logaddexp(log_r, log_mean)  # log(r + mean), (B,)
    return (
        torch.lgamma(counts + r)
        - torch.lgamma(r)
        - torch.lgamma(counts + 1)
        + r * (log_r - log_total)
        + counts * (log_mean - log_total)
    )
