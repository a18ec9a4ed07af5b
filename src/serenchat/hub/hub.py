"""The hub: who is connected to this node, to which rooms, and how they are.

Fan-out encodes an event once per wire format (not once per recipient) and
hands the same bytes to every local subscriber of the room. Writing is the
subscriber's business and must not block: a subscriber that cannot keep up
closes itself, and its client recovers by seq when it reconnects.

A subscription starts *syncing*: stream events are held back while the
service replays what the client missed from the database, then
:meth:`Subscription.activate` releases the held ones that the replay did
not cover. With the per-subscription ``floor`` (the highest seq delivered)
this gives each client every stream entry once, in seq order.

The hub also keeps, for the users connected here, their presence (the
statuses of their connections, folded into one) and the rooms they belong
to, which decides who hears of whose presence.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Protocol

from serenchat.broker import ClientEvent, StreamEvent
from serenchat.domain.models import Status

log = logging.getLogger(__name__)


class Codec(Protocol):
    """Turns events into the bytes of one wire format."""

    def encode(self, event: ClientEvent) -> bytes: ...


class Subscriber(Protocol):
    """A local connection, as the hub sees it."""

    username: str
    user_id: int
    status: Status

    @property
    def codec(self) -> Codec:
        """How this subscriber's frames are encoded; shared by its kind."""
        ...

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

    __slots__ = ("floor", "held", "room", "subscriber")

    def __init__(self, subscriber: Subscriber, room: str) -> None:
        self.subscriber = subscriber
        self.room = room
        self.floor = 0
        # Stream events received while syncing; None once active.
        self.held: list[StreamEvent] | None = []

    def activate(self, floor: int) -> None:
        """Go live: deliver held events above ``floor``, then the rest."""
        held, self.held = self.held or [], None
        self.floor = max(self.floor, floor)
        for event in held:
            if event.seq > self.floor:
                self.floor = event.seq
                self.subscriber.deliver(self.subscriber.codec.encode(event))


def fold(statuses: Iterable[Status]) -> Status:
    """One user's status from their connections': any online wins."""
    folded = Status.OFFLINE
    for status in statuses:
        if status is Status.ONLINE:
            return Status.ONLINE
        folded = Status.AWAY
    return folded


