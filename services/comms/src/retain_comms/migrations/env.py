"""Alembic environment of the comms database; see retain_runtime.db."""

from retain_runtime.db import run_migrations

run_migrations()
