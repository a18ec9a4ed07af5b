"""ChatService: register, log in, rooms, members, send, history, join.

Gateways (WebSocket, REST) translate frames and requests into these calls
and nothing else, so every rule below holds whichever way a client talks.

Access rules:

* public room: anyone signed in may read, join and post; joining or
  posting makes them a member;
* private room: only members may see, read, join or post; the owner adds
  and removes members, and members may remove themselves;
* direct room: exactly its two users, fixed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

import msgspec

from serenchat.auth import PasswordHasher, TokenAuthority
from serenchat.broker import Broker, Event, MemberRemoved, MessagePosted
from serenchat.domain import rules
from serenchat.domain.errors import (
    BadRequest,
    Forbidden,
    NotFound,
    RateLimited,
    Unauthorized,
)
from serenchat.domain.models import Member, Message, Room, RoomKind, User
from serenchat.hub import Hub, Subscriber, Subscription
from serenchat.service.ratelimit import RateLimiter
from serenchat.store import Store

log = logging.getLogger(__name__)

REPLAY_PAGE = 500


@dataclass(frozen=True, slots=True)
class Limits:
    max_text: int = 4000
    history_default: int = 50
    history_max: int = 200
    send_rate: float = 20.0
    send_burst: float = 40.0
    access_ttl: float = 5.0


class Session(msgspec.Struct, frozen=True):
    user: User
    token: str


@dataclass(frozen=True, slots=True)
class Joined:
    """A join in progress: the replay is sent, the subscription not live.

    The gateway sends its reply, then calls :meth:`activate` with no await
    in between, so the reply precedes every live message of the room.
    """

    room: Room
    last_seq: int
    subscription: Subscription

    def activate(self) -> None:
        self.subscription.activate(self.last_seq)


class ChatService:
    def __init__(
        self,
        store: Store,
        hub: Hub,
        broker: Broker,
        tokens: TokenAuthority,
        passwords: PasswordHasher,
        limits: Limits = Limits(),
    ) -> None:
        self.store = store
        self.hub = hub
        self.broker = broker
        self.tokens = tokens
        self.passwords = passwords
        self.limits = limits
        self._send_limiter = RateLimiter(limits.send_rate, limits.send_burst)
        # (room id, user id) -> when a positive access check stops counting.
        # Bounds how long a removed member may still post through another
        # node; on this node removal clears the entry at once.
        self._members: dict[tuple[str, int], float] = {}
        self._rooms: dict[str, Room] = {}

    async def start(self) -> None:
        await self.broker.start(self._on_event)

    def on_commit(self, messages: Sequence[Message]) -> None:
        """Publish freshly committed messages (called by the writer)."""
        for message in messages:
            self.broker.publish(MessagePosted(message))

    def _on_event(self, event: Event) -> None:
        if isinstance(event, MessagePosted):
            self.hub.publish_message(event.message)
        elif isinstance(event, MemberRemoved):
            self._forget_member(event.room, event.username)
            self.hub.remove_member(event.room, event.username)

    # Accounts.

    async def register(self, username: object, password: object) -> Session:
        name = rules.username(username)
        secret = rules.password(password)
        user = await self.store.create_user(name, await self.passwords.hash(secret))
        log.info("registered", extra={"user": name})
        return Session(user=user, token=self.tokens.issue(name))

    async def login(self, username: object, password: object) -> Session:
        if not isinstance(username, str) or not isinstance(password, str):
            raise BadRequest("username and password must be strings")
        record = await self.store.user(username.strip().lower())
        hashed = record.password_hash if record else None
        if not await self.passwords.verify(hashed, password) or record is None:
            raise Unauthorized("wrong username or password")
        user = User(
            id=record.id, username=record.username, created_at=record.created_at
        )
        return Session(user=user, token=self.tokens.issue(user.username))

    async def authenticate(self, token: object) -> User:
        """The user a token names, provisioned on first use."""
        subject = self.tokens.verify(token)
        try:
            name = rules.username(subject)
        except BadRequest:
            raise Unauthorized("the token's subject is not a valid username") from None
        record = await self.store.ensure_user(name)
        return User(
            id=record.id, username=record.username, created_at=record.created_at
        )

    # Rooms.

    async def create_room(
        self, user: User, room_id: object, title: str | None, private: bool
    ) -> Room:
        slug = rules.room_id(room_id)
        if slug.startswith(rules.DIRECT_PREFIX):
            raise BadRequest(
                f"room ids starting with {rules.DIRECT_PREFIX!r} are reserved"
            )
        kind = RoomKind.PRIVATE if private else RoomKind.PUBLIC
        room = await self.store.create_room(
            slug, rules.title(title, slug), kind, user, [user.id]
        )
        log.info("room created", extra={"room": slug, "user": user.username})
        return room

    async def direct(self, user: User, username: object) -> Room:
        """The direct message room of ``user`` and ``username``, made on demand."""
        other_name = rules.username(username)
        if other_name == user.username:
            raise BadRequest("a direct message needs another user")
        other = await self.store.user(other_name)
        if other is None:
            raise NotFound(f"no user {other_name!r}")

        room_id = rules.direct_room_id(user.username, other_name)
        room = await self.store.room(room_id)
        if room is not None:
            return room
        title = ", ".join(sorted((user.username, other_name)))
        try:
            return await self.store.create_room(
                room_id, title, RoomKind.DIRECT, None, [user.id, other.id]
            )
        except Exception:
            # Both users opened the conversation at the same moment.
            room = await self.store.room(room_id)
            if room is None:
                raise
            return room

    async def room(self, user: User, room_id: object) -> Room:
        room = await self._room(room_id)
        await self._check_read(user, room)
        return room

    async def rooms(self, user: User) -> list[Room]:
        return await self.store.rooms_visible_to(user.id)

    async def members(self, user: User, room_id: object) -> list[Member]:
        room = await self._room(room_id)
        await self._check_read(user, room)
        return await self.store.members(room.id)

    async def add_member(self, user: User, room_id: object, username: object) -> Member:
        room = await self._room(room_id)
        name = rules.username(username)
        if room.kind is RoomKind.DIRECT:
            raise Forbidden("the members of a direct message room are fixed")
        if room.kind is RoomKind.PRIVATE and room.owner != user.username:
            raise Forbidden("only the room's owner can add members")
        others = name != user.username and room.owner != user.username
        if room.kind is RoomKind.PUBLIC and others:
            raise Forbidden("users add themselves to a public room by joining")

        target = await self.store.user(name)
        if target is None:
            raise NotFound(f"no user {name!r}")
        await self.store.add_member(room.id, target.id)
        return next(m for m in await self.store.members(room.id) if m.username == name)

    async def remove_member(
        self, user: User, room_id: object, username: object
    ) -> None:
        room = await self._room(room_id)
        name = rules.username(username)
        if room.kind is RoomKind.DIRECT:
            raise Forbidden("the members of a direct message room are fixed")
        if name != user.username and room.owner != user.username:
            raise Forbidden("only the room's owner can remove other members")
        if name == room.owner:
            raise Forbidden("the owner cannot leave their own room")

        target = await self.store.user(name)
        if target is None or not await self.store.remove_member(room.id, target.id):
            raise NotFound(f"{name!r} is not a member of {room.id!r}")
        self.broker.publish(MemberRemoved(room=room.id, username=name))
        log.info("member removed", extra={"room": room.id, "user": name})

    # Messages.

    async def send(
        self, user: User, room_id: object, text: object, client_id: object = None
    ) -> Message:
        """Store a message and publish it; return once it is durable.

        A repeated ``client_id`` from the same user returns the message first
        stored with it, and stores and publishes nothing new.
        """
        body = rules.message_text(text, self.limits.max_text)
        key = rules.client_id(client_id)
        room = await self._cached_room(room_id)
        await self._check_post(user, room)
        if not self._send_limiter.allow(user.id):
            raise RateLimited("too many messages; slow down")

        appended = await self.store.append(room.id, user, body, key)
        return appended.message

    async def history(
        self,
        user: User,
        room_id: object,
        *,
        before: object = None,
        after: object = None,
        limit: object = None,
    ) -> list[Message]:
        before_seq = _position(before, "before")
        after_seq = _position(after, "after")
        count = self._limit(limit)
        room = await self._room(room_id)
        await self._check_read(user, room)
        return await self.store.messages(
            room.id, before=before_seq, after=after_seq, limit=count
        )

    async def join(
        self, user: User, subscriber: Subscriber, room_id: object, since: object = None
    ) -> Joined:
        """Subscribe ``subscriber`` to a room, replaying what it missed.

        With ``since``, every message above it is sent through the
        subscriber before this returns; live ones arriving meanwhile are held
        by the subscription until :meth:`Joined.activate`.
        """
        since_seq = _position(since, "since")
        room = await self._room(room_id)
        await self._check_read(user, room)
        if room.kind is RoomKind.PUBLIC:
            await self._ensure_member(user, room)

        subscription = self.hub.subscribe(subscriber, room.id)
        try:
            last_seq = await self._replay(subscriber, room.id, since_seq)
        except BaseException:
            self.hub.unsubscribe(subscriber, room.id)
            raise
        return Joined(room=room, last_seq=last_seq, subscription=subscription)

    def leave(self, subscriber: Subscriber, room_id: object) -> None:
        if not self.hub.unsubscribe(subscriber, rules.room_id(room_id)):
            raise NotFound(f"not joined to {room_id!r}")

    async def _replay(
        self, subscriber: Subscriber, room_id: str, since: int | None
    ) -> int:
        """Send messages after ``since``; return the highest seq now known."""
        room = await self.store.room(room_id)
        last_seq = room.last_seq if room else 0
        if since is None:
            return last_seq

        position = since
        while True:
            page = await self.store.messages(room_id, after=position, limit=REPLAY_PAGE)
            for message in page:
                await subscriber.send(subscriber.codec.message(message))
            if page:
                position = page[-1].seq
            if len(page) < REPLAY_PAGE:
                return max(position, last_seq)

    # Access.

    async def _room(self, room_id: object) -> Room:
        room = await self.store.room(rules.room_id(room_id))
        if room is None:
            raise NotFound(f"no room {room_id!r}")
        return room

    async def _cached_room(self, room_id: object) -> Room:
        # Rooms are never deleted and their kind and owner never change, so
        # the hot path may keep them; last_seq in the copy goes stale.
        room = self._rooms.get(room_id) if isinstance(room_id, str) else None
        if room is None:
            room = await self._room(room_id)
            if len(self._rooms) >= 100_000:
                self._rooms.clear()
            self._rooms[room.id] = room
        return room

    async def _is_member(self, user: User, room: Room) -> bool:
        key = (room.id, user.id)
        if self._members.get(key, 0.0) > time.monotonic():
            return True
        if not await self.store.is_member(room.id, user.id):
            return False
        self._remember_member(key)
        return True

    def _remember_member(self, key: tuple[str, int]) -> None:
        if len(self._members) >= 100_000:
            self._members.clear()
        self._members[key] = time.monotonic() + self.limits.access_ttl

    def _forget_member(self, room_id: str, username: str) -> None:
        for key in [k for k in self._members if k[0] == room_id]:
            del self._members[key]

    async def _ensure_member(self, user: User, room: Room) -> None:
        if not await self._is_member(user, room):
            await self.store.add_member(room.id, user.id)
            self._remember_member((room.id, user.id))

    async def _check_read(self, user: User, room: Room) -> None:
        if room.kind is not RoomKind.PUBLIC and not await self._is_member(user, room):
            raise Forbidden(f"you are not a member of {room.id!r}")

    async def _check_post(self, user: User, room: Room) -> None:
        if room.kind is RoomKind.PUBLIC:
            await self._ensure_member(user, room)
        else:
            await self._check_read(user, room)

    def _limit(self, limit: object) -> int:
        if limit is None:
            return self.limits.history_default
        if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
            raise BadRequest("limit must be a positive integer")
        return min(limit, self.limits.history_max)


def _position(value: object, name: str) -> int | None:
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise BadRequest(f"{name} must be a non-negative integer")
    return value