class Hub:
    """Index of local connections by room and by user."""

    def __init__(self, *, max_held: int = 10_000) -> None:
        self._rooms: dict[str, dict[Subscriber, Subscription]] = {}
        self._users: dict[str, set[Subscriber]] = {}
        self._joined: dict[Subscriber, set[str]] = {}
        # Memberships of the users connected here, both ways.
        self._rooms_of: dict[str, set[str]] = {}
        self._members_here: dict[str, set[str]] = {}
        self._dirty: set[str] = set()
        self._max_held = max_held
        self.encoded = 0  # frames encoded by stream fan-out
        self.delivered = 0  # frames handed to subscribers by stream fan-out
        self.writes = 0  # deliver() calls stream fan-out made
        # Frames sent with defer=True, per subscriber, until flush_deferred.
        self._deferred: dict[Subscriber, list[bytes]] = {}

    # Connections and presence.

    def connect(self, subscriber: Subscriber, rooms: Iterable[str]) -> bool:
        """Add a connection; True if its user's status changed."""
        before = self.status(subscriber.username)
        local = self._users.setdefault(subscriber.username, set())
        if not local:
            for room in rooms:
                self.add_membership(room, subscriber.username, force=True)
        local.add(subscriber)
        self._joined[subscriber] = set()
        return self.status(subscriber.username) is not before

    def disconnect(self, subscriber: Subscriber) -> bool:
        """Forget a closed connection; True if its user's status changed."""
        if subscriber not in self._joined:
            return False
        before = self.status(subscriber.username)
        for room in list(self._joined.pop(subscriber)):
            self.unsubscribe(subscriber, room)
        local = self._users.get(subscriber.username)
        if local is not None:
            local.discard(subscriber)
            if not local:
                del self._users[subscriber.username]
                for room in self._rooms_of.pop(subscriber.username, ()):
                    self._drop_member_here(room, subscriber.username)
        return self.status(subscriber.username) is not before

    def set_status(self, subscriber: Subscriber, status: Status) -> bool:
        """Set one connection's status; True if its user's status changed."""
        before = self.status(subscriber.username)
        subscriber.status = status
        return self.status(subscriber.username) is not before

    def status(self, username: str) -> Status:
        return fold(s.status for s in self._users.get(username, ()))

    @property
    def connections(self) -> int:
        return len(self._joined)

    def rooms_of(self, username: str) -> list[str]:
        return sorted(self._rooms_of.get(username, ()))

    # Memberships of local users.

    def add_membership(self, room: str, username: str, *, force: bool = False) -> None:
        if not force and username not in self._users:
            return
        self._rooms_of.setdefault(username, set()).add(room)
        self._members_here.setdefault(room, set()).add(username)

    def remove_membership(self, room: str, username: str) -> None:
        """Forget a membership and unsubscribe the user's connections."""
        self._rooms_of.get(username, set()).discard(room)
        self._drop_member_here(room, username)
        for subscriber in list(self._users.get(username, ())):
            self.unsubscribe(subscriber, room)

    def _drop_member_here(self, room: str, username: str) -> None:
        here = self._members_here.get(room)
        if here is not None:
            here.discard(username)
            if not here:
                del self._members_here[room]

    def audience(self, rooms: Iterable[str], exclude: str) -> set[str]:
        """Local users who belong to any of ``rooms``, but ``exclude``."""
        found: set[str] = set()
        for room in rooms:
            found |= self._members_here.get(room, set())
        found.discard(exclude)
        return found

    # Rooms.

    def subscribe(self, subscriber: Subscriber, room: str) -> Subscription:
        """Subscribe, or resubscribe, in the syncing state."""
        subs = self._rooms.setdefault(room, {})
        subscription = Subscription(subscriber, room)
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

    # Fan-out.

    def publish_stream(self, room: str, events: Sequence[StreamEvent]) -> None:
        """Fan stored stream entries of one room out to its subscribers here.

        ``events`` are one commit's entries for the room, in seq order. Each
        is encoded once per wire format; a subscriber gets the ones above its
        floor joined into one piece, the same bytes for every subscriber
        that needs them all, so a commit costs each subscriber one write.
        """
        subs = self._rooms.get(room)
        if not subs or not events:
            return

        first, last = events[0].seq, events[-1].seq
        frames: dict[Codec, list[bytes]] = {}
        whole: dict[Codec, bytes] = {}
        delivered = writes = 0
        for subscription in subs.values():
            held = subscription.held
            if held is not None:
                if len(held) + len(events) > self._max_held:
                    subscription.subscriber.overflow()
                else:
                    held.extend(events)
                continue
            floor = subscription.floor
            if last <= floor:
                continue
            subscription.floor = last

            subscriber = subscription.subscriber
            codec = subscriber.codec
            if floor < first:
                data = whole.get(codec)
                if data is None:
                    data = whole[codec] = b"".join(self._frames(frames, codec, events))
                delivered += len(events)
            else:
                # Part of this commit already went out (a replay ran past it).
                encoded = self._frames(frames, codec, events)
                kept = [
                    f for e, f in zip(events, encoded, strict=True) if e.seq > floor
                ]
                data = b"".join(kept)
                delivered += len(kept)
            subscriber.deliver(data)
            writes += 1

        self._dirty.add(room)
        self.encoded += sum(len(f) for f in frames.values())
        self.delivered += delivered
        self.writes += writes

    @staticmethod
    def _frames(
        cache: dict[Codec, list[bytes]], codec: Codec, events: Sequence[StreamEvent]
    ) -> list[bytes]:
        found = cache.get(codec)
        if found is None:
            found = cache[codec] = [codec.encode(e) for e in events]
        return found

    def flush_deferred(self) -> bool:
        """Deliver what was sent with ``defer``; True if there was any.

        Each subscriber gets its deferred frames, in order, in one write.
        """
        deferred, self._deferred = self._deferred, {}
        for subscriber, frames in deferred.items():
            subscriber.deliver(b"".join(frames))
        return bool(deferred)

    def _send(self, subscriber: Subscriber, data: bytes, defer: bool) -> None:
        if not defer:
            subscriber.deliver(data)
            return
        frames = self._deferred.get(subscriber)
        if frames is None:
            self._deferred[subscriber] = [data]
        else:
            frames.append(data)

    def broadcast(
        self,
        room: str,
        event: ClientEvent,
        *,
        skip: str | None = None,
        defer: bool = False,
    ) -> None:
        """Send a transient event to the room's live subscribers.

        With ``defer`` the frames wait for :meth:`flush_deferred`; who gets
        them is decided now.
        """
        frames: dict[Codec, bytes] = {}
        for subscription in self._rooms.get(room, {}).values():
            subscriber = subscription.subscriber
            if subscription.held is not None or subscriber.username == skip:
                continue
            data = frames.get(subscriber.codec)
            if data is None:
                data = frames[subscriber.codec] = subscriber.codec.encode(event)
            self._send(subscriber, data, defer)

    def send_to_users(
        self, usernames: Iterable[str], event: ClientEvent, *, defer: bool = False
    ) -> None:
        """Send an event to every local connection of these users."""
        frames: dict[Codec, bytes] = {}
        for username in usernames:
            for subscriber in self._users.get(username, ()):
                data = frames.get(subscriber.codec)
                if data is None:
                    data = frames[subscriber.codec] = subscriber.codec.encode(event)
                self._send(subscriber, data, defer)

    def mark_dirty(self, room: str) -> None:
        """Have the next delivered_positions() look at this room."""
        self._dirty.add(room)

    def delivered_positions(self) -> list[tuple[str, str, int, int]]:
        """(room, username, user_id, seq) for rooms with new deliveries.

        ``seq`` is the highest seq handed to any of the user's connections
        in the room since the last call marked the room dirty.
        """
        found: dict[tuple[str, str], tuple[int, int]] = {}
        for room in self._dirty:
            for subscription in self._rooms.get(room, {}).values():
                subscriber = subscription.subscriber
                key = (room, subscriber.username)
                best = found.get(key, (subscriber.user_id, 0))[1]
                if subscription.floor > best:
                    found[key] = (subscriber.user_id, subscription.floor)
        self._dirty.clear()
        return [(r, u, uid, seq) for (r, u), (uid, seq) in found.items()]
