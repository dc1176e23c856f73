"""The comms database: campaigns, assignments, the message ledger, delivery
reports, alerts, inbound messages, test messages and the global stop.

The migrations in migrations/versions create the same tables; these
definitions are what the queries use. Times are timestamptz in UTC, money
is integer micros of KES.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

metadata = sa.MetaData()

_now = sa.DateTime(timezone=True)

campaigns = sa.Table(
    "campaigns",
    metadata,
    sa.Column("campaign_id", sa.BigInteger, primary_key=True),
    sa.Column("name", sa.Text, nullable=False),
    # spec is the serialised CampaignSpec with defaults applied.
    sa.Column("spec", sa.LargeBinary, nullable=False),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("status_reason", sa.Text, nullable=False, server_default=""),
    sa.Column("created_by", sa.Text, nullable=False),
    sa.Column("created_by_subject", sa.Text, nullable=False, server_default=""),
    sa.Column("approved_by", sa.Text, nullable=False, server_default=""),
    sa.Column("launched_scoring_run_id", sa.BigInteger, nullable=False, default=0),
    sa.Column("at_risk_count", sa.BigInteger, nullable=False, default=0),
    sa.Column("no_consent_count", sa.BigInteger, nullable=False, default=0),
    sa.Column("capped_count", sa.BigInteger, nullable=False, default=0),
    sa.Column("eligible_count", sa.BigInteger, nullable=False, default=0),
    sa.Column("treated_count", sa.BigInteger, nullable=False, default=0),
    sa.Column("held_out_count", sa.BigInteger, nullable=False, default=0),
    sa.Column("suppressed_count", sa.BigInteger, nullable=False, default=0),
    sa.Column("create_time", _now, nullable=False),
    sa.Column("update_time", _now, nullable=False),
    sa.Column("launch_time", _now),
    sa.Column("finish_time", _now),
)

assignments = sa.Table(
    "assignments",
    metadata,
    sa.Column("campaign_id", sa.BigInteger, primary_key=True),
    sa.Column("customer_id", sa.BigInteger, primary_key=True),
    # arm is "treatment", "control" or "dropped".
    sa.Column("arm", sa.Text, nullable=False),
    # drop_reason is "no_consent" or "capped" for a dropped customer.
    sa.Column("drop_reason", sa.Text, nullable=False, server_default=""),
    sa.Column("churn_probability", sa.Float, nullable=False),
)

messages = sa.Table(
    "messages",
    metadata,
    sa.Column("message_id", sa.BigInteger, primary_key=True),
    sa.Column("campaign_id", sa.BigInteger, nullable=False),
    sa.Column("customer_id", sa.BigInteger, nullable=False),
    sa.Column("state", sa.Text, nullable=False),
    sa.Column("channel", sa.SmallInteger, nullable=False),
    sa.Column("purpose", sa.SmallInteger, nullable=False),
    sa.Column("language", sa.Text, nullable=False),
    # template is the text with slots such as {first_name}, filled at send.
    sa.Column("template", sa.Text, nullable=False),
    sa.Column("encoding", sa.SmallInteger, nullable=False),
    sa.Column("segments", sa.Integer, nullable=False),
    sa.Column("estimated_cost_micros", sa.BigInteger, nullable=False),
    sa.Column("cost_micros", sa.BigInteger, nullable=False, default=0),
    sa.Column("cost_currency", sa.Text, nullable=False, default="KES"),
    sa.Column("provider_message_id", sa.Text),
    sa.Column("provider_status", sa.Text, nullable=False, default=""),
    sa.Column("reason", sa.Text, nullable=False, default=""),
    sa.Column("not_before_time", _now),
    # expire_time is when an unsent message is dropped: launch + max_age_hours.
    sa.Column("expire_time", _now, nullable=False),
    sa.Column("attempt_count", sa.Integer, nullable=False, default=0),
    sa.Column("create_time", _now, nullable=False),
    sa.Column("update_time", _now, nullable=False),
    # submit_time is when the provider took the message.
    sa.Column("submit_time", _now),
    sa.UniqueConstraint("campaign_id", "customer_id"),
)

delivery_reports = sa.Table(
    "delivery_reports",
    metadata,
    sa.Column("report_id", sa.BigInteger, primary_key=True),
    sa.Column("provider_message_id", sa.Text, nullable=False),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("failure_reason", sa.Text, nullable=False),
    # body is the form as received, with the phone number masked.
    sa.Column("body", sa.Text, nullable=False),
    # applied is false while no message carries provider_message_id yet.
    sa.Column("applied", sa.Boolean, nullable=False),
    sa.Column("receive_time", _now, nullable=False),
    # cost_micros is the price a voice call's final callback states; 0 for
    # SMS reports, whose cost the send reply carries.
    sa.Column("cost_micros", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("cost_currency", sa.Text, nullable=False, server_default=""),
)

alerts = sa.Table(
    "alerts",
    metadata,
    sa.Column("alert_id", sa.BigInteger, primary_key=True),
    sa.Column("kind", sa.Text, nullable=False),
    sa.Column("message", sa.Text, nullable=False),
    sa.Column("campaign_id", sa.BigInteger, nullable=False, default=0),
    sa.Column("create_time", _now, nullable=False),
)

inbound_messages = sa.Table(
    "inbound_messages",
    metadata,
    sa.Column("inbound_message_id", sa.BigInteger, primary_key=True),
    # provider_id is Africa's Talking's id of the inbound message.
    sa.Column("provider_id", sa.Text, unique=True),
    sa.Column("customer_ids", postgresql.ARRAY(sa.BigInteger), nullable=False),
    sa.Column("phone_number_masked", sa.Text, nullable=False),
    sa.Column("text", sa.Text, nullable=False),
    sa.Column("action", sa.Text, nullable=False),
    sa.Column("receive_time", _now, nullable=False),
)

# test_messages are previews an admin sent to their own phone. They stay out
# of messages, so no campaign count, spend or frequency cap includes them.
test_messages = sa.Table(
    "test_messages",
    metadata,
    sa.Column("test_message_id", sa.BigInteger, primary_key=True),
    sa.Column("campaign_id", sa.BigInteger, nullable=False),
    # admin_email is the subject of the admin who requested the test.
    sa.Column("admin_email", sa.Text, nullable=False),
    sa.Column("phone_number_masked", sa.Text, nullable=False),
    sa.Column("language", sa.Text, nullable=False),
    sa.Column("segment_key", sa.Text, nullable=False),
    # text is the template filled with the sample first name, as sent.
    sa.Column("text", sa.Text, nullable=False),
    sa.Column("encoding", sa.SmallInteger, nullable=False),
    sa.Column("segments", sa.Integer, nullable=False),
    sa.Column("estimated_cost_micros", sa.BigInteger, nullable=False),
    sa.Column("state", sa.Text, nullable=False),
    sa.Column("provider_message_id", sa.Text),
    sa.Column("provider_status", sa.Text, nullable=False, default=""),
    sa.Column("cost_micros", sa.BigInteger, nullable=False, default=0),
    sa.Column("cost_currency", sa.Text, nullable=False, default="KES"),
    sa.Column("reason", sa.Text, nullable=False, default=""),
    sa.Column("create_time", _now, nullable=False),
    sa.Column("update_time", _now, nullable=False),
)

# control has exactly one row, id 1: the global stop.
control = sa.Table(
    "control",
    metadata,
    sa.Column("id", sa.SmallInteger, primary_key=True),
    sa.Column("stopped", sa.Boolean, nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("update_time", _now, nullable=False),
)
