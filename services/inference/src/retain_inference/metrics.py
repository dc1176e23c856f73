"""Ranking metrics for evaluating a scoring run against what customers did."""

from __future__ import annotations

import numpy as np
from scipy.stats import rankdata


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Return the ROC AUC of scores for binary labels (1 positive), ties averaged."""
    positives = int(labels.sum())
    negatives = labels.shape[0] - positives
    if positives == 0 or negatives == 0:
        return float("nan")
    ranks = rankdata(scores)
    rank_sum = ranks[labels == 1].sum()
    return float((rank_sum - positives * (positives + 1) / 2) / (positives * negatives))


def average_precision(labels: np.ndarray, scores: np.ndarray) -> float:
    """Return the area under the precision-recall curve, as average precision."""
    positives = int(labels.sum())
    if positives == 0:
        return float("nan")
    order = np.argsort(-scores, kind="mergesort")
    sorted_scores = scores[order]
    sorted_labels = labels[order]
    # Group tied scores so their precision is computed once, as scikit-learn does.
    last_of_group = np.r_[np.diff(sorted_scores) != 0, True]
    true_positives = np.cumsum(sorted_labels)[last_of_group]
    predicted = (np.arange(1, labels.shape[0] + 1))[last_of_group]
    precision = true_positives / predicted
    recall = true_positives / positives
    recall_steps = np.diff(np.r_[0.0, recall])
    return float((recall_steps * precision).sum())
