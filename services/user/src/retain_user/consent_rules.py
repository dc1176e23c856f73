"""Who may receive a message on a channel for a purpose: the one rule.

A customer may receive a message on channel C for purpose P when both hold:

1. The customer's phone number has not opted out of C. An opt-out applies to
   the number, so it covers every customer who shares it, and it blocks every
   purpose, service messages included.
2. For PURPOSE_MARKETING, the latest consent ledger row for (C, marketing)
   grants consent, and with no row there is no consent (opt-in). For
   PURPOSE_SERVICE, the latest row for (C, service) is not a withdrawal, and
   with no row the message is allowed. Service messages, such as a refill or
   appointment reminder, need no opt-in but honour a withdrawal.

"Latest" is the row with the greatest (occur_time, consent_event_id), which
the consent_state table holds. An opt-out also appends a marketing withdrawal
per customer and channel to the ledger, and an opt-in appends a marketing
grant, so the ledger shows both.
"""

from __future__ import annotations

import sqlalchemy as sa
from retain.type.v1 import channel_pb2

from retain_user.tables import consent_state, customers, opt_outs

ALL_CHANNELS = (
    channel_pb2.CHANNEL_SMS,
    channel_pb2.CHANNEL_USSD,
    channel_pb2.CHANNEL_VOICE,
)


def state_join(channel: int, purpose: int) -> sa.ColumnElement[bool]:
    """Return the ON clause that outer-joins consent_state to customers."""
    return sa.and_(
        consent_state.c.customer_id == customers.c.customer_id,
        consent_state.c.channel == channel,
        consent_state.c.purpose == purpose,
    )


def permitted(channel: int, purpose: int) -> sa.ColumnElement[bool]:
    """Return the WHERE clause of the rule above over customers and consent_state.

    The query must outer-join consent_state with ``state_join``.
    """
    opted_out = sa.exists().where(
        opt_outs.c.phone_hash == customers.c.phone_hash,
        opt_outs.c.channel == channel,
        opt_outs.c.opted_out,
    )
    if purpose == channel_pb2.PURPOSE_MARKETING:
        consented = consent_state.c.granted.is_(True)
    else:
        consented = consent_state.c.granted.is_not(False)
    return sa.and_(~opted_out, consented)
