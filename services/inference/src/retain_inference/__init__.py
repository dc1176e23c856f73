"""Retain's inference service: churn scores and their reasons from event histories.

The model core has no gRPC or database code:

- `sequences`: `CustomerSequence`, one customer's events, the input of everything else;
- `features`: padded tensors and summaries from the events before an instant;
- `model`: `ModelConfig` and `ChurnModel`, a GRU with churn and time-to-event heads;
- `predictor`: `ChurnPredictor`, a model with its feature statistics and calibration;
- `training`: `train_model`, with early stopping and Platt calibration;
- `scoring`: `score`, batch inference;
- `reasons`: plain-language reasons from each customer's own history;
- `checkpoint`: saving and loading a `ChurnPredictor`.
"""
