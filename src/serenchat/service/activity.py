"""Presence, typing indicators and receipts: what is said about activity.

None of it is part of a room's stream. Presence and typing live in memory
(the hub holds the connections they come from); ``last_seen`` and the
read and delivered positions are stored, because they must outlive a
restart.

Contracts:

* presence: a user is online while one of their connections is, away when
  all of them say so, offline when the last one closes. Each change of the
  folded status is published once, to everyone sharing a room with them.
* typing: only changes are relayed (active, then inactive); an indicator
  not refreshed for ``typing_ttl`` seconds ends by itself, and sending a
  message ends it. Changes are throttled per user and room.
* receipts: read positions move forward only, on request. Delivered
  positions follow what fan-out and replay handed to a member's
  connections, and are stored and announced every ``delivery_interval``
  seconds, one event per room.
* small rooms: receipts and deliveries are announced live only in rooms of
  at most ``small_room`` members. Each announcement goes to every
  subscriber and names members, so in a room of n members they cost n² a
  round; larger rooms keep the positions (GET members) without the chatter,
  as group chats commonly do.
* last_seen: stored when a user goes offline; while a user is connected
  they are seen now, and that is what is reported.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from serenchat.broker import Broker, Delivered, PresenceChanged, Receipt, Typing
from serenchat.domain.models import Presence, Status, User, format_ms, now_ms
from serenchat.hub import Hub, Subscriber
from serenchat.service.ratelimit import RateLimiter
from serenchat.store import Store

log = logging.getLogger(__name__)

# Cap on remembered delivered positions; past it they are re-announced once.
MAX_REPORTED = 200_000


class Activity:
    def __init__(
        self,
        store: Store,
        hub: Hub,
        broker: Broker,
        *,
        typing_ttl: float = 6.0,
        delivery_interval: float = 1.0,
        small_room: int = 100,
    ) -> None:
        self.store = store
        self.hub = hub
        self.broker = broker
        self.typing_ttl = typing_ttl
        self.delivery_interval = delivery_interval
        self._typing: dict[tuple[str, str], asyncio.TimerHandle] = {}
        self._typing_changes = RateLimiter(rate=2.0, burst=4.0)
        self.small_room = small_room
        self._reported: dict[tuple[str, str], int] = {}
        # room -> (member count, when it stops being trusted)
        self._sizes: dict[str, tuple[int, float]] = {}
        self._flusher: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._flusher = asyncio.create_task(self._flush_loop(), name="deliveries")

    async def close(self) -> None:
        if self._flusher is not None:
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
        await self.flush_deliveries()
        for handle in self._typing.values():
            handle.cancel()
        self._typing.clear()

    # Presence.

    async def connect(self, subscriber: Subscriber, user: User) -> None:
        """Register an authenticated connection; announce if the user came online."""
        rooms = await self.store.room_ids_of(user.id)
        if self.hub.connect(subscriber, rooms):
            await self._announce(user.id, user.username)

    async def disconnect(self, subscriber: Subscriber) -> None:
        username = subscriber.username
        rooms = self.hub.rooms_of(username)
        if self.hub.disconnect(subscriber):
            for room in rooms:
                self.stop_typing(room, username)
            await self._announce(subscriber.user_id, username, rooms)

    async def set_status(self, subscriber: Subscriber, status: Status) -> Status:
        """Set a connection's status; return the user's folded status."""
        if self.hub.set_status(subscriber, status):
            await self._announce(subscriber.user_id, subscriber.username)
        return self.hub.status(subscriber.username)

    async def presence(self, username: str) -> Presence:
        status = self.hub.status(username)
        if status is Status.OFFLINE:
            last_seen = (await self.store.last_seen([username]))[username]
        else:
            last_seen = format_ms(now_ms())
        return Presence(user=username, status=status, last_seen=last_seen)

    def seen(
        self, username: str, stored: str | None, now: str | None = None
    ) -> tuple[Status, str | None]:
        """A user's status and last_seen, given the stored last_seen.

        ``now`` is the time to give an online user, when the caller asks
        after many at once.
        """
        status = self.hub.status(username)
        if status is Status.OFFLINE:
            return status, stored
        return status, now or format_ms(now_ms())

    async def _announce(
        self, user_id: int, username: str, rooms: list[str] | None = None
    ) -> None:
        at = now_ms()
        status = self.hub.status(username)
        if status is Status.OFFLINE:
            # Only going offline is written: a connection storm (a restart,
            # a deploy) then costs no write per hello.
            try:
                await self.store.touch(user_id, at)
            except Exception:
                # Presence still changes for everyone online; only the
                # stored last_seen lags until the database answers again.
                log.warning("storing last_seen failed", exc_info=True)
        log.debug("presence", extra={"user": username, "status": status.value})
        self.broker.publish(
            PresenceChanged(
                user=username,
                status=status,
                last_seen=format_ms(at),
                rooms=rooms if rooms is not None else self.hub.rooms_of(username),
            )
        )

    # Typing.

    def typing(self, room: str, username: str, active: bool) -> None:
        """Note that ``username`` started or stopped typing in ``room``."""
        key = (room, username)
        handle = self._typing.get(key)
        if not active:
            if handle is not None:
                self.stop_typing(room, username)
            return

        if handle is not None:
            handle.cancel()  # a refresh: extend, relay nothing
        elif not self._typing_changes.allow(key):
            return  # flapping on and off; the throttle drops this change
        else:
            self.broker.publish(Typing(room=room, user=username, active=True))
        loop = asyncio.get_running_loop()
        self._typing[key] = loop.call_later(
            self.typing_ttl, self.stop_typing, room, username
        )

    def stop_typing(self, room: str, username: str) -> None:
        handle = self._typing.pop((room, username), None)
        if handle is not None:
            handle.cancel()
            self.broker.publish(Typing(room=room, user=username, active=False))

    # Receipts.

    async def read(self, user: User, room: str, seq: int) -> int:
        read_seq, delivered_seq, moved = await self.store.mark_read(room, user.id, seq)
        if not moved:
            return read_seq
        self._reported[(room, user.username)] = delivered_seq
        if await self.is_small(room):
            self.broker.publish(
                Receipt(
                    room=room,
                    user=user.username,
                    read_seq=read_seq,
                    delivered_seq=delivered_seq,
                )
            )
        return read_seq

    async def flush_deliveries(self) -> None:
        """Store and announce delivered positions that moved."""
        moved: list[tuple[str, int, int]] = []
        per_room: dict[str, dict[str, int]] = {}
        for room, username, user_id, seq in self.hub.delivered_positions():
            if self._reported.get((room, username), 0) >= seq:
                continue
            if len(self._reported) >= MAX_REPORTED:
                self._reported.clear()
            self._reported[(room, username)] = seq
            moved.append((room, user_id, seq))
            per_room.setdefault(room, {})[username] = seq
        if not moved:
            return
        await self.store.mark_delivered(moved)
        for room, delivered in per_room.items():
            if await self.is_small(room):
                self.broker.publish(Delivered(room=room, delivered=delivered))

    def resized(self, room: str, change: int) -> None:
        """Follow a membership change in a room whose size is cached."""
        cached = self._sizes.get(room)
        if cached is not None:
            self._sizes[room] = (cached[0] + change, cached[1])

    async def is_small(self, room: str) -> bool:
        """Whether a room is small enough for live receipts and member lists."""
        count, until = self._sizes.get(room, (0, 0.0))
        now = time.monotonic()
        if until < now:
            count = await self.store.member_count(room)
            if len(self._sizes) >= MAX_REPORTED:
                self._sizes.clear()
            # Sizes drift only by joins and leaves; a few seconds stale is
            # harmless either side of the threshold.
            self._sizes[room] = (count, now + 10.0)
        return count <= self.small_room

    async def _flush_loop(self) -> None:
        while True:
            await asyncio.sleep(self.delivery_interval)
            try:
                await self.flush_deliveries()
            except Exception:
                log.exception("storing delivered positions failed")
