"""Churn model quality on CDNOW: our model next to the customer-base baselines.

The protocol follows the customer-base-analysis literature on CDNOW.

- Calibration runs from 1997-01-01 to 1997-09-30 and the holdout from 1997-10-01
  to 1998-06-30, 39 weeks each, in Nairobi dates. The rows of one customer on one
  date make one transaction.
- A customer churned when they have no transaction in the holdout.
- Every method runs on the same k folds, stratified on that label. Features come
  from calibration transactions only, and each method learns from the customers of
  its training folds only. The metrics pool the out-of-fold scores of all customers.
- A paired bootstrap over customers gives 95% intervals of each baseline's ROC AUC
  minus ours.

Usage: python bench/model_quality.py [--folds 5] [--seed 0] [--threads 2]
       [--json PATH] [--markdown PATH]
"""

import argparse
import datetime as dt
import json
import logging
import time
import warnings
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import numpy as np
import torch
from retain_cli import cdnow
from retain_inference.model import ModelConfig
from retain_inference.scoring import score
from retain_inference.sequences import (
    PURCHASE_EVENT_TYPE,
    CustomerSequence,
    group_events,
)
from retain_inference.training import train_model
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import (
    average_precision_score,
    brier_score_loss,
    log_loss,
    roc_auc_score,
)
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler
from threadpoolctl import threadpool_limits

with warnings.catch_warnings():
    # lifetimes 0.11.3 sets a pandas option that pandas 3 deprecates, on import.
    warnings.simplefilter("ignore")
    from lifetimes import BetaGeoFitter

logger = logging.getLogger(__name__)

HOLDOUT_WEEKS = 39
HOLDOUT_DAYS = 7 * HOLDOUT_WEEKS
# The published counts of this split. A mismatch means the data were read wrongly.
EXPECTED_CUSTOMERS = 23_570
EXPECTED_CHURNED = 16_512
EXPECTED_HOLDOUT_TRANSACTIONS = 19_684
MICROS_PER_UNIT = 1_000_000
RETAIN = "retain"


@dataclass(frozen=True, eq=False)
class Cohort:
    """The CDNOW customers with calibration summaries and holdout outcomes.

    Weeks are counted in whole Nairobi dates up to the end of calibration.
    """

    customer_ids: np.ndarray  # int64 (N,), ascending
    transactions: np.ndarray  # int64 (N,), calibration transactions
    recency_weeks: np.ndarray  # float64 (N,), last transaction to calibration end
    span_weeks: np.ndarray  # float64 (N,), first to last transaction, t_x
    tenure_weeks: np.ndarray  # float64 (N,), first transaction to calibration end, T
    mean_usd: np.ndarray  # float64 (N,), mean calibration transaction amount
    holdout_transactions: np.ndarray  # int64 (N,)
    churned: np.ndarray  # int64 (N,), 1 when no holdout transaction
    sequences: list[CustomerSequence]  # calibration and holdout transactions
    calibration_sequences: list[CustomerSequence]  # calibration transactions only

    def rfm_features(self) -> np.ndarray:
        """Return recency, frequency, monetary value and tenure, shape (N, 4)."""
        columns = (self.recency_weeks, self.transactions, self.mean_usd)
        return np.stack([*columns, self.tenure_weeks], axis=1).astype(np.float64)


@dataclass(frozen=True)
class Options:
    folds: int
    seed: int
    threads: int
    resamples: int


# A method gets the cohort, the training and the test rows, and returns the churn
# probability of each test row and, where it forecasts counts, its expected
# number of holdout transactions.
MethodScores = tuple[np.ndarray, np.ndarray | None]
Method = Callable[[Cohort, np.ndarray, np.ndarray, Options], MethodScores]


