"""InferenceService RPCs: call the domain and build the reply."""

from __future__ import annotations

import json
from typing import Any

from retain.inference.v1 import inference_pb2 as pb
from retain.inference.v1 import inference_pb2_grpc

from retain_inference.composer import Composer
from retain_inference.jobs import JobRunner, to_proto
from retain_inference.registry import Registry
from retain_inference.runs import ScoringRuns
from retain_inference.store import ModelRecord, Store
from retain_runtime.callers import current_caller
from retain_runtime.clock import Clock
from retain_runtime.errors import InvalidArgument
from retain_runtime.paging import decode_position, decode_token, encode_token, page_size
from retain_runtime.timestamps import from_datetime, to_datetime

PROBABILITY_ORDERS = (
    pb.SCORE_ORDER_CHURN_PROBABILITY_DESC,
    pb.SCORE_ORDER_CHURN_PROBABILITY_ASC,
)


class InferenceServicer(inference_pb2_grpc.InferenceServiceServicer):
    def __init__(
        self,
        store: Store,
        registry: Registry,
        runs: ScoringRuns,
        jobs: JobRunner,
        clock: Clock,
        compose: Composer,
    ) -> None:
        self.store = store
        self.registry = registry
        self.runs = runs
        self.jobs = jobs
        self.clock = clock
        self.compose = compose

    async def TrainModel(self, request, context):  # noqa: N802
        cutoff = to_datetime(request.cutoff_time)
        label_end = to_datetime(request.label_end_time)
        seed = request.seed or 1

        async def work(progress):
            return await self.registry.train(
                progress, cutoff, label_end, seed, request.promote
            )

        job = await self.jobs.start("train_model", work)
        return pb.TrainModelResponse(job=to_proto(job))

    async def ListModels(self, request, context):  # noqa: N802
        limit = page_size(request.page_size, default=20, maximum=100)
        after = request.page_token or None
        models = await self.store.list_models(after, limit)
        token = models[-1].model_version if len(models) == limit else ""
        return pb.ListModelsResponse(
            models=[_model(m) for m in models], next_page_token=token
        )

    async def PromoteModel(self, request, context):  # noqa: N802
        record = await self.registry.promote(request.model_version, _who())
        return pb.PromoteModelResponse(model=_model(record))

    async def RollbackModel(self, request, context):  # noqa: N802
        record = await self.registry.rollback(_who())
        return pb.RollbackModelResponse(model=_model(record))

    async def StartScoringRun(self, request, context):  # noqa: N802
        as_of = (
            to_datetime(request.as_of_time)
            if request.HasField("as_of_time")
            else self.clock.now()
        )
        run = await self.runs.start(
            as_of, request.min_customer_id, request.max_customer_id
        )
        return pb.StartScoringRunResponse(scoring_run=await self._run(run))

    async def GetScoringRun(self, request, context):  # noqa: N802
        run = await self.store.get_run(request.scoring_run_id)
        return pb.GetScoringRunResponse(scoring_run=await self._run(run))

    async def ListScoringRuns(self, request, context):  # noqa: N802
        limit = page_size(request.page_size, default=20, maximum=100)
        runs = await self.store.list_runs(decode_token(request.page_token), limit)
        token = encode_token(runs[-1]["scoring_run_id"]) if len(runs) == limit else ""
        return pb.ListScoringRunsResponse(
            scoring_runs=[await self._run(r) for r in runs], next_page_token=token
        )

    async def ListScores(self, request, context):  # noqa: N802
        run_id = request.scoring_run_id or await self.store.latest_finished_run()
        run = await self.store.get_run(run_id)
        limit = page_size(request.page_size, default=1000, maximum=10_000)
        by_probability = request.order in PROBABILITY_ORDERS
        after = decode_position(request.page_token)
        if by_probability and after is not None and after[1] is None:
            raise InvalidArgument(
                "page_token",
                "was issued for another order; start again without a token",
            )
        rows = await self.store.list_scores(
            run_id, request.min_churn_probability, after, limit, request.order
        )
        token = ""
        if len(rows) == limit:
            last = rows[-1]
            value = last["churn_probability"] if by_probability else None
            token = encode_token(last["customer_id"], value)
        horizon = await self._horizon(run["model_version"])
        return pb.ListScoresResponse(
            scores=[_score(r, run, horizon) for r in rows],
            next_page_token=token,
            scoring_run_id=run_id,
        )

    async def GetCustomerScore(self, request, context):  # noqa: N802
        row = await self.store.customer_score(request.customer_id)
        horizon = await self._horizon(row["model_version"])
        return pb.GetCustomerScoreResponse(score=_score(row, row, horizon))

    async def GetRiskDistribution(self, request, context):  # noqa: N802
        run_id = request.scoring_run_id or await self.store.latest_finished_run()
        buckets = request.bucket_count or 10
        threshold = request.at_risk_threshold or 0.5
        counts = await self.store.histogram(run_id, buckets)
        reply = pb.GetRiskDistributionResponse(
            buckets=[
                pb.RiskBucket(
                    lower=i / buckets, upper=(i + 1) / buckets, customer_count=c
                )
                for i, c in enumerate(counts)
            ]
        )
        for row in await self.store.risk_by_run(threshold, limit=30):
            reply.runs.add(
                scoring_run_id=row["scoring_run_id"],
                as_of_time=from_datetime(row["as_of_time"]),
                at_risk_count=row["at_risk"],
                scored_count=row["scored"],
            )
        return reply

    async def EvaluateScoringRun(self, request, context):  # noqa: N802
        result = await self.runs.evaluate(
            request.scoring_run_id,
            to_datetime(request.label_start_time),
            to_datetime(request.label_end_time),
        )
        return pb.EvaluateScoringRunResponse(**result)

    async def ComposeMessages(self, request, context):  # noqa: N802
        templates = await self.compose(request)
        return pb.ComposeMessagesResponse(templates=templates)

    async def GetJob(self, request, context):  # noqa: N802
        return pb.GetJobResponse(job=to_proto(await self.store.get_job(request.job_id)))

    async def _run(self, run: dict[str, Any]) -> pb.ScoringRun:
        job = await self.store.get_job(run["job_id"])
        return pb.ScoringRun(
            scoring_run_id=run["scoring_run_id"],
            model_version=run["model_version"],
            as_of_time=from_datetime(run["as_of_time"]),
            min_customer_id=run["min_customer_id"],
            max_customer_id=run["max_customer_id"],
            job=to_proto(job),
            scored_count=run["scored_count"],
        )

    async def _horizon(self, version: str) -> int:
        return (await self.store.get_model(version)).horizon_days


def _who() -> str:
    caller = current_caller.get()
    if caller is None:
        return "unknown"
    return caller.subject or caller.name


def _model(record: ModelRecord) -> pb.ModelVersion:
    return pb.ModelVersion(
        model_version=record.model_version,
        status=record.status,
        config_json=json.dumps(record.config, sort_keys=True),
        cutoff_time=from_datetime(record.cutoff_time),
        label_end_time=from_datetime(record.label_end_time),
        horizon_days=record.horizon_days,
        metrics=record.metrics,
        create_time=from_datetime(record.create_time),
        promote_time=from_datetime(record.promote_time),
    )


def _score(row: dict[str, Any], run: dict[str, Any], horizon: int) -> pb.Score:
    return pb.Score(
        customer_id=row["customer_id"],
        scoring_run_id=row["scoring_run_id"],
        model_version=row["model_version"],
        as_of_time=from_datetime(run["as_of_time"]),
        horizon_days=horizon,
        churn_probability=row["churn_probability"],
        expected_days_to_next_activity=row["expected_days"],
        reasons=[pb.Reason(**reason) for reason in row["reasons"]],
    )
