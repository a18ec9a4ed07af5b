"""Settings: command-line flags, each with a ``SERENCHAT_…`` variable.

A flag beats its environment variable, which beats the default.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

ENV_PREFIX = "SERENCHAT_"


@dataclass(frozen=True, slots=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8080
    data_dir: Path = Path("data")
    database_url: str = ""  # empty: a SQLite file in data_dir
    log_level: str = "info"
    token_ttl: float = 7 * 24 * 3600.0  # seconds
    jwt_secret: str = ""  # empty: generated into data_dir on first start
    max_message_length: int = 4000
    hello_timeout: float = 10.0
    ping_interval: float = 20.0
    typing_ttl: float = 6.0
    delivery_interval: float = 1.0
    small_room: int = 100
    notice_interval: float = 0.1
    max_frame: int = 64 * 1024
    max_connection_buffer: int = 1024 * 1024
    max_pipeline: int = 64
    send_rate: float = 20.0
    send_burst: float = 40.0
    batch_size: int = 512
    write_queue: int = 10_000
    db_pool_size: int = 10
    migrate: bool = True

    @property
    def database(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'serenchat.db').resolve()}"


HELP = {
    "host": "address to listen on",
    "port": "port to listen on",
    "data_dir": "directory for the SQLite file and the token secret",
    "database_url": "postgresql://…, mysql://… or sqlite:///… "
    "(default: a SQLite file in the data directory)",
    "log_level": "debug, info, warning or error",
    "token_ttl": "lifetime of issued access tokens, in seconds",
    "jwt_secret": "token signing secret (default: generated in the data directory)",
    "max_message_length": "longest message text, in characters",
    "hello_timeout": "seconds a new WebSocket has to send its hello",
    "ping_interval": "seconds between WebSocket pings; a peer that does not "
    "answer is dropped (and goes offline) within 1.5 times this",
    "typing_ttl": "seconds a typing indicator lasts unless refreshed",
    "delivery_interval": "seconds between reports of delivered positions",
    "small_room": "rooms of at most this many members get live receipts "
    "and the member list in each join reply",
    "notice_interval": "seconds over which a burst of presence and membership "
    "notices is gathered into one write per connection",
    "max_frame": "largest accepted client frame, in bytes",
    "max_connection_buffer": "unsent bytes a connection may hold before it "
    "is closed as too slow",
    "max_pipeline": "sends one connection may have waiting for their commit "
    "before it reads further frames",
    "send_rate": "messages a user may send per second (0: no limit)",
    "send_burst": "messages a user may send in a burst",
    "batch_size": "most messages committed in one transaction",
    "write_queue": "most messages waiting for the writer",
    "db_pool_size": "database connections per process",
    "migrate": "run database migrations at start (true or false)",
}


def _parse_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add one ``--flag`` per setting, defaulting to its environment variable."""
    defaults = Settings()
    for field in fields(Settings):
        default = getattr(defaults, field.name)
        kind: Any = type(default)
        if kind is bool:
            kind = _parse_bool
        env = ENV_PREFIX + field.name.upper()
        parser.add_argument(
            "--" + field.name.replace("_", "-"),
            dest=field.name,
            type=kind,
            default=os.environ.get(env),
            metavar=field.name.upper(),
            help=f"{HELP[field.name]} [{env}; default {default!r}]",
        )


def from_arguments(args: argparse.Namespace) -> Settings:
    """Build Settings from parsed arguments.

    argparse converts string defaults with the flag's type, so values taken
    from the environment arrive converted and checked like flags.
    """
    values = {
        field.name: getattr(args, field.name)
        for field in fields(Settings)
        if getattr(args, field.name, None) is not None
    }
    return Settings(**values)