@dataclass(frozen=True, eq=False)
class Transactions:
    """CDNOW transactions, one per customer and Nairobi date, in any order."""

    customer_ids: np.ndarray  # int64 (T,)
    occurred_s: np.ndarray  # int64 (T,), Unix seconds of 12:00 Nairobi on the date
    days: np.ndarray  # int64 (T,), proleptic Gregorian ordinal of the date
    usd: np.ndarray  # float64 (T,)
    amounts_micros: np.ndarray  # int64 (T,), millionths of KES at cdnow.USD_TO_KES

    def select(self, keep: np.ndarray) -> "Transactions":
        return Transactions(*(column[keep] for column in vars(self).values()))

    def sequences(self) -> list[CustomerSequence]:
        event_types = np.full(self.customer_ids.shape[0], PURCHASE_EVENT_TYPE)
        return group_events(
            self.customer_ids, self.occurred_s, event_types, self.amounts_micros
        )


def merged_transactions() -> Transactions:
    """Read the CDNOW log and sum the rows of each customer and date."""
    totals: dict[tuple[int, dt.datetime], Decimal] = defaultdict(Decimal)
    for purchase in cdnow.read_purchases():
        if not cdnow.CALIBRATION_START <= purchase.occur_time < cdnow.HOLDOUT_END:
            raise ValueError(
                f"CDNOW row {purchase.row} is dated {purchase.occur_time.date()}, "
                "outside 1997-01-01 to 1998-06-30; read lifetimes' CDNOW_master.txt"
            )
        # Every row of a date is placed at 12:00 Nairobi, so the time keys the date.
        totals[(purchase.customer, purchase.occur_time)] += purchase.usd
    instants = [instant for _, instant in totals]
    return Transactions(
        customer_ids=np.array([customer for customer, _ in totals], dtype=np.int64),
        occurred_s=np.array([int(instant.timestamp()) for instant in instants]),
        days=np.array([instant.date().toordinal() for instant in instants]),
        usd=np.array([float(usd) for usd in totals.values()]),
        amounts_micros=np.array(
            [int(usd * cdnow.USD_TO_KES * MICROS_PER_UNIT) for usd in totals.values()]
        ),
    )


def calibration_summaries(
    row: np.ndarray, calibration: Transactions, num_customers: int
) -> dict[str, np.ndarray]:
    """Return the `Cohort` summary fields from each customer's calibration rows."""
    if np.unique(row).shape[0] != num_customers:
        raise ValueError("some CDNOW customers have no calibration transaction")
    transactions = np.bincount(row, minlength=num_customers)
    first_day = np.full(num_customers, np.iinfo(np.int64).max)
    np.minimum.at(first_day, row, calibration.days)
    last_day = np.zeros(num_customers, dtype=np.int64)
    np.maximum.at(last_day, row, calibration.days)
    end_day = cdnow.CALIBRATION_END.date().toordinal()
    total_usd = np.bincount(row, weights=calibration.usd, minlength=num_customers)
    return {
        "transactions": transactions,
        "recency_weeks": (end_day - last_day) / 7,
        "span_weeks": (last_day - first_day) / 7,
        "tenure_weeks": (end_day - first_day) / 7,
        "mean_usd": total_usd / transactions,
    }


def load_cohort() -> Cohort:
    """Build the cohort and check its counts against the published ones."""
    transactions = merged_transactions()
    is_calibration = transactions.occurred_s < cdnow.CALIBRATION_END.timestamp()
    calibration = transactions.select(is_calibration)
    ids, row = np.unique(transactions.customer_ids, return_inverse=True)
    holdout = np.bincount(row[~is_calibration], minlength=ids.shape[0])
    cohort = Cohort(
        customer_ids=ids,
        **calibration_summaries(row[is_calibration], calibration, ids.shape[0]),
        holdout_transactions=holdout,
        churned=(holdout == 0).astype(np.int64),
        sequences=transactions.sequences(),
        calibration_sequences=calibration.sequences(),
    )
    check_cohort(cohort)
    return cohort


