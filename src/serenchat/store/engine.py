"""Engine creation: one place that knows each backend's quirks."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

log = logging.getLogger(__name__)

# URL schemes users type, mapped to the asyncio driver SerenChat uses.
DRIVERS = {
    "sqlite": "sqlite+aiosqlite",
    "postgresql": "postgresql+asyncpg",
    "postgres": "postgresql+asyncpg",
    "mysql": "mysql+asyncmy",
    "mariadb": "mysql+asyncmy",
}


def normalise_url(url: str) -> sa.URL:
    """Accept ``postgresql://…`` and friends and pick the asyncio driver."""
    parsed = make_url(url)
    if "+" not in parsed.drivername:
        driver = DRIVERS.get(parsed.drivername)
        if driver is None:
            raise ValueError(f"unsupported database URL scheme: {parsed.drivername}")
        parsed = parsed.set(drivername=driver)
    if parsed.get_backend_name() == "mysql":
        parsed = parsed.update_query_dict({"charset": "utf8mb4"})
    return parsed


def create_engine(url: str, *, pool_size: int = 10) -> AsyncEngine:
    """Create the engine for ``url``, tuned for its backend."""
    parsed = normalise_url(url)
    backend = parsed.get_backend_name()
    options: dict[str, Any] = {}

    if backend == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(parsed, pool_size=pool_size, max_overflow=0)
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine

    options["pool_pre_ping"] = True
    if backend == "mysql":
        # InnoDB defaults to REPEATABLE READ; READ COMMITTED makes every read
        # see the latest commits, as on PostgreSQL, so both behave alike.
        options["isolation_level"] = "READ COMMITTED"
    return create_async_engine(
        parsed, pool_size=pool_size, max_overflow=pool_size, **options
    )


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets readers run beside the single writer; synchronous=FULL makes
    # each commit reach the disk before the writer acknowledges it, which is
    # what "acknowledged means durable" needs (group commit pays for it).
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA foreign_keys=ON")
    # A deleted message's words must leave the file, not linger in free
    # space: overwrite what is freed.
    cursor.execute("PRAGMA secure_delete=ON")
    cursor.close()
