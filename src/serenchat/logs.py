"""Log setup: short lowercase messages, ids as ``key=value`` fields.

Code logs ``log.info("room created", extra={"room": r, "user": u})``; this
formatter appends the extra fields, so lines stay greppable by id.
"""

from __future__ import annotations

import logging

# Attributes every LogRecord has; anything else came in through ``extra``.
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


class FieldsFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields = {k: v for k, v in vars(record).items() if k not in _STANDARD}
        if not fields:
            return line
        pairs = " ".join(f"{key}={value}" for key, value in fields.items())
        head, newline, rest = line.partition("\n")
        return f"{head} {pairs}{newline}{rest}"


def configure(level: str) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(
        FieldsFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Alembic narrates every plugin it loads; its INFO is noise at start.
    logging.getLogger("alembic").setLevel(
        logging.DEBUG if level.lower() == "debug" else logging.WARNING
    )
    # aiohttp's access log is one line per request; keep it at debug.
    logging.getLogger("aiohttp.access").setLevel(
        logging.DEBUG if level.lower() == "debug" else logging.WARNING
    )
