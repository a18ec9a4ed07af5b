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


class Status(enum.StrEnum):
    ONLINE = "online"
    AWAY = "away"
    OFFLINE = "offline"


class Presence(msgspec.Struct, frozen=True):
    """A user's presence; ``last_seen`` is null for a user never connected."""

    user: str
    status: Status
    last_seen: str | None


class Member(msgspec.Struct, frozen=True):
    """A room member with presence and stream positions.

    ``read_seq`` is what they marked read, ``delivered_seq`` the highest
    seq handed to one of their connections; both only move forward.
    """

    username: str
    joined_at: str
    owner: bool
    status: Status = Status.OFFLINE
    last_seen: str | None = None
    read_seq: int = 0
    delivered_seq: int = 0


class RoomState(Room, frozen=True):
    """A room as one user sees it in their room list."""

    member: bool = False
    last_read_seq: int = 0
    unread: int = 0


class Message(msgspec.Struct, frozen=True):
    """A stored message in its latest state.

    ``seq`` is its position in the room's stream, which starts at 1 and has
    no gaps; edits and deletions take positions of their own in the same
    stream (see :class:`Update`). A deleted message keeps its id and seq,
    with ``deleted`` true and the text gone.
    """

    id: int
    room: str
    seq: int
    sender: str
    text: str
    created_at: str
    client_id: str | None
    edited_at: str | None = None
    deleted: bool = False


class Update(msgspec.Struct, frozen=True):
    """An edit or deletion of ``message``, at stream position ``seq``."""

    seq: int
    kind: str  # "edit" or "delete"
    message: Message


def now_ms() -> int:
    """Milliseconds since the Unix epoch, the unit timestamps are stored in."""
    return int(dt.datetime.now(dt.UTC).timestamp() * 1000)


def format_ms(ms: int) -> str:
    """Render stored milliseconds as RFC 3339 UTC with milliseconds."""
    stamp = dt.datetime.fromtimestamp(ms / 1000, dt.UTC)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"
