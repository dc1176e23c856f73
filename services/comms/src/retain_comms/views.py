"""Builders of reply messages from database rows."""

from __future__ import annotations

from retain.comms.v1 import comms_pb2
from retain.type.v1 import channel_pb2
from retain.type.v1.money_pb2 import Money
from retain_runtime.money import kes
from retain_runtime.timestamps import from_datetime

from retain_comms.previews import Preview
from retain_comms.states import CampaignStatus, MessageState
from retain_comms.store import Row

_COUNT_NAMES = (
    "at_risk_count",
    "no_consent_count",
    "capped_count",
    "eligible_count",
    "treated_count",
    "held_out_count",
    "suppressed_count",
)


def campaign(row: Row, spend_micros: int, reserved_micros: int) -> comms_pb2.Campaign:
    return comms_pb2.Campaign(
        campaign_id=row.campaign_id,
        spec=comms_pb2.CampaignSpec.FromString(row.spec),
        status=CampaignStatus(row.status).to_proto(),
        counts=comms_pb2.CampaignCounts(
            **{name: getattr(row, name) for name in _COUNT_NAMES}
        ),
        spend=kes(spend_micros),
        reserved=kes(reserved_micros),
        launched_scoring_run_id=row.launched_scoring_run_id,
        created_by=row.created_by,
        approved_by=row.approved_by,
        status_reason=row.status_reason,
        create_time=from_datetime(row.create_time),
        launch_time=from_datetime(row.launch_time),
        finish_time=from_datetime(row.finish_time),
    )


def message(row: Row) -> comms_pb2.Message:
    return comms_pb2.Message(
        message_id=row.message_id,
        campaign_id=row.campaign_id,
        customer_id=row.customer_id,
        state=MessageState(row.state).to_proto(),
        channel=row.channel,
        purpose=row.purpose,
        encoding=row.encoding,
        segments=row.segments,
        estimated_cost=kes(row.estimated_cost_micros),
        cost=Money(currency_code=row.cost_currency, amount_micros=row.cost_micros),
        provider_message_id=row.provider_message_id or "",
        provider_status=row.provider_status,
        reason=row.reason,
        not_before_time=from_datetime(row.not_before_time),
        create_time=from_datetime(row.create_time),
        update_time=from_datetime(row.update_time),
        attempt_count=row.attempt_count,
    )


def alert(row: Row) -> comms_pb2.Alert:
    return comms_pb2.Alert(
        alert_id=row.alert_id,
        kind=row.kind,
        message=row.message,
        campaign_id=row.campaign_id,
        create_time=from_datetime(row.create_time),
    )


def inbound(row: Row) -> comms_pb2.InboundMessage:
    return comms_pb2.InboundMessage(
        inbound_message_id=row.inbound_message_id,
        customer_ids=row.customer_ids,
        phone_number_masked=row.phone_number_masked,
        text=row.text,
        action=row.action,
        receive_time=from_datetime(row.receive_time),
    )


def preview(item: Preview) -> comms_pb2.MessagePreview:
    return comms_pb2.MessagePreview(
        language=item.language,
        text=item.text,
        encoding=item.encoding,
        segments=item.segments,
        unit_cost=kes(item.unit_cost_micros),
        segment_key=item.segment_key,
    )


def test_message(row: Row) -> comms_pb2.Message:
    """Build a Message from a test_messages row, with no ledger id and no
    customer."""
    state = MessageState(row.state)
    # A suppressed message, or a failure without a provider status because the
    # provider was unreachable, was never handed over.
    not_sent = state == MessageState.SUPPRESSED or (
        state == MessageState.FAILED and not row.provider_status
    )
    return comms_pb2.Message(
        campaign_id=row.campaign_id,
        state=state.to_proto(),
        channel=channel_pb2.CHANNEL_SMS,
        encoding=row.encoding,
        segments=row.segments,
        estimated_cost=kes(row.estimated_cost_micros),
        cost=Money(currency_code=row.cost_currency, amount_micros=row.cost_micros),
        provider_message_id=row.provider_message_id or "",
        provider_status=row.provider_status,
        reason=row.reason,
        create_time=from_datetime(row.create_time),
        update_time=from_datetime(row.update_time),
        attempt_count=0 if not_sent else 1,
    )
