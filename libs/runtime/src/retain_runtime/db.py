"""Database engines, migrations at start, and the service's own database.

Each service owns one PostgreSQL database. At start it creates the database
if the server lacks it, then applies its Alembic migrations.
"""

from __future__ import annotations

import logging
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine

log = logging.getLogger(__name__)


def ensure_database(url: str) -> None:
    """Create the database named in url if the server does not have it."""
    target = make_url(url)
    admin_url = target.set(database="postgres")
    engine = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            exists = conn.scalar(
                sa.text("SELECT 1 FROM pg_database WHERE datname = :name"),
                {"name": target.database},
            )
            if not exists:
                conn.execute(sa.text(f'CREATE DATABASE "{target.database}"'))
                log.info("Created database %s", target.database)
    finally:
        engine.dispose()


def migrate(url: str, migrations_dir: Path) -> None:
    """Apply every Alembic migration in migrations_dir to the database at url."""
    config = Config()
    config.set_main_option("script_location", str(migrations_dir))
    config.attributes["url"] = url
    command.upgrade(config, "head")
    log.info("Database %s is at the latest migration", make_url(url).database)


def run_migrations(target_metadata: sa.MetaData | None = None) -> None:
    """Body of every service's migrations/env.py: run online migrations."""
    from alembic import context

    url = context.config.attributes["url"]
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    with engine.connect() as conn:
        context.configure(connection=conn, target_metadata=target_metadata)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


def async_engine(url: str, pool_size: int = 10) -> AsyncEngine:
    """Create the asyncio engine a service uses after it started."""
    return create_async_engine(url, pool_size=pool_size, pool_pre_ping=True)


def sessionmaker(engine: AsyncEngine) -> async_sessionmaker:
    return async_sessionmaker(engine, expire_on_commit=False)
