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

import asyncio
import itertools
import logging
import time
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass

import msgspec

from serenchat.auth import PasswordHasher, TokenAuthority
from serenchat.broker import (
    Broker,
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
from serenchat.domain import rules
from serenchat.domain.errors import (
    BadRequest,
    Conflict,
    Forbidden,
    NotFound,
    RateLimited,
    Unauthorized,
)
from serenchat.domain.models import (
    Member,
    Message,
    Presence,
    Room,
    RoomKind,
    RoomState,
    Update,
    User,
    format_ms,
    now_ms,
)
from serenchat.hub import Hub, Subscriber, Subscription
from serenchat.service.activity import Activity
from serenchat.service.ratelimit import RateLimiter
from serenchat.store import Store
from serenchat.store.writer import Appended, Entry

log = logging.getLogger(__name__)

REPLAY_PAGE = 500
MAX_CACHED_USERS = 100_000
# Stream positions fit a signed 64-bit column on every backend.
MAX_POSITION = 2**63 - 1


@dataclass(frozen=True, slots=True)
class Limits:
    max_text: int = 4000
    history_default: int = 50
    history_max: int = 200
    send_rate: float = 20.0
    send_burst: float = 40.0
    access_ttl: float = 5.0
    typing_ttl: float = 6.0
    delivery_interval: float = 1.0
    small_room: int = 100
    notice_interval: float = 0.1


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
    members: list[Member] | None  # None in rooms too large to list each time
    subscription: Subscription
    hub: Hub
    replayed: bool

    def activate(self) -> None:
        self.subscription.activate(self.last_seq)
        if self.replayed:
            # What the replay handed over counts as delivered; a join
            # without since delivered nothing yet.
            self.hub.mark_dirty(self.room.id)


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
        self._users: dict[str, User] = {}  # by username, for authenticate
        self._notice_timer: asyncio.TimerHandle | None = None
        self.activity = Activity(
            store,
            hub,
            broker,
            typing_ttl=limits.typing_ttl,
            delivery_interval=limits.delivery_interval,
            small_room=limits.small_room,
        )

    async def start(self) -> None:
        await self.broker.start(self._on_event)
        self.activity.start()

    async def close(self) -> None:
        if self._notice_timer is not None:
            self._notice_timer.cancel()
            self._notice_timer = None
        self.hub.flush_deferred()
        await self.activity.close()

    def on_commit(self, entries: Sequence[Entry]) -> None:
        """Publish freshly committed stream entries (called by the writer).

        ``entries`` come sorted by room, then seq; each room's share goes
        out as one event.
        """
        for room, group in itertools.groupby(entries, key=_room_of):
            self.broker.publish(Committed(room, [_stream_event(e) for e in group]))

    def _on_event(self, event: Event) -> None:
        hub = self.hub
        match event:
            case Committed(room=room, entries=entries):
                hub.publish_stream(room, entries)
            case Typing() | Receipt() | Delivered():
                skip = event.user if isinstance(event, Typing) else None
                hub.broadcast(event.room, event, skip=skip)
            case PresenceChanged():
                self._notify(event)
            case MemberAdded(room=room, username=username):
                hub.add_membership(room, username)
                self.activity.resized(room, 1)
                self._notify(event)
            case MemberRemoved(room=room, username=username):
                self.activity.resized(room, -1)
                hub.flush_deferred()  # an earlier "added" goes first
                self._forget_member(room, username)
                hub.remove_membership(room, username)
                hub.send_to_users([username], event)
                hub.broadcast(
                    room, MemberChanged(room=room, user=username, change="removed")
                )

    # Presence and membership notices. A burst of them (everyone reconnects
    # after a restart; a big room fills up) would cost each online member of
    # a room one write per notice, n squared writes in all. The first notice
    # after a quiet spell goes out at once; the hub holds later ones (their
    # recipients chosen at once) and sends them every notice_interval, in
    # one write per connection.

    def _notify(self, event: PresenceChanged | MemberAdded) -> None:
        defer = self._notice_timer is not None
        hub = self.hub
        if isinstance(event, PresenceChanged):
            audience = hub.audience(event.rooms, event.user)
            hub.send_to_users(audience, event, defer=defer)
        else:
            room, username = event.room, event.username
            notice = MemberChanged(room=room, user=username, change="added")
            hub.broadcast(room, notice, defer=defer)
            # The new member learns of a room they did not ask for (a DM
            # someone opened, a private room they were added to).
            hub.send_to_users([username], notice, defer=defer)
        if not defer:
            self._arm_notices()

    def _arm_notices(self) -> None:
        self._notice_timer = asyncio.get_running_loop().call_later(
            self.limits.notice_interval, self._notice_tick
        )

    def _notice_tick(self) -> None:
        self._notice_timer = None
        if self.hub.flush_deferred():
            self._arm_notices()

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
        user = self._users.get(name)
        if user is None:
            record = await self.store.ensure_user(name)
            user = User(
                id=record.id, username=record.username, created_at=record.created_at
            )
            # Accounts are never renamed or deleted, so a found user stays
            # right; the bound only caps memory.
            if len(self._users) >= MAX_CACHED_USERS:
                self._users.clear()
            self._users[name] = user
        return user

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
        self.broker.publish(MemberAdded(room=slug, username=user.username))
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
            room = await self.store.create_room(
                room_id, title, RoomKind.DIRECT, None, [user.id, other.id]
            )
        except Conflict:
            # Both users opened the conversation at the same moment.
            room = await self._room(room_id)
            return room
        for name in (user.username, other_name):
            self.broker.publish(MemberAdded(room=room_id, username=name))
        return room

    async def room(self, user: User, room_id: object) -> Room:
        room = await self._room(room_id)
        await self._check_read(user, room)
        return room

    async def rooms(self, user: User) -> list[RoomState]:
        return await self.store.rooms_visible_to(user.id)

    async def members(self, user: User, room_id: object) -> list[Member]:
        room = await self._room(room_id)
        await self._check_read(user, room)
        return await self._members_of(room.id)

    async def _members_of(self, room_id: str) -> list[Member]:
        """Members with their live presence filled in."""
        found = []
        now = format_ms(now_ms())
        for member in await self.store.members(room_id):
            status, seen = self.activity.seen(member.username, member.last_seen, now)
            found.append(msgspec.structs.replace(member, status=status, last_seen=seen))
        return found

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
        if await self.store.add_member(room.id, target.id):
            self.broker.publish(MemberAdded(room=room.id, username=name))
        return next(m for m in await self._members_of(room.id) if m.username == name)

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
        return await (await self.submit(user, room_id, text, client_id))

    async def submit(
        self, user: User, room_id: object, text: object, client_id: object = None
    ) -> Coroutine[None, None, Message]:
        """Check and queue a message; await the result for the stored message.

        Everything that can refuse the message (text, room, access, rate)
        is decided before this returns, so messages submitted one after
        another are stored in that order even when the caller does not wait
        for each commit: how one connection pipelines its sends.
        """
        body = rules.message_text(text, self.limits.max_text)
        key = rules.client_id(client_id)
        room = await self._cached_room(room_id)
        await self._check_post(user, room)
        if not self._send_limiter.allow(user.id):
            raise RateLimited("too many messages; slow down")
        committed = await self.store.submit(room.id, user, body, key)
        return self._stored(committed, room.id, user.username)

    async def _stored(
        self, committed: asyncio.Future[Appended], room_id: str, username: str
    ) -> Message:
        appended = await committed
        self.activity.stop_typing(room_id, username)
        return appended.message

    async def edit(
        self, user: User, room_id: object, message_id: object, text: object
    ) -> Update:
        """Replace the text of one's own message; subscribers get an update."""
        body = rules.message_text(text, self.limits.max_text)
        room, message = await self._own_message(user, room_id, message_id)
        if message.sender != user.username:
            raise Forbidden("only the sender can edit a message")
        return await self.store.change(room.id, message.id, body)

    async def delete(self, user: User, room_id: object, message_id: object) -> Update:
        """Delete a message (its sender or the room's owner); the text is erased."""
        room, message = await self._own_message(user, room_id, message_id)
        if message.sender != user.username and room.owner != user.username:
            raise Forbidden("only the sender or the room's owner can delete a message")
        return await self.store.change(room.id, message.id, None)

    async def _own_message(
        self, user: User, room_id: object, message_id: object
    ) -> tuple[Room, Message]:
        if not isinstance(message_id, int) or isinstance(message_id, bool):
            raise BadRequest("message_id must be an integer")
        if not 1 <= message_id <= MAX_POSITION:
            raise NotFound(f"no message {message_id}")
        room = await self._cached_room(room_id)
        await self._check_read(user, room)
        message = await self.store.message(message_id)
        if message is None or message.room != room.id:
            raise NotFound(f"no message {message_id} in {room.id!r}")
        if message.deleted:
            raise NotFound(f"message {message_id} was deleted")
        return room, message

    async def presence(self, user: User, username: object) -> Presence:
        """Anyone signed in may ask after anyone's presence."""
        name = rules.username(username)
        if await self.store.user(name) is None:
            raise NotFound(f"no user {name!r}")
        return await self.activity.presence(name)

    async def typing(self, user: User, room_id: object, active: bool) -> None:
        """Relay that ``user`` is (or stopped) typing in a room they may post in."""
        room = await self._cached_room(room_id)
        await self._check_post(user, room)
        self.activity.typing(room.id, user.username, active)

    async def read(self, user: User, room_id: object, seq: object) -> int:
        """Move the caller's read position in a room forward to ``seq``.

        A position past the end of the stream is taken as the end. Returns
        the read position after the call.
        """
        position = _position(seq, "seq")
        if position is None:
            raise BadRequest("seq is required")
        room = await self._room(room_id)
        await self._check_post(user, room)
        return await self.activity.read(user, room.id, min(position, room.last_seq))

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
            small = await self.activity.is_small(room.id)
            members = await self._members_of(room.id) if small else None
        except BaseException:
            self.hub.unsubscribe(subscriber, room.id)
            raise
        return Joined(
            room=room,
            last_seq=last_seq,
            members=members,
            subscription=subscription,
            hub=self.hub,
            replayed=since_seq is not None,
        )

    def leave(self, subscriber: Subscriber, room_id: object) -> None:
        if not self.hub.unsubscribe(subscriber, rules.room_id(room_id)):
            raise NotFound(f"not joined to {room_id!r}")

    async def _replay(
        self, subscriber: Subscriber, room_id: str, since: int | None
    ) -> int:
        """Send stream entries after ``since``; return the position reached.

        Entries committed after the room was read here arrive live (held by
        the subscription meanwhile). A ``since`` past the end of the stream
        replays nothing and yields the real end, which tells the client that
        its position does not belong to this room's stream.
        """
        room = await self.store.room(room_id)
        last_seq = room.last_seq if room else 0
        if since is None or since >= last_seq:
            return last_seq

        position = since
        while position < last_seq:
            upto = min(position + REPLAY_PAGE, last_seq)
            for entry in await self.store.stream(room_id, position, upto):
                await subscriber.send(subscriber.codec.encode(_stream_event(entry)))
            position = upto
        return last_seq

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
            if await self.store.add_member(room.id, user.id):
                self.broker.publish(MemberAdded(room=room.id, username=user.username))
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
    if not isinstance(value, int) or isinstance(value, bool):
        raise BadRequest(f"{name} must be an integer")
    if not 0 <= value <= MAX_POSITION:
        raise BadRequest(f"{name} must be between 0 and {MAX_POSITION}")
    return value


def _room_of(entry: Entry) -> str:
    return entry.room if isinstance(entry, Message) else entry.message.room


def _stream_event(entry: Entry) -> StreamEvent:
    if isinstance(entry, Message):
        return MessagePosted(entry)
    return MessageChanged(entry)
