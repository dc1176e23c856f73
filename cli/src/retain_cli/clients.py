"""Blocking gRPC stubs for the CLI, which calls the services as "operator"."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import grpc
from retain.comms.v1 import comms_pb2_grpc
from retain.events.v1 import events_pb2_grpc
from retain.inference.v1 import inference_pb2, inference_pb2_grpc
from retain.type.v1 import job_pb2
from retain.user.v1 import user_pb2_grpc

from retain_runtime.certs import CertPaths
from retain_runtime.credentials import sync_channel


@dataclass
class Clients:
    """One stub per service over mTLS channels with the operator certificate."""

    user: user_pb2_grpc.UserServiceStub
    events: events_pb2_grpc.EventsServiceStub
    inference: inference_pb2_grpc.InferenceServiceStub
    comms: comms_pb2_grpc.CommsServiceStub
    channels: list[grpc.Channel]

    @classmethod
    def connect(cls, env: Mapping[str, str]) -> Clients:
        paths = CertPaths.in_directory(Path(env["RETAIN_CERT_DIR"]), "operator")
        channels = {
            name: sync_channel(env[f"RETAIN_{name.upper()}_TARGET"], paths)
            for name in ("user", "events", "inference", "comms")
        }
        return cls(
            user=user_pb2_grpc.UserServiceStub(channels["user"]),
            events=events_pb2_grpc.EventsServiceStub(channels["events"]),
            inference=inference_pb2_grpc.InferenceServiceStub(channels["inference"]),
            comms=comms_pb2_grpc.CommsServiceStub(channels["comms"]),
            channels=list(channels.values()),
        )

    def close(self) -> None:
        for channel in self.channels:
            channel.close()


def wait_for_job(
    clients: Clients,
    job: job_pb2.Job,
    timeout: float,
    on_progress: Callable[[job_pb2.Job], None] | None = None,
) -> job_pb2.Job:
    """Poll an inference job until it ends; raise if it failed or timed out."""
    deadline = time.monotonic() + timeout
    finished = (job_pb2.JOB_STATE_SUCCEEDED, job_pb2.JOB_STATE_FAILED, job_pb2.JOB_STATE_CANCELLED)
    while job.state not in finished:
        if time.monotonic() > deadline:
            raise TimeoutError(f"job {job.job_id} ({job.kind}) did not finish in {timeout:.0f}s")
        time.sleep(0.2)
        job = clients.inference.GetJob(inference_pb2.GetJobRequest(job_id=job.job_id), timeout=10).job
        if on_progress:
            on_progress(job)
    if job.state != job_pb2.JOB_STATE_SUCCEEDED:
        raise RuntimeError(f"job {job.job_id} ({job.kind}) ended in {job_pb2.JobState.Name(job.state)}: {job.message}")
    return job
