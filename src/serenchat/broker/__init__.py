"""Moving events between nodes: in-process by default, Redis to scale out."""

from serenchat.broker.base import Broker, Event, MemberRemoved, MessagePosted
from serenchat.broker.memory import MemoryBroker

__all__ = ["Broker", "Event", "MemberRemoved", "MemoryBroker", "MessagePosted"]
