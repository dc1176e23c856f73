"""Alembic environment of the events database; the runtime runs it online."""

from retain_events.store import metadata
from retain_runtime.db import run_migrations

run_migrations(metadata)
