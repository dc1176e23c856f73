"""InferenceService end to end: train, promote, score, evaluate, over real mTLS gRPC.

The events service is replaced by a small test double that serves synthetic
sequences, so these tests exercise the inference side alone; the demo test
runs the real events service.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import numpy as np
import pytest
from inference_doubles import FakeEvents, start_fake_events, synthetic_events
from retain.inference.v1 import inference_pb2 as pb
from retain.inference.v1 import inference_pb2_grpc
from retain.type.v1 import job_pb2
from retain_inference import scoring, server
from retain_inference.checkpoint import checkpoint_from_bytes
from retain_inference.sequences import CustomerSequence
from retain_inference.settings import InferenceSettings
from retain_inference.store import Store
from retain_runtime.certs import CertPaths
from retain_runtime.credentials import aio_channel
from retain_runtime.server import RunningServer
from retain_runtime.timestamps import from_datetime

UTC = dt.UTC
CUTOFF = dt.datetime(2024, 4, 1, tzinfo=UTC)
LABEL_END = dt.datetime(2024, 5, 1, tzinfo=UTC)
DAY = 86_400


@pytest.fixture(scope="module")
async def events_server(cert_dir: Path) -> AsyncIterator[RunningServer]:
    running = await start_fake_events(cert_dir, FakeEvents(synthetic_events()))
    yield running
    await running.stop(0)


@pytest.fixture(scope="module")
async def inference_service(
    events_server: RunningServer, cert_dir: Path, postgres
) -> AsyncIterator[server.InferenceService]:
    url = postgres.url("test_inference_service")
    settings = InferenceSettings.from_env(
        {
            "RETAIN_INFERENCE_PORT": "0",
            "RETAIN_INFERENCE_DATABASE_URL": url,
            "RETAIN_CERT_DIR": str(cert_dir),
            "RETAIN_EVENTS_TARGET": f"127.0.0.1:{events_server.port}",
            "RETAIN_SCORE_PAGE_SIZE": "50",
            "RETAIN_TORCH_THREADS": "1",
            # Pages of 50 of 240 customers keep three forwards busy at once.
            "RETAIN_FORWARD_WORKERS": "3",
        }
    )
    server.prepare_database(url)
    service = await server.start(settings)
    yield service
    await service.stop(0)


@pytest.fixture(scope="module")
async def inference(
    inference_service: server.InferenceService, cert_dir: Path
) -> AsyncIterator[inference_pb2_grpc.InferenceServiceStub]:
    paths = CertPaths.in_directory(cert_dir, "operator")
    channel = aio_channel(f"127.0.0.1:{inference_service.port}", paths)
    yield inference_pb2_grpc.InferenceServiceStub(channel)
    await channel.close()


async def wait_for(stub, job: job_pb2.Job) -> job_pb2.Job:
    for _ in range(600):
        if job.state in (job_pb2.JOB_STATE_SUCCEEDED, job_pb2.JOB_STATE_FAILED):
            return job
        await asyncio.sleep(0.1)
        job = (await stub.GetJob(pb.GetJobRequest(job_id=job.job_id), timeout=5)).job
    raise AssertionError(f"job {job.job_id} did not finish: {job}")


async def train(stub, seed: int, promote: bool = True) -> str:
    reply = await stub.TrainModel(
        pb.TrainModelRequest(
            cutoff_time=from_datetime(CUTOFF),
            label_end_time=from_datetime(LABEL_END),
            seed=seed,
            promote=promote,
        ),
        timeout=10,
    )
    job = await wait_for(stub, reply.job)
    assert job.state == job_pb2.JOB_STATE_SUCCEEDED, job.message
    return job.result_id


async def score(stub, as_of: dt.datetime = LABEL_END) -> pb.ScoringRun:
    reply = await stub.StartScoringRun(
        pb.StartScoringRunRequest(as_of_time=from_datetime(as_of)), timeout=10
    )
    job = await wait_for(stub, reply.scoring_run.job)
    assert job.state == job_pb2.JOB_STATE_SUCCEEDED, job.message
    return (
        await stub.GetScoringRun(
            pb.GetScoringRunRequest(scoring_run_id=reply.scoring_run.scoring_run_id),
            timeout=5,
        )
    ).scoring_run


async def all_scores(
    stub, run_id: int, threshold: float = 0.0, order: int = 0
) -> list[pb.Score]:
    scores, token = [], ""
    while True:
        reply = await stub.ListScores(
            pb.ListScoresRequest(
                scoring_run_id=run_id,
                min_churn_probability=threshold,
                page_size=70,
                page_token=token,
                order=order,
            ),
            timeout=10,
        )
        scores.extend(reply.scores)
        token = reply.next_page_token
        if not token:
            return scores


async def test_trained_model_scores_every_customer(inference) -> None:
    version = await train(inference, seed=1)
    run = await score(inference)
    scores = await all_scores(inference, run.scoring_run_id)
    assert run.model_version == version
    assert run.scored_count == 240
    assert len({s.customer_id for s in scores}) == 240
    assert all(0.0 <= s.churn_probability <= 1.0 for s in scores)
    assert all(s.model_version == version for s in scores)
    assert all(s.horizon_days == 30 for s in scores)
    assert all(s.expected_days_to_next_activity > 0 for s in scores)


async def test_run_scores_equal_direct_scores(
    inference, inference_service: server.InferenceService
) -> None:
    version = await train(inference, seed=4)
    run = await score(inference)
    served = {
        s.customer_id: s.churn_probability
        for s in await all_scores(inference, run.scoring_run_id)
    }
    checkpoint = await Store(inference_service.engine).checkpoint(version)
    # scoring.score leaves out the events at or after LABEL_END itself.
    sequences = []
    for customer_id, rows in synthetic_events().items():
        times, amounts = np.array(rows).T
        types = np.ones(len(rows), np.int32)
        sequences.append(CustomerSequence(customer_id, times, types, amounts))

    direct = scoring.score(checkpoint_from_bytes(checkpoint), sequences, LABEL_END)

    ids = direct.customer_ids.tolist()
    expected = dict(zip(ids, direct.churn_probability.tolist(), strict=True))
    assert served.keys() == expected.keys()
    assert served == pytest.approx(expected, rel=1e-5, abs=1e-9)


async def test_threshold_keeps_only_risky_scores(inference) -> None:
    run = await score(inference)
    risky = await all_scores(inference, run.scoring_run_id, threshold=0.5)
    everyone = await all_scores(inference, run.scoring_run_id)
    assert all(s.churn_probability >= 0.5 for s in risky)
    assert len(risky) == sum(1 for s in everyone if s.churn_probability >= 0.5)


async def test_churners_rank_above_loyal_customers(inference) -> None:
    run = await score(inference)
    reply = await inference.EvaluateScoringRun(
        pb.EvaluateScoringRunRequest(
            scoring_run_id=run.scoring_run_id,
            label_start_time=from_datetime(LABEL_END),
            label_end_time=from_datetime(dt.datetime(2024, 6, 1, tzinfo=UTC)),
        ),
        timeout=30,
    )
    assert reply.customer_count == 240
    assert reply.churned_count == 80
    assert reply.roc_auc > 0.9


async def test_scores_carry_reasons_for_lapsed_customers(inference) -> None:
    run = await score(inference)
    scores = {s.customer_id: s for s in await all_scores(inference, run.scoring_run_id)}
    lapsed = scores[3]  # every third customer stopped buying early
    assert lapsed.reasons
    assert all(reason.text for reason in lapsed.reasons)


async def test_promote_and_rollback_change_scoring_model(inference) -> None:
    first = await train(inference, seed=11)
    second = await train(inference, seed=12)
    assert (await score(inference)).model_version == second
    rolled = await inference.RollbackModel(pb.RollbackModelRequest(), timeout=5)
    assert rolled.model.model_version == first
    assert (await score(inference)).model_version == first
    await inference.PromoteModel(
        pb.PromoteModelRequest(model_version=second), timeout=5
    )
    assert (await score(inference)).model_version == second


async def test_same_seed_gives_same_scores(inference) -> None:
    runs = []
    for _ in range(2):
        await train(inference, seed=5)
        run = await score(inference)
        runs.append(
            [
                s.churn_probability
                for s in await all_scores(inference, run.scoring_run_id)
            ]
        )
    assert runs[0] == runs[1]


async def test_unknown_model_version_is_not_found(inference) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await inference.PromoteModel(
            pb.PromoteModelRequest(model_version="gru-nope"), timeout=5
        )
    assert caught.value.code() is grpc.StatusCode.NOT_FOUND


async def test_label_window_before_cutoff_is_invalid(inference) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await inference.TrainModel(
            pb.TrainModelRequest(
                cutoff_time=from_datetime(LABEL_END),
                label_end_time=from_datetime(CUTOFF),
            ),
            timeout=5,
        )
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "label_end_time" in (caught.value.details() or "")


async def test_stranger_may_not_score(inference_service, cert_dir: Path) -> None:
    paths = CertPaths.in_directory(cert_dir, "stranger")
    channel = aio_channel(f"127.0.0.1:{inference_service.port}", paths)
    stub = inference_pb2_grpc.InferenceServiceStub(channel)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.StartScoringRun(pb.StartScoringRunRequest(), timeout=5)
    await channel.close()
    assert caught.value.code() is grpc.StatusCode.PERMISSION_DENIED


async def test_compose_writes_one_template_per_segment(inference) -> None:
    request = pb.ComposeMessagesRequest(
        segments=[
            pb.Segment(
                segment_key="en", language="en", reason_codes=["NO_ACTIVITY_SINCE"]
            ),
            pb.Segment(segment_key="sw", language="sw", reason_codes=[]),
        ],
        channel=1,
        purpose=1,
        offer="20% off your next ride",
        brand_name="SafiriRide",
    )
    reply = await inference.ComposeMessages(request, timeout=10)
    assert [t.segment_key for t in reply.templates] == ["en", "sw"]
    assert all(t.writer == "template" for t in reply.templates)
    assert all(t.segments == 1 for t in reply.templates)
    assert all(t.encoding == pb.ENCODING_GSM_7 for t in reply.templates)
    assert "{first_name}" in reply.templates[0].text


async def test_scores_list_in_probability_order_across_pages(inference) -> None:
    await train(inference, seed=1)
    run = await score(inference)
    by_id = await all_scores(inference, run.scoring_run_id)
    highest = await all_scores(
        inference, run.scoring_run_id, order=pb.SCORE_ORDER_CHURN_PROBABILITY_DESC
    )
    lowest = await all_scores(
        inference, run.scoring_run_id, order=pb.SCORE_ORDER_CHURN_PROBABILITY_ASC
    )

    def key(s: pb.Score) -> tuple[float, int]:
        return (s.churn_probability, s.customer_id)

    assert [s.customer_id for s in by_id] == sorted(s.customer_id for s in by_id)
    assert [key(s) for s in lowest] == sorted(key(s) for s in by_id)
    assert [s.churn_probability for s in highest] == sorted(
        (s.churn_probability for s in by_id), reverse=True
    )
    assert len({s.customer_id for s in highest}) == len(by_id) == 240


async def test_score_page_token_of_another_order_is_rejected(inference) -> None:
    await train(inference, seed=1)
    run = await score(inference)
    first = await inference.ListScores(
        pb.ListScoresRequest(scoring_run_id=run.scoring_run_id, page_size=10),
        timeout=10,
    )

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await inference.ListScores(
            pb.ListScoresRequest(
                scoring_run_id=run.scoring_run_id,
                page_size=10,
                page_token=first.next_page_token,
                order=pb.SCORE_ORDER_CHURN_PROBABILITY_DESC,
            ),
            timeout=10,
        )
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "page_token" in caught.value.details()
