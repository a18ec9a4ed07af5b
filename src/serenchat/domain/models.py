"""The nouns of a chat server, as immutable msgspec structs.

These structs double as the wire representation: encoding a
:class:`Message` with msgspec yields exactly the message object of the
protocol (see docs/protocol.md).
"""

from __future__ import annotations

import datetime as dt
import enum

import msgspec


class RoomKind(enum.StrEnum):
    PUBLIC = "public"
    PRIVATE = "private"
    DIRECT = "direct"


class User(msgspec.Struct, frozen=True):
    id: int
    username: str
    created_at: str


class Room(msgspec.Struct, frozen=True):
    """A room; ``private`` is true for private and direct rooms."""

    id: str
    title: str
    kind: RoomKind
    private: bool
    owner: str | None
    created_at: str
    last_seq: int


class Member(msgspec.Struct, frozen=True):
    username: str
    joined_at: str
    owner: bool


class Message(msgspec.Struct, frozen=True):
    """A stored message; ``seq`` is gap-free and starts at 1 in each room."""

    id: int
    room: str
    seq: int
    sender: str
    text: str
    created_at: str
    client_id: str | None


def now_ms() -> int:
    """Milliseconds since the Unix epoch, the unit timestamps are stored in."""
    return int(dt.datetime.now(dt.UTC).timestamp() * 1000)


def format_ms(ms: int) -> str:
    """Render stored milliseconds as RFC 3339 UTC with milliseconds."""
    stamp = dt.datetime.fromtimestamp(ms / 1000, dt.UTC)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"
