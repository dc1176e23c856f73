"""Alembic environment of the user service: online migrations only."""

from retain_runtime.db import run_migrations
from retain_user.tables import metadata

run_migrations(metadata)
