"""Alembic environment of the inference database."""

from retain_runtime.db import run_migrations

run_migrations()
