"""The broker contract, and the events it carries.

A broker delivers each published event to the event handler of every node,
the publishing node included, at most once. Events from one publisher
arrive in the order they were published; events from different publishers
may interleave. Nothing is stored: a node that misses an event (because it
was down) learns the state from the database, and a client that misses a
stream entry recovers it by seq.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import msgspec

from serenchat.domain.models import Message, Status, Update


class MessagePosted(msgspec.Struct, frozen=True, tag="message"):
    message: Message

    @property
    def room(self) -> str:
        return self.message.room

    @property
    def seq(self) -> int:
        return self.message.seq


class MessageChanged(msgspec.Struct, frozen=True, tag="update"):
    update: Update

    @property
    def room(self) -> str:
        return self.update.message.room

    @property
    def seq(self) -> int:
        return self.update.seq


class MemberAdded(msgspec.Struct, frozen=True, tag="member_added"):
    room: str
    username: str


class MemberRemoved(msgspec.Struct, frozen=True, tag="member_removed"):
    room: str
    username: str


class MemberChanged(msgspec.Struct, frozen=True, tag="member"):
    """A membership change as told to clients.

    Never published: each node derives it from MemberAdded and MemberRemoved
    and tells the room's subscribers (and, for an addition, the new member).
    """

    room: str
    user: str
    change: str  # "added" or "removed"


class PresenceChanged(msgspec.Struct, frozen=True, tag="presence"):
    """``rooms`` are the user's rooms: who shares one of them hears of it."""

    user: str
    status: Status
    last_seen: str | None
    rooms: list[str]


class Typing(msgspec.Struct, frozen=True, tag="typing"):
    room: str
    user: str
    active: bool


class Receipt(msgspec.Struct, frozen=True, tag="receipt"):
    room: str
    user: str
    read_seq: int
    delivered_seq: int


class Delivered(msgspec.Struct, frozen=True, tag="delivery"):
    """Delivered positions that moved in a room since the last report."""

    room: str
    delivered: dict[str, int]


StreamEvent = MessagePosted | MessageChanged


class Committed(msgspec.Struct, frozen=True, tag="committed"):
    """Stream entries of one room stored in one transaction, in seq order.

    Published once per room per commit, so that a busy room's subscribers
    get a commit's messages in one write rather than one write each.
    """

    room: str
    entries: list[StreamEvent]


Event = (
    Committed
    | MemberAdded
    | MemberRemoved
    | PresenceChanged
    | Typing
    | Receipt
    | Delivered
)
# What a node may tell its clients: broker events, the stream entries
# inside a Committed, and the membership notices derived locally.
ClientEvent = Event | StreamEvent | MemberChanged

EventHandler = Callable[[Event], None]


class Broker(Protocol):
    async def start(self, handler: EventHandler) -> None:
        """Begin delivering events to ``handler``."""

    def publish(self, event: Event) -> None:
        """Queue ``event`` for every node; never blocks."""

    async def close(self) -> None:
        """Stop delivering; events published afterwards are dropped."""
