"""The ``serenchat`` command: ``serve``, ``db upgrade`` and ``db current``."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence

from aiohttp import web
from sqlalchemy.exc import SQLAlchemyError

from serenchat import __version__, logs
from serenchat.config import Settings, add_arguments, from_arguments
from serenchat.store.engine import normalise_url

log = logging.getLogger(__name__)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="serenchat", description="Self-hosted real-time chat server."
    )
    parser.add_argument("--version", action="version", version=__version__)
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the chat server")
    add_arguments(serve)

    db = commands.add_parser("db", help="manage the database schema")
    db_commands = db.add_subparsers(dest="db_command", required=True)
    for name, text in (
        ("upgrade", "migrate the database to the newest schema"),
        ("current", "print the database's schema revision"),
    ):
        add_arguments(db_commands.add_parser(name, help=text))
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    parser = _parser()
    args = parser.parse_args(argv)
    settings = from_arguments(args)
    try:
        normalise_url(settings.database)
        logs.configure(settings.log_level)
    except ValueError as exc:
        parser.error(str(exc))

    try:
        if args.command == "serve":
            serve(settings)
        elif args.db_command == "upgrade":
            asyncio.run(_upgrade(settings))
        else:
            asyncio.run(_current(settings))
    except (OSError, SQLAlchemyError) as exc:
        # Unreachable database, port in use, unwritable data directory: say
        # which in one line rather than with a traceback.
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        database = normalise_url(settings.database).render_as_string(True)
        log.error(
            "cannot start: %s",
            detail,
            extra={"database": database, "port": settings.port},
        )
        sys.exit(1)


def serve(settings: Settings) -> None:
    from serenchat.app import create_app

    loop = None
    if sys.platform != "win32":
        import uvloop

        loop = uvloop.new_event_loop()
    web.run_app(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        print=lambda _: log.info(
            "listening", extra={"url": f"http://{settings.host}:{settings.port}"}
        ),
        access_log=logging.getLogger("aiohttp.access"),
        shutdown_timeout=10.0,
        loop=loop,
    )


async def _upgrade(settings: Settings) -> None:
    from serenchat.store.engine import create_engine
    from serenchat.store.migrate import current, upgrade

    engine = create_engine(settings.database, pool_size=1)
    try:
        await upgrade(engine)
        revision, _ = await current(engine)
        log.info("database upgraded", extra={"revision": revision})
    finally:
        await engine.dispose()


async def _current(settings: Settings) -> None:
    from serenchat.store.engine import create_engine
    from serenchat.store.migrate import current

    engine = create_engine(settings.database, pool_size=1)
    try:
        revision, head = await current(engine)
    finally:
        await engine.dispose()
    state = "up to date" if revision == head else f"behind (newest is {head})"
    sys.stdout.write(f"{revision or 'empty'}: {state}\n")
