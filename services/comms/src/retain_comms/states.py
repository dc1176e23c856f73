"""The states of campaigns and messages, and the moves the ledger allows.

The values stored in the database are the proto enum names without their
prefix, in lower case, so a row stores "submitted" where the API returns
MESSAGE_STATE_SUBMITTED.
"""

from __future__ import annotations

import enum

from retain.comms.v1 import comms_pb2


class CampaignStatus(enum.StrEnum):
    DRAFT = "draft"
    AWAITING_APPROVAL = "awaiting_approval"
    APPROVED = "approved"
    RUNNING = "running"
    PAUSED = "paused"
    FINISHED = "finished"

    def to_proto(self) -> int:
        return comms_pb2.CampaignStatus.Value(f"CAMPAIGN_STATUS_{self.name}")


class MessageState(enum.StrEnum):
    PENDING = "pending"
    DEFERRED = "deferred"
    SUPPRESSED = "suppressed"
    SENDING = "sending"
    SUBMITTED = "submitted"
    DELIVERED = "delivered"
    FAILED = "failed"
    DROPPED = "dropped"
    DELIVERY_UNKNOWN = "delivery_unknown"

    def to_proto(self) -> int:
        return comms_pb2.MessageState.Value(f"MESSAGE_STATE_{self.name}")

    @classmethod
    def from_proto(cls, value: int) -> MessageState:
        name = comms_pb2.MessageState.Name(value).removeprefix("MESSAGE_STATE_")
        return cls[name]


FINAL_STATES = frozenset(
    {
        MessageState.SUPPRESSED,
        MessageState.DELIVERED,
        MessageState.FAILED,
        MessageState.DROPPED,
        MessageState.DELIVERY_UNKNOWN,
    }
)

# States a message may move to, by the state it is in. A final state has no
# entry, so nothing ever overwrites it. SENDING goes back to PENDING only when
# nothing reached the provider. SUBMITTED to SUBMITTED records an intermediate
# delivery report.
ALLOWED_MOVES: dict[MessageState, frozenset[MessageState]] = {
    MessageState.PENDING: frozenset(
        {
            MessageState.DEFERRED,
            MessageState.SENDING,
            MessageState.SUPPRESSED,
            MessageState.DROPPED,
        }
    ),
    MessageState.DEFERRED: frozenset(
        {MessageState.PENDING, MessageState.SUPPRESSED, MessageState.DROPPED}
    ),
    MessageState.SENDING: frozenset(
        {
            MessageState.PENDING,
            MessageState.SUBMITTED,
            MessageState.FAILED,
            MessageState.SUPPRESSED,
            MessageState.DELIVERY_UNKNOWN,
        }
    ),
    MessageState.SUBMITTED: frozenset(
        {
            MessageState.SUBMITTED,
            MessageState.DELIVERED,
            MessageState.FAILED,
            MessageState.DELIVERY_UNKNOWN,
        }
    ),
}


def sources_of(target: MessageState) -> list[MessageState]:
    """Return the states from which a message may move to target."""
    return [state for state, moves in ALLOWED_MOVES.items() if target in moves]


# States that count towards the frequency cap: messages that went out, may
# have gone out, or are about to go out.
CAPPED_STATES = (
    MessageState.PENDING,
    MessageState.DEFERRED,
    MessageState.SENDING,
    MessageState.SUBMITTED,
    MessageState.DELIVERED,
    MessageState.DELIVERY_UNKNOWN,
)

# States that still hold a reservation against the campaign's budget.
RESERVED_STATES = (MessageState.PENDING, MessageState.DEFERRED, MessageState.SENDING)
