"""Schema migrations with Alembic, run on the application's own engine.

The scripts live in ``migrations/versions``; ``upgrade`` brings any database,
new or old, to the newest revision, so starting a new release on an old data
directory just works.
"""

from __future__ import annotations

import logging
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

log = logging.getLogger(__name__)

SCRIPTS = Path(__file__).parent / "migrations"


def _config(connection: Connection) -> Config:
    config = Config()
    config.set_main_option("script_location", str(SCRIPTS))
    config.attributes["connection"] = connection
    return config


async def upgrade(engine: AsyncEngine, revision: str = "head") -> None:
    """Migrate the database behind ``engine`` to ``revision``."""

    def run(connection: Connection) -> None:
        command.upgrade(_config(connection), revision)

    async with engine.begin() as conn:
        await conn.run_sync(run)


async def current(engine: AsyncEngine) -> tuple[str | None, str | None]:
    """Return the database's revision and the newest one this code knows."""

    def read(connection: Connection) -> tuple[str | None, str | None]:
        context = MigrationContext.configure(connection)
        head = ScriptDirectory.from_config(_config(connection)).get_current_head()
        return context.get_current_revision(), head

    async with engine.connect() as conn:
        return await conn.run_sync(read)
