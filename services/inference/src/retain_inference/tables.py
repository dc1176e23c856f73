"""Tables of the inference database, as SQLAlchemy Core objects.

The migrations in migrations/versions create them; these definitions are what
the queries use.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

metadata = sa.MetaData()

jobs = sa.Table(
    "jobs",
    metadata,
    sa.Column("job_id", sa.Text, primary_key=True),
    sa.Column("kind", sa.Text),
    sa.Column("state", sa.SmallInteger),
    sa.Column("progress_done", sa.BigInteger),
    sa.Column("progress_total", sa.BigInteger),
    sa.Column("message", sa.Text),
    sa.Column("result_id", sa.Text),
    sa.Column("create_time", sa.DateTime(timezone=True)),
    sa.Column("update_time", sa.DateTime(timezone=True)),
    # The replica id (RETAIN_REPLICA_ID) of the process that runs the job.
    sa.Column("owner", sa.Text),
    # The owner renews the lease while the job is queued or running. Any
    # replica fails a job whose lease has expired.
    sa.Column("lease_expire_time", sa.DateTime(timezone=True)),
)
model_versions = sa.Table(
    "model_versions",
    metadata,
    sa.Column("model_version", sa.Text, primary_key=True),
    sa.Column("status", sa.SmallInteger),
    sa.Column("config", postgresql.JSONB),
    sa.Column("cutoff_time", sa.DateTime(timezone=True)),
    sa.Column("label_end_time", sa.DateTime(timezone=True)),
    sa.Column("horizon_days", sa.Integer),
    sa.Column("metrics", postgresql.JSONB),
    sa.Column("checkpoint", sa.LargeBinary),
    sa.Column("create_time", sa.DateTime(timezone=True)),
    sa.Column("promote_time", sa.DateTime(timezone=True)),
)
promotions = sa.Table(
    "promotions",
    metadata,
    sa.Column("promotion_id", sa.BigInteger, primary_key=True),
    sa.Column("model_version", sa.Text),
    sa.Column("promoted_by", sa.Text),
    sa.Column("promote_time", sa.DateTime(timezone=True)),
)
scoring_runs = sa.Table(
    "scoring_runs",
    metadata,
    sa.Column("scoring_run_id", sa.BigInteger, primary_key=True),
    sa.Column("model_version", sa.Text),
    sa.Column("as_of_time", sa.DateTime(timezone=True)),
    sa.Column("min_customer_id", sa.BigInteger),
    sa.Column("max_customer_id", sa.BigInteger),
    sa.Column("job_id", sa.Text),
    sa.Column("scored_count", sa.BigInteger),
    sa.Column("finished", sa.Boolean),
    # The interval start of a scheduled run; NULL for runs started on demand.
    sa.Column("slot_time", sa.DateTime(timezone=True)),
)
scheduled_scorings = sa.Table(
    "scheduled_scorings",
    metadata,
    sa.Column("slot_time", sa.DateTime(timezone=True), primary_key=True),
    sa.Column("as_of_time", sa.DateTime(timezone=True)),
    sa.Column("shard_count", sa.Integer),
    sa.Column("create_time", sa.DateTime(timezone=True)),
)
scores = sa.Table(
    "scores",
    metadata,
    sa.Column("scoring_run_id", sa.BigInteger, primary_key=True),
    sa.Column("customer_id", sa.BigInteger, primary_key=True),
    sa.Column("model_version", sa.Text),
    sa.Column("churn_probability", sa.Float),
    sa.Column("expected_days", sa.Float),
    sa.Column("reasons", postgresql.JSONB),
    sa.Index(
        "scores_by_probability", "scoring_run_id", "churn_probability", "customer_id"
    ),
)

# Every registry column but the checkpoint, which only scoring loads.
MODEL_COLUMNS = [c for c in model_versions.c if c.name != "checkpoint"]

# Model statuses, as in retain.inference.v1.ModelStatus.
READY, ACTIVE, RETIRED = 2, 3, 4

# Job kinds. Scheduled runs wait queued until a replica claims them.
SCORING_RUN = "scoring_run"
SCHEDULED_SCORING_RUN = "scheduled_scoring_run"
