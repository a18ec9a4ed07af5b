"""The one error vocabulary of SerenChat.

Every failure a client can see is a :class:`ChatError` whose ``code`` is a
stable snake_case word, shared by the WebSocket protocol, the REST API and
the logs::

    ChatError
    ├── BadRequest      bad_request   malformed or invalid input
    ├── Unauthorized    unauthorized  no identity, or a bad token or password
    ├── Forbidden       forbidden     identity known, action not allowed
    ├── NotFound        not_found     no such user, room or message
    ├── Conflict        conflict      the name or id is taken
    ├── TooLarge        too_large     a frame or a text over its limit
    ├── RateLimited     rate_limited  too many requests; retry later
    ├── Unavailable     unavailable   the server cannot serve this now
    └── Internal        internal      a fault of the server; it is logged

Codes are part of the wire contract: new codes may be added, existing ones
never change meaning.
"""

from __future__ import annotations


class ChatError(Exception):
    """A failure reported to the client with a stable ``code``."""

    code = "internal"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadRequest(ChatError):
    code = "bad_request"


class Unauthorized(ChatError):
    code = "unauthorized"


class Forbidden(ChatError):
    code = "forbidden"


class NotFound(ChatError):
    code = "not_found"


class Conflict(ChatError):
    code = "conflict"


class TooLarge(ChatError):
    code = "too_large"


class RateLimited(ChatError):
    code = "rate_limited"


class Unavailable(ChatError):
    code = "unavailable"


class Internal(ChatError):
    code = "internal"
