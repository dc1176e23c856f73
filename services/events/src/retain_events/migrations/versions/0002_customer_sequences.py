"""Keep each customer's events packed in one row, for ListSequences.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-05
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# One row per customer with events: the events in (occur_time, event_id) order
# as three byte strings of PostgreSQL's binary send forms, concatenated, and
# the time of the last event, which tells ingest whether new events append.
# EXTERNAL storage keeps rows over the TOAST threshold uncompressed, so reading
# them costs no decompression.
CREATE_SEQUENCES = """
CREATE TABLE customer_sequences (
    customer_id bigint NOT NULL,
    event_count integer NOT NULL,
    occur_times bytea NOT NULL,
    event_types bytea NOT NULL,
    amounts_micros bytea NOT NULL,
    last_occur_time timestamptz NOT NULL,
    CONSTRAINT customer_sequences_pkey PRIMARY KEY (customer_id),
    CONSTRAINT customer_sequences_event_count_check CHECK (event_count > 0)
)
"""

EXTERNAL_STORAGE = """
ALTER TABLE customer_sequences
    ALTER COLUMN occur_times SET STORAGE EXTERNAL,
    ALTER COLUMN event_types SET STORAGE EXTERNAL,
    ALTER COLUMN amounts_micros SET STORAGE EXTERNAL
"""

# NOTE: a replica still running the code from before this migration stores
# events without packed rows, and nothing repairs those rows later. Stop such
# replicas before migrating.
FILL_SEQUENCES = """
INSERT INTO customer_sequences
SELECT customer_id,
       count(*),
       string_agg(timestamptz_send(occur_time), '' ORDER BY occur_time, event_id),
       string_agg(int2send(event_type), '' ORDER BY occur_time, event_id),
       string_agg(int8send(CASE WHEN currency_code = 'KES' THEN amount_micros
                                ELSE 0 END), ''
                  ORDER BY occur_time, event_id),
       max(occur_time)
FROM events
GROUP BY customer_id
"""


def upgrade() -> None:
    op.execute(CREATE_SEQUENCES)
    op.execute(EXTERNAL_STORAGE)
    op.execute(FILL_SEQUENCES)


def downgrade() -> None:
    op.execute("DROP TABLE customer_sequences")
