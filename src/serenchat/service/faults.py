"""Turning unexpected exceptions into the error vocabulary.

Gateways answer every request, even one that failed for a reason nobody
planned; this decides what they say. A database or network outage is
``unavailable`` (the client may retry); anything else is ``internal``.
"""

from __future__ import annotations

from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from serenchat.domain.errors import ChatError, Internal, Unavailable

OUTAGES = (OperationalError, DBAPIError, PoolTimeout, OSError)


def fault(exc: Exception) -> ChatError:
    """The error to report for an exception that is not a ChatError."""
    if isinstance(exc, ChatError):
        return exc
    if isinstance(exc, OUTAGES):
        return Unavailable("the database is unavailable; retry shortly")
    return Internal("internal server error")