def check_cohort(cohort: Cohort) -> None:
    """Raise ValueError unless the counts match the published CDNOW split."""
    counts = {
        "customers": (cohort.customer_ids.shape[0], EXPECTED_CUSTOMERS),
        "churned customers": (int(cohort.churned.sum()), EXPECTED_CHURNED),
        "holdout transactions": (
            int(cohort.holdout_transactions.sum()),
            EXPECTED_HOLDOUT_TRANSACTIONS,
        ),
    }
    for name, (found, expected) in counts.items():
        if found != expected:
            raise ValueError(
                f"found {found} {name} in the CDNOW log, expected {expected}; "
                "read lifetimes' CDNOW_master.txt with the published date split"
            )
    for sequences in (cohort.sequences, cohort.calibration_sequences):
        sequence_ids = np.array([s.customer_id for s in sequences])
        if not np.array_equal(sequence_ids, cohort.customer_ids):
            raise ValueError("customer sequences are not in cohort order")
    logger.info(
        "Loaded CDNOW: %s.", {name: found for name, (found, _) in counts.items()}
    )


def bg_nbd_forecast(
    cohort: Cohort, train: np.ndarray, rows: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Fit BG/NBD on the training rows and forecast the holdout of `rows`.

    Returns P(no holdout transaction) and the expected holdout transactions. Under
    BG/NBD a customer drops out only just after a transaction, so one alive at the
    end of calibration makes no holdout transaction exactly when the Poisson process
    makes none. The rate's posterior is then Gamma(r + x, alpha + T), which gives
    P(0 in t | alive) = ((alpha + T) / (alpha + T + t))^(r + x).
    """
    x = (cohort.transactions - 1).astype(np.float64)
    t_x, tenure = cohort.span_weeks, cohort.tenure_weeks
    fitter = BetaGeoFitter(penalizer_coef=0.0)
    fitter.fit(x[train], t_x[train], tenure[train])
    x, t_x, tenure = x[rows], t_x[rows], tenure[rows]
    alive = fitter.conditional_probability_alive(x, t_x, tenure)
    r, alpha = fitter.params_["r"], fitter.params_["alpha"]
    none_if_alive = ((alpha + tenure) / (alpha + tenure + HOLDOUT_WEEKS)) ** (r + x)
    expected = fitter.conditional_expected_number_of_purchases_up_to_time(
        HOLDOUT_WEEKS, x, t_x, tenure
    )
    return 1 - alive + alive * none_if_alive, np.asarray(expected)


def bg_nbd(
    cohort: Cohort, train: np.ndarray, test: np.ndarray, options: Options
) -> MethodScores:
    """Score BG/NBD's own P(no holdout transaction), without recalibration."""
    return bg_nbd_forecast(cohort, train, test)


def bg_nbd_expected(
    cohort: Cohort, train: np.ndarray, test: np.ndarray, options: Options
) -> MethodScores:
    """Score BG/NBD's expected holdout transactions, fewer meaning churn.

    A logistic regression on the training rows maps log1p of minus the expected
    count to a probability, an increasing map that keeps the ranking.
    """
    rows = np.concatenate([train, test])
    _, expected = bg_nbd_forecast(cohort, train, rows)
    scores = -np.log1p(expected)
    probability = increasing_map(
        scores[: train.shape[0]], cohort.churned[train], scores[train.shape[0] :]
    )
    return probability, expected[train.shape[0] :]


def increasing_map(
    train_scores: np.ndarray, train_churned: np.ndarray, test_scores: np.ndarray
) -> np.ndarray:
    """Map one score to a churn probability by logistic regression on training rows."""
    model = LogisticRegression().fit(train_scores[:, None], train_churned)
    if model.coef_[0, 0] <= 0:
        raise ValueError(
            "the fitted map does not increase with the score, so it ranks active "
            "customers as churned; check the churn labels and the score's sign"
        )
    probability: np.ndarray = model.predict_proba(test_scores[:, None])[:, 1]
    return probability


def recency(
    cohort: Cohort, train: np.ndarray, test: np.ndarray, options: Options
) -> MethodScores:
    """Score weeks since the last transaction, mapped to a probability.

    A one-feature logistic regression on the training rows maps recency to a
    probability for log loss and Brier score. The map is increasing, so ROC AUC
    and PR AUC are those of recency itself.
    """
    weeks = cohort.recency_weeks
    return increasing_map(weeks[train], cohort.churned[train], weeks[test]), None


def logistic(
    cohort: Cohort, train: np.ndarray, test: np.ndarray, options: Options
) -> MethodScores:
    """Score a logistic regression on log1p of recency, frequency, monetary, tenure."""
    model = make_pipeline(
        FunctionTransformer(np.log1p), StandardScaler(), LogisticRegression()
    )
    features = cohort.rfm_features()
    model.fit(features[train], cohort.churned[train])
    return model.predict_proba(features[test])[:, 1], None


def gradient_boosting(
    cohort: Cohort, train: np.ndarray, test: np.ndarray, options: Options
) -> MethodScores:
    """Score sklearn's histogram gradient boosting on recency, frequency, monetary, tenure."""
    model = HistGradientBoostingClassifier(random_state=options.seed)
    features = cohort.rfm_features()
    with threadpool_limits(options.threads):
        model.fit(features[train], cohort.churned[train])
        return model.predict_proba(features[test])[:, 1], None


def retain(
    cohort: Cohort, train: np.ndarray, test: np.ndarray, options: Options
) -> MethodScores:
    """Train our model on the training rows' holdout labels and score the test rows.

    Features come from calibration transactions (before the cut-off), and labels
    from the training customers' holdout, a 39-week window equal to the one scored.
    train_model holds out a slice of the training rows for early stopping and
    Platt calibration, so no test customer's holdout reaches the model.
    """
    result = train_model(
        [cohort.sequences[i] for i in train],
        cdnow.CALIBRATION_END,
        cdnow.HOLDOUT_END,
        ModelConfig(horizon_days=HOLDOUT_DAYS),
        options.seed,
        num_threads=options.threads,
    )
    metrics = result.metrics
    logger.info(
        "Retain trained: best epoch %d of %d, validation log loss %.4f, ROC AUC %.4f.",
        metrics.best_epoch,
        metrics.epochs,
        metrics.val_log_loss,
        metrics.val_roc_auc,
    )
    test_sequences = [cohort.calibration_sequences[i] for i in test]
    batch = score(result.predictor, test_sequences, cdnow.CALIBRATION_END)
    if not np.array_equal(batch.customer_ids, cohort.customer_ids[test]):
        raise RuntimeError("scores came back in a different customer order")
    # The count head forecasts the events in horizon_days, the 39-week holdout.
    return batch.churn_probability, batch.expected_events


METHODS: dict[str, Method] = {
    "bg_nbd": bg_nbd,
    "bg_nbd_expected": bg_nbd_expected,
    "recency": recency,
    "logistic_rfm": logistic,
    "hist_gradient_boosting_rfm": gradient_boosting,
    RETAIN: retain,
}
# Targets for our model. An ROC AUC above LEAK_ROC_AUC is a leak until shown not.
TARGET_ROC_AUC, STRETCH_ROC_AUC = 0.767, 0.775
TARGET_LOG_LOSS, STRETCH_LOG_LOSS = 0.495, 0.488
TARGET_CI_LOW = -0.003
TARGET_TOTAL_ERROR = 0.05
LEAK_ROC_AUC = 0.78


@dataclass(frozen=True, eq=False)
class Pooled:
    """Out-of-fold outputs of one method for every customer, in cohort order."""

    churn_probability: np.ndarray  # float64 (N,)
    expected_holdout: np.ndarray | None  # float64 (N,), None without a count forecast


def cross_validate(cohort: Cohort, options: Options) -> dict[str, Pooled]:
    """Run every method on the same stratified folds and pool the test scores."""
    folds = StratifiedKFold(options.folds, shuffle=True, random_state=options.seed)
    num_customers = cohort.customer_ids.shape[0]
    probability = {name: np.full(num_customers, np.nan) for name in METHODS}
    expected: dict[str, np.ndarray] = {}
    splits = folds.split(cohort.customer_ids, cohort.churned)
    for fold, (train, test) in enumerate(splits, start=1):
        for name, method in METHODS.items():
            started = time.perf_counter()
            fold_probability, fold_expected = method(cohort, train, test, options)
            probability[name][test] = fold_probability
            if fold_expected is not None:
                expected.setdefault(name, np.full(num_customers, np.nan))
                expected[name][test] = fold_expected
            logger.info(
                "Fold %d/%d: %s scored %d customers in %.1f s.",
                fold,
                options.folds,
                name,
                test.shape[0],
                time.perf_counter() - started,
            )
    return {name: Pooled(probability[name], expected.get(name)) for name in METHODS}


def measure(churned: np.ndarray, pooled: Pooled) -> dict[str, float | None]:
    """Return the metrics of one method's pooled scores, with churn positive."""
    p = pooled.churn_probability
    if np.isnan(p).any() or (p < 0).any() or (p > 1).any():
        raise ValueError("a method left a customer unscored or outside [0, 1]")
    total = pooled.expected_holdout
    return {
        "roc_auc": float(roc_auc_score(churned, p)),
        "roc_auc_ci_low": None,
        "pr_auc_churn": float(average_precision_score(churned, p)),
        "pr_auc_active": float(average_precision_score(1 - churned, 1 - p)),
        "log_loss": float(log_loss(churned, p)),
        "brier": float(brier_score_loss(churned, p)),
        "holdout_total": None if total is None else float(total.sum()),
    }


def auc_differences(
    churned: np.ndarray, pooled: dict[str, Pooled], options: Options
) -> dict[str, np.ndarray]:
    """Resample customers and return our ROC AUC minus each baseline's, per resample.

    Every method is measured on the same resamples, so the differences are paired.
    """
    rng = np.random.default_rng(options.seed)
    num_customers = churned.shape[0]
    baselines = [name for name in pooled if name != RETAIN]
    differences = {name: np.empty(options.resamples) for name in baselines}
    for resample in range(options.resamples):
        rows = rng.integers(0, num_customers, num_customers)
        ours = roc_auc_score(churned[rows], pooled[RETAIN].churn_probability[rows])
        for name in baselines:
            theirs = roc_auc_score(churned[rows], pooled[name].churn_probability[rows])
            differences[name][resample] = ours - theirs
    return differences


def summarise(
    cohort: Cohort, pooled: dict[str, Pooled], options: Options
) -> dict[str, dict[str, float | None]]:
    """Return the metrics of every method, with bootstrap intervals against ours.

    A baseline's row gets `roc_auc_minus_retain_ci`, the 95% interval of its ROC
    AUC minus ours. Our row gets `roc_auc_ci_low`, the lower end of the 95%
    interval of our ROC AUC minus that of the baseline with the best ROC AUC.
    """
    results = {name: measure(cohort.churned, scores) for name, scores in pooled.items()}
    differences = auc_differences(cohort.churned, pooled, options)
    for name, difference in differences.items():
        low, high = np.percentile(-difference, [2.5, 97.5])
        results[name]["roc_auc_minus_retain_ci"] = [float(low), float(high)]
    best = max(differences, key=lambda name: results[name]["roc_auc"])
    results[RETAIN]["roc_auc_minus_retain_ci"] = None
    results[RETAIN]["roc_auc_ci_low"] = float(np.percentile(differences[best], 2.5))
    results[RETAIN]["best_baseline"] = best
    return results


COLUMNS = (
    ("roc_auc", "ROC AUC"),
    ("pr_auc_churn", "PR AUC churn"),
    ("pr_auc_active", "PR AUC active"),
    ("log_loss", "log loss"),
    ("brier", "Brier"),
    ("holdout_total", "holdout total"),
)


def table_rows(results: dict, observed_total: int) -> list[list[str]]:
    """Return the header and one row of formatted cells per method."""
    header = ["method", *(title for _, title in COLUMNS), "ROC AUC - retain, 95% CI"]
    rows = [header]
    for name, metrics in results.items():
        cells = [name, *(format_metric(key, metrics[key]) for key, _ in COLUMNS)]
        interval = metrics.get("roc_auc_minus_retain_ci")
        cells.append(f"[{interval[0]:+.4f}, {interval[1]:+.4f}]" if interval else "-")
        rows.append(cells)
    rows.append(["observed", *["-"] * (len(COLUMNS) - 1), f"{observed_total:,}", "-"])
    return rows


def format_metric(key: str, value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:,.0f}" if key == "holdout_total" else f"{value:.4f}"


def format_text(rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)) for row in rows]
    return "\n".join(lines)


