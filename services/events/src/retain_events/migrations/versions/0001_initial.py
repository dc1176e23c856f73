"""Create the event id registry and the events table.

Revision ID: 0001
Revises:
Create Date: 2025-01-01
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# event_ids holds the idempotency keys. It is its own table so that events can
# later be partitioned by month: PostgreSQL requires every unique constraint of
# a partitioned table to contain the partition key, so event_id alone could
# not stay unique across partitions.
CREATE_EVENT_IDS = """
CREATE TABLE event_ids (
    event_id text COLLATE "C" NOT NULL,
    customer_id bigint NOT NULL,
    ingest_time timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT event_ids_pkey PRIMARY KEY (event_id)
)
"""

# The primary key contains occur_time, the future partition key, and orders
# rows as ListSequences and GetCustomerActivity read them. Its INCLUDE columns
# let both queries read the index alone.
CREATE_EVENTS = """
CREATE TABLE events (
    customer_id bigint NOT NULL,
    occur_time timestamptz NOT NULL,
    event_id text COLLATE "C" NOT NULL,
    event_type smallint NOT NULL,
    amount_micros bigint NOT NULL DEFAULT 0,
    currency_code text,
    attributes jsonb NOT NULL DEFAULT '{}',
    CONSTRAINT events_pkey PRIMARY KEY (customer_id, occur_time, event_id)
        INCLUDE (event_type, amount_micros, currency_code),
    CONSTRAINT events_customer_id_check CHECK (customer_id > 0),
    CONSTRAINT events_event_type_check CHECK (event_type > 0),
    CONSTRAINT events_amount_micros_check CHECK (amount_micros >= 0),
    CONSTRAINT events_currency_code_check CHECK (currency_code ~ '^[A-Z]{3}$')
)
"""


def upgrade() -> None:
    op.execute(CREATE_EVENT_IDS)
    op.execute("CREATE INDEX event_ids_customer_id_idx ON event_ids (customer_id)")
    op.execute(CREATE_EVENTS)
    op.execute("CREATE INDEX events_occur_time_idx ON events (occur_time)")


def downgrade() -> None:
    op.execute("DROP TABLE events")
    op.execute("DROP TABLE event_ids")
