"""Request checks for InferenceService, run once by the service interceptor."""

from __future__ import annotations

from retain.inference.v1 import inference_pb2 as pb

from retain_runtime.errors import InvalidArgument
from retain_runtime.timestamps import required

SECONDS_PER_DAY = 86_400


def _probability(value: float, field: str) -> None:
    if not 0.0 <= value <= 1.0:
        raise InvalidArgument(field, f"{value} is not a probability; use 0 to 1")


def _non_negative(value: int, field: str) -> None:
    if value < 0:
        raise InvalidArgument(field, f"{value} is negative; use 0 or a positive id")


def train_model(request: pb.TrainModelRequest) -> None:
    cutoff = required(request, "cutoff_time")
    label_end = required(request, "label_end_time")
    span = (label_end - cutoff).total_seconds()
    if span <= 0:
        raise InvalidArgument("label_end_time", "must be after cutoff_time")
    if span % SECONDS_PER_DAY:
        raise InvalidArgument(
            "label_end_time", "must be a whole number of days after cutoff_time"
        )


def promote_model(request: pb.PromoteModelRequest) -> None:
    if not request.model_version:
        raise InvalidArgument("model_version", "is required; see ListModels")


def start_scoring_run(request: pb.StartScoringRunRequest) -> None:
    _non_negative(request.min_customer_id, "min_customer_id")
    _non_negative(request.max_customer_id, "max_customer_id")
    if request.max_customer_id and request.max_customer_id < request.min_customer_id:
        raise InvalidArgument("max_customer_id", "is below min_customer_id")


def run_id(request: pb.GetScoringRunRequest) -> None:
    if request.scoring_run_id <= 0:
        raise InvalidArgument(
            "scoring_run_id", f"{request.scoring_run_id} is not a run id"
        )


def list_scores(request: pb.ListScoresRequest) -> None:
    _non_negative(request.scoring_run_id, "scoring_run_id")
    _probability(request.min_churn_probability, "min_churn_probability")
    if request.order not in pb.ScoreOrder.values():
        names = ", ".join(pb.ScoreOrder.keys())
        raise InvalidArgument("order", f"{request.order} is not one of {names}")


def customer_score(request: pb.GetCustomerScoreRequest) -> None:
    if request.customer_id <= 0:
        raise InvalidArgument(
            "customer_id", f"{request.customer_id} is not a customer id"
        )


def risk_distribution(request: pb.GetRiskDistributionRequest) -> None:
    _non_negative(request.scoring_run_id, "scoring_run_id")
    if not 0 <= request.bucket_count <= 100:
        raise InvalidArgument(
            "bucket_count", f"{request.bucket_count} is out of range; use 1 to 100"
        )
    _probability(request.at_risk_threshold, "at_risk_threshold")


def evaluate(request: pb.EvaluateScoringRunRequest) -> None:
    run_id(request)  # type: ignore[arg-type]
    start = required(request, "label_start_time")
    end = required(request, "label_end_time")
    if end <= start:
        raise InvalidArgument("label_end_time", "must be after label_start_time")


def compose(request: pb.ComposeMessagesRequest) -> None:
    if not request.segments:
        raise InvalidArgument("segments", "is empty; send at least one segment")
    for index, segment in enumerate(request.segments):
        if segment.language not in ("en", "sw"):
            raise InvalidArgument(
                f"segments[{index}].language",
                f'"{segment.language}" is not "en" or "sw"',
            )
    if not 0 <= request.max_segments <= 3:
        raise InvalidArgument(
            "max_segments", f"{request.max_segments} is out of range; use 1 to 3"
        )


def job(request: pb.GetJobRequest) -> None:
    if not request.job_id:
        raise InvalidArgument("job_id", "is required")


VALIDATORS = {
    "TrainModel": train_model,
    "PromoteModel": promote_model,
    "StartScoringRun": start_scoring_run,
    "GetScoringRun": run_id,
    "ListScores": list_scores,
    "GetCustomerScore": customer_score,
    "GetRiskDistribution": risk_distribution,
    "EvaluateScoringRun": evaluate,
    "ComposeMessages": compose,
    "GetJob": job,
}
