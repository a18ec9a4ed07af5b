"""The in-process broker: one node, events handed straight to the hub."""

from __future__ import annotations

from serenchat.broker.base import Event, EventHandler


class MemoryBroker:
    """Deliver each event synchronously, in publish order, to this node."""

    def __init__(self) -> None:
        self._handler: EventHandler | None = None

    async def start(self, handler: EventHandler) -> None:
        self._handler = handler

    def publish(self, event: Event) -> None:
        if self._handler is not None:
            self._handler(event)

    async def close(self) -> None:
        self._handler = None
