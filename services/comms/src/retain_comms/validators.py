"""Request checks, run once by the interceptor before each RPC.

Each raises InvalidArgument naming the field path and the fix. The callbacks
have no validator: they check their secret before reading anything else.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from retain.comms.v1 import comms_pb2
from retain.type.v1 import channel_pb2
from retain_runtime.errors import InvalidArgument
from retain_runtime.interceptor import Validator
from retain_runtime.money import KES
from retain_runtime.paging import decode_token, page_size

MAX_NAME = 120
MAX_TEXT = 160
MAX_REASON = 200
MAX_PAGE = 1000
LANGUAGES = ("en", "sw")


def _range(value: float, low: float, high: float, field: str) -> None:
    if not low <= value <= high:
        raise InvalidArgument(field, f"{value} is out of range; use {low} to {high}")


def _campaign_id(request: Any) -> None:
    if request.campaign_id <= 0:
        raise InvalidArgument(
            "campaign_id",
            f"{request.campaign_id} is not a campaign id; use a positive id",
        )


def _paging(request: Any) -> None:
    page_size(request.page_size, maximum=MAX_PAGE)
    decode_token(request.page_token)


def validate_spec(spec: comms_pb2.CampaignSpec, path: str = "spec") -> None:
    """Check every field of a CampaignSpec against the ranges in comms.proto."""
    if not 1 <= len(spec.name.strip()) <= MAX_NAME:
        raise InvalidArgument(f"{path}.name", f"must be 1 to {MAX_NAME} characters")
    if spec.scoring_run_id < 0:
        raise InvalidArgument(
            f"{path}.scoring_run_id", "use a run id, or 0 for the latest"
        )
    _range(spec.min_churn_probability, 0.0, 1.0, f"{path}.min_churn_probability")
    _range(spec.holdout_share, 0.0, 0.5, f"{path}.holdout_share")
    _validate_budget(spec, path)

    if spec.channel not in (channel_pb2.CHANNEL_SMS, channel_pb2.CHANNEL_VOICE):
        raise InvalidArgument(
            f"{path}.channel",
            "only CHANNEL_SMS and CHANNEL_VOICE campaigns are supported",
        )
    if spec.purpose == channel_pb2.PURPOSE_UNSPECIFIED:
        raise InvalidArgument(
            f"{path}.purpose", "is required; use MARKETING or SERVICE"
        )

    if spec.HasField("send_window"):
        _validate_window(spec.send_window, f"{path}.send_window")
    if spec.HasField("frequency_cap"):
        _validate_cap(spec.frequency_cap, f"{path}.frequency_cap")

    _range(spec.max_segments, 0, 3, f"{path}.max_segments")
    _range(spec.max_age_hours, 0, 24 * 14, f"{path}.max_age_hours")
    if spec.max_customers < 0:
        raise InvalidArgument(
            f"{path}.max_customers", "use 0 for no cap or a positive count"
        )
    if len(spec.offer) > MAX_TEXT:
        raise InvalidArgument(f"{path}.offer", f"must be at most {MAX_TEXT} characters")
    if len(spec.brand_name) > 40:
        raise InvalidArgument(f"{path}.brand_name", "must be at most 40 characters")


def _validate_budget(spec: comms_pb2.CampaignSpec, path: str) -> None:
    if not spec.HasField("budget"):
        raise InvalidArgument(f"{path}.budget", "is required, in KES")
    if spec.budget.currency_code != KES:
        raise InvalidArgument(
            f"{path}.budget.currency_code",
            f'"{spec.budget.currency_code}" is not supported; use "KES"',
        )
    if spec.budget.amount_micros <= 0:
        raise InvalidArgument(f"{path}.budget.amount_micros", "must be greater than 0")


def _validate_window(send_window: comms_pb2.SendWindow, path: str) -> None:
    _range(send_window.start_minute, 0, 1439, f"{path}.start_minute")
    _range(send_window.end_minute, 1, 1440, f"{path}.end_minute")
    if send_window.start_minute == send_window.end_minute % 1440:
        raise InvalidArgument(path, "start_minute and end_minute must differ")


def _validate_cap(cap: comms_pb2.FrequencyCap, path: str) -> None:
    if cap.max_messages < 0:
        raise InvalidArgument(
            f"{path}.max_messages", "use 0 for no cap or a positive count"
        )
    if cap.max_messages > 0:
        _range(cap.period_days, 1, 365, f"{path}.period_days")


def _create(request: comms_pb2.CreateCampaignRequest) -> None:
    if not request.HasField("spec"):
        raise InvalidArgument("spec", "is required")
    validate_spec(request.spec)


def _dry_run(request: comms_pb2.DryRunCampaignRequest) -> None:
    _campaign_id(request)
    _range(request.sample_size, 0, 100, "sample_size")


def _send_test(request: comms_pb2.SendTestMessageRequest) -> None:
    _campaign_id(request)
    if request.language not in LANGUAGES:
        raise InvalidArgument(
            "language", f'"{request.language[:20]}" is not supported; use "en" or "sw"'
        )


def _pause(request: comms_pb2.PauseCampaignRequest) -> None:
    _campaign_id(request)
    if len(request.reason) > MAX_REASON:
        raise InvalidArgument("reason", f"must be at most {MAX_REASON} characters")


def _stop_all(request: comms_pb2.StopAllCampaignsRequest) -> None:
    if len(request.reason) > MAX_REASON:
        raise InvalidArgument("reason", f"must be at most {MAX_REASON} characters")


def _list_messages(request: comms_pb2.ListMessagesRequest) -> None:
    _campaign_id(request)
    if request.state not in comms_pb2.MessageState.values():
        raise InvalidArgument("state", f"{request.state} is not a MessageState")
    _paging(request)


def _results(request: comms_pb2.GetCampaignResultsRequest) -> None:
    _campaign_id(request)
    both = request.HasField("start_time") and request.HasField("end_time")
    if both and request.end_time.ToDatetime() <= request.start_time.ToDatetime():
        raise InvalidArgument("end_time", "must be after start_time")


_BY_ID: Callable[[Any], None] = _campaign_id

VALIDATORS: dict[str, Validator] = {
    "CreateCampaign": _create,
    "GetCampaign": _BY_ID,
    "ListCampaigns": _paging,
    "DryRunCampaign": _dry_run,
    "PreviewMessages": _BY_ID,
    "SendTestMessage": _send_test,
    "SubmitCampaign": _BY_ID,
    "ApproveCampaign": _BY_ID,
    "LaunchCampaign": _BY_ID,
    "PauseCampaign": _pause,
    "ResumeCampaign": _BY_ID,
    "StopAllCampaigns": _stop_all,
    "ListMessages": _list_messages,
    "GetMessageStats": _BY_ID,
    "GetCampaignResults": _results,
    "ListAlerts": _paging,
    "ListInboundMessages": _paging,
}
