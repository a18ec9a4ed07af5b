"""The hub: who is connected to this node, and to which rooms.

Fan-out encodes a message once per wire format (not once per recipient)
and hands the same bytes to every local subscriber of the room. Writing is
the subscriber's business and must not block: a subscriber that cannot keep
up closes itself, and its client recovers by seq when it reconnects.

A subscription starts *syncing*: live messages are held back while the
service replays what the client missed from the database, then
:meth:`Subscription.activate` releases the held ones that the replay did
not cover. Together with the per-subscription ``floor`` (the highest seq
delivered) this gives each client every message once, in seq order.
"""

from __future__ import annotations

import logging
from typing import Protocol

from serenchat.domain.models import Message

log = logging.getLogger(__name__)


class Codec(Protocol):
    """Turns events into the bytes of one wire format."""

    def message(self, message: Message) -> bytes: ...

    def removed(self, room: str) -> bytes: ...


class Subscriber(Protocol):
    """A local connection, as the hub sees it."""

    username: str
    codec: Codec

    def deliver(self, data: bytes) -> None:
        """Queue encoded bytes for the client without blocking.

        Over its buffer limit, the subscriber must arrange its own closing
        rather than wait.
        """

    async def send(self, data: bytes) -> None:
        """Queue encoded bytes, waiting while the client's buffer is full."""

    def overflow(self) -> None:
        """Close because the client falls behind."""


class Subscription:
    """One subscriber in one room."""

    __slots__ = ("floor", "held", "hub", "room", "subscriber")

    def __init__(self, hub: Hub, subscriber: Subscriber, room: str) -> None:
        self.hub = hub
        self.subscriber = subscriber
        self.room = room
        self.floor = 0
        # Live messages received while syncing; None once active.
        self.held: list[Message] | None = []

    def activate(self, floor: int) -> None:
        """Go live: deliver held messages above ``floor``, then the rest."""
        held, self.held = self.held or [], None
        self.floor = max(self.floor, floor)
        for message in held:
            self._deliver(message, self.subscriber.codec.message(message))

    def _deliver(self, message: Message, data: bytes) -> None:
        if message.seq <= self.floor:
            return
        self.floor = message.seq
        self.subscriber.deliver(data)


class Hub:
    """Index of local subscriptions by room and by user."""

    def __init__(self, *, max_held: int = 10_000) -> None:
        self._rooms: dict[str, dict[Subscriber, Subscription]] = {}
        self._users: dict[str, set[Subscriber]] = {}
        self._joined: dict[Subscriber, set[str]] = {}
        self._max_held = max_held
        self.encoded = 0  # frames encoded by fan-out, for metrics and tests
        self.delivered = 0

    # Connections.

    def connect(self, subscriber: Subscriber) -> None:
        self._users.setdefault(subscriber.username, set()).add(subscriber)
        self._joined[subscriber] = set()

    def disconnect(self, subscriber: Subscriber) -> None:
        """Forget a closed connection and all its subscriptions."""
        for room in list(self._joined.pop(subscriber, ())):
            self.unsubscribe(subscriber, room)
        local = self._users.get(subscriber.username)
        if local is not None:
            local.discard(subscriber)
            if not local:
                del self._users[subscriber.username]

    @property
    def connections(self) -> int:
        return len(self._joined)

    def online(self, username: str) -> bool:
        return username in self._users

    # Rooms.

    def subscribe(self, subscriber: Subscriber, room: str) -> Subscription:
        """Subscribe, or resubscribe, in the syncing state."""
        subs = self._rooms.setdefault(room, {})
        subscription = Subscription(self, subscriber, room)
        subs[subscriber] = subscription
        self._joined.setdefault(subscriber, set()).add(room)
        return subscription

    def unsubscribe(self, subscriber: Subscriber, room: str) -> bool:
        subs = self._rooms.get(room)
        if subs is None or subs.pop(subscriber, None) is None:
            return False
        self._joined.get(subscriber, set()).discard(room)
        if not subs:
            del self._rooms[room]
        return True

    def is_subscribed(self, subscriber: Subscriber, room: str) -> bool:
        return subscriber in self._rooms.get(room, ())

    def subscribers(self, room: str) -> int:
        return len(self._rooms.get(room, ()))

    # Events from the broker.

    def publish_message(self, message: Message) -> None:
        """Fan a stored message out to this node's subscribers of its room."""
        subs = self._rooms.get(message.room)
        if not subs:
            return

        frames: dict[Codec, bytes] = {}
        seq = message.seq
        for subscription in subs.values():
            held = subscription.held
            if held is not None:
                if len(held) >= self._max_held:
                    subscription.subscriber.overflow()
                else:
                    held.append(message)
                continue
            if seq <= subscription.floor:
                continue
            subscription.floor = seq

            subscriber = subscription.subscriber
            codec = subscriber.codec
            data = frames.get(codec)
            if data is None:
                data = frames[codec] = codec.message(message)
            subscriber.deliver(data)

        self.encoded += len(frames)
        self.delivered += len(subs)

    def remove_member(self, room: str, username: str) -> None:
        """Unsubscribe a user's local connections from a room they left."""
        for subscriber in list(self._users.get(username, ())):
            if self.unsubscribe(subscriber, room):
                subscriber.deliver(subscriber.codec.removed(room))
