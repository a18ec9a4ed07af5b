"""The broker contract, and the events it carries.

A broker delivers each published event to the event handler of every node,
the publishing node included, at most once. Events from one publisher
arrive in the order they were published; events from different publishers
may interleave. Nothing is stored: a node that misses an event (because it
was down) learns the state from the database, and a client that misses a
message recovers it by seq.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import msgspec

from serenchat.domain.models import Message


class MessagePosted(msgspec.Struct, frozen=True, tag="message"):
    message: Message


class MemberRemoved(msgspec.Struct, frozen=True, tag="member_removed"):
    room: str
    username: str


Event = MessagePosted | MemberRemoved
EventHandler = Callable[[Event], None]


class Broker(Protocol):
    async def start(self, handler: EventHandler) -> None:
        """Begin delivering events to ``handler``."""

    def publish(self, event: Event) -> None:
        """Queue ``event`` for every node; never blocks."""

    async def close(self) -> None:
        """Stop delivering; events published afterwards are dropped."""