def format_markdown(rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(row) + " |" for row in rows]
    lines.insert(1, "|" + " --- |" * len(rows[0]))
    return "\n".join(lines)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folds", type=int, default=5, help="cross-validation folds")
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of folds, models and bootstrap"
    )
    parser.add_argument(
        "--threads", type=int, default=2, help="CPU threads for torch and sklearn"
    )
    parser.add_argument(
        "--resamples", type=int, default=1000, help="bootstrap resamples"
    )
    parser.add_argument(
        "--json", type=Path, help="write the metrics as JSON to this file"
    )
    parser.add_argument(
        "--markdown", type=Path, help="write the table as Markdown to this file"
    )
    args = parser.parse_args()
    if args.folds < 2 or args.threads < 1 or args.resamples < 1:
        parser.error("--folds must be at least 2, --threads and --resamples at least 1")
    return args


def target_report(ours: dict, observed_total: int) -> list[str]:
    """Return one line per target, saying whether our model met it."""
    auc, loss, ci_low = ours["roc_auc"], ours["log_loss"], ours["roc_auc_ci_low"]
    best, total = ours["best_baseline"], ours["holdout_total"]
    checks = [
        (f"ROC AUC {auc:.4f} >= {TARGET_ROC_AUC}", auc >= TARGET_ROC_AUC),
        (f"ROC AUC {auc:.4f} >= {STRETCH_ROC_AUC} (stretch)", auc >= STRETCH_ROC_AUC),
        (f"log loss {loss:.4f} <= {TARGET_LOG_LOSS}", loss <= TARGET_LOG_LOSS),
        (
            f"log loss {loss:.4f} <= {STRETCH_LOG_LOSS} (stretch)",
            loss <= STRETCH_LOG_LOSS,
        ),
        (f"CI low vs {best} {ci_low:+.4f} >= {TARGET_CI_LOW}", ci_low >= TARGET_CI_LOW),
    ]
    if total is not None:
        error = abs(total / observed_total - 1)
        checks.append((f"holdout total {total:,.0f}", error <= TARGET_TOTAL_ERROR))
    lines = [f"{'met' if met else 'missed'}: {text}" for text, met in checks]
    if total is None:
        lines.append("not measured: holdout total, because retain forecasts no count")
    return lines


def main() -> None:
    args = parse_args()
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    options = Options(args.folds, args.seed, args.threads, args.resamples)
    torch.set_num_threads(options.threads)
    started = time.perf_counter()
    cohort = load_cohort()
    results = summarise(cohort, cross_validate(cohort, options), options)
    observed_total = int(cohort.holdout_transactions.sum())
    logger.info("Benchmark finished in %.0f s.", time.perf_counter() - started)
    if results[RETAIN]["roc_auc"] > LEAK_ROC_AUC:
        logger.warning(
            "Retain ROC AUC is above %s: check for a leak before trusting it.",
            LEAK_ROC_AUC,
        )

    rows = table_rows(results, observed_total)
    print(format_text(rows))
    print("\n".join(target_report(results[RETAIN], observed_total)))
    if args.json:
        document = {**results, "observed_holdout_total": observed_total}
        args.json.write_text(json.dumps(document, indent=2) + "\n")
    if args.markdown:
        args.markdown.write_text(format_markdown(rows) + "\n")


if __name__ == "__main__":
    main()
