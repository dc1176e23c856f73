"""A scoring run that fails mid-way ends its forward passes before its job ends."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from inference_doubles import FakeEvents, start_fake_events, synthetic_events
from retain.inference.v1 import inference_pb2 as pb
from retain.inference.v1 import inference_pb2_grpc
from retain.type.v1 import job_pb2
from retain_inference import runs, server
from retain_inference.settings import InferenceSettings
from retain_runtime.certs import CertPaths
from retain_runtime.credentials import aio_channel
from retain_runtime.server import RunningServer
from retain_runtime.timestamps import from_datetime
from test_service import LABEL_END, train


class FailingEvents(FakeEvents):
    """Serves packed pages, and aborts the sixth request with UNAVAILABLE."""

    def __init__(self) -> None:
        super().__init__(synthetic_events())
        self.packed_calls = 0

    async def ListSequences(self, request, context):
        if request.packed:
            self.packed_calls += 1
            if self.packed_calls == 6:
                await context.abort(grpc.StatusCode.UNAVAILABLE, "events went away")
        return await super().ListSequences(request, context)


@pytest.fixture
async def events_server(cert_dir: Path) -> AsyncIterator[RunningServer]:
    running = await start_fake_events(cert_dir, FailingEvents())
    yield running
    await running.stop(0)


@pytest.fixture
async def inference(
    events_server: RunningServer, cert_dir: Path, database_url: str
) -> AsyncIterator[inference_pb2_grpc.InferenceServiceStub]:
    settings = InferenceSettings.from_env(
        {
            "RETAIN_INFERENCE_PORT": "0",
            "RETAIN_INFERENCE_DATABASE_URL": database_url,
            "RETAIN_CERT_DIR": str(cert_dir),
            "RETAIN_EVENTS_TARGET": f"127.0.0.1:{events_server.port}",
            "RETAIN_SCORE_PAGE_SIZE": "20",
            "RETAIN_TORCH_THREADS": "1",
            "RETAIN_FORWARD_WORKERS": "4",
        }
    )
    server.prepare_database(database_url)
    service = await server.start(settings)
    channel = aio_channel(
        f"127.0.0.1:{service.port}", CertPaths.in_directory(cert_dir, "operator")
    )
    yield inference_pb2_grpc.InferenceServiceStub(channel)
    await channel.close()
    await service.stop(0)


async def test_failed_run_leaves_no_forward_running(
    inference, monkeypatch: pytest.MonkeyPatch
) -> None:
    await train(inference, seed=2)  # reads its sequences unpacked
    running = []
    original = runs.predict

    def slow_predict(*args, **kwargs):
        running.append(threading.current_thread().name)
        try:
            time.sleep(0.3)
            return original(*args, **kwargs)
        finally:
            running.remove(threading.current_thread().name)

    monkeypatch.setattr(runs, "predict", slow_predict)
    reply = await inference.StartScoringRun(
        pb.StartScoringRunRequest(as_of_time=from_datetime(LABEL_END)), timeout=10
    )
    job = reply.scoring_run.job
    for _ in range(600):
        job = (
            await inference.GetJob(pb.GetJobRequest(job_id=job.job_id), timeout=5)
        ).job
        if job.state == job_pb2.JOB_STATE_FAILED:
            break
        await asyncio.sleep(0.02)

    assert job.state == job_pb2.JOB_STATE_FAILED
    assert running == []
    assert job.message == (
        "a call to another service failed: UNAVAILABLE: events went away"
    )
