"""Moving events between nodes: in-process by default."""

from serenchat.broker.base import (
    Broker,
    ClientEvent,
    Committed,
    Delivered,
    Event,
    MemberAdded,
    MemberChanged,
    MemberRemoved,
    MessageChanged,
    MessagePosted,
    PresenceChanged,
    Receipt,
    StreamEvent,
    Typing,
)
from serenchat.broker.memory import MemoryBroker

__all__ = [
    "Broker",
    "ClientEvent",
    "Committed",
    "Delivered",
    "Event",
    "MemberAdded",
    "MemberChanged",
    "MemberRemoved",
    "MemoryBroker",
    "MessageChanged",
    "MessagePosted",
    "PresenceChanged",
    "Receipt",
    "StreamEvent",
    "Typing",
]
