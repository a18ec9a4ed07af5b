"""The Store: every query SerenChat makes, on one SQLAlchemy engine.

Callers get domain structs back, never rows. Writes of messages go through
the group-commit writer (:mod:`serenchat.store.writer`); the other writes
(accounts, rooms, memberships) are rare and take their own transactions.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from serenchat.domain.errors import Conflict
from serenchat.domain.models import (
    Member,
    Message,
    Room,
    RoomKind,
    User,
    format_ms,
    now_ms,
)
from serenchat.store.engine import create_engine
from serenchat.store.schema import members, messages, rooms, users
from serenchat.store.writer import Appended, GroupCommitWriter

log = logging.getLogger(__name__)

owners = users.alias("owners")
senders = users.alias("senders")

ROOM_COLUMNS = (*rooms.c, owners.c.username.label("owner_name"))
MESSAGE_COLUMNS = (*messages.c, senders.c.username.label("sender_name"))


class UserRecord(User, frozen=True):
    """A user with the password hash; stays inside the service layer."""

    password_hash: str | None = None


class Store:
    """Persistence for users, rooms, memberships and messages."""

    def __init__(
        self,
        url: str,
        *,
        on_commit: Callable[[Sequence[Message]], None] = lambda _: None,
        pool_size: int = 10,
        max_batch: int = 512,
        max_pending: int = 10_000,
    ) -> None:
        self.url = url
        self.engine: AsyncEngine = create_engine(url, pool_size=pool_size)
        self.writer = GroupCommitWriter(
            self.engine, on_commit, max_batch=max_batch, max_pending=max_pending
        )

    @property
    def backend(self) -> str:
        return self.engine.dialect.name

    async def start(self) -> None:
        self.writer.start()

    async def close(self) -> None:
        await self.writer.close()
        await self.engine.dispose()

    # Users.

    async def create_user(self, username: str, password_hash: str | None) -> User:
        """Insert a user; raise Conflict if the name is taken."""
        created_at = now_ms()
        try:
            async with self.engine.begin() as conn:
                user_id = await conn.scalar(
                    sa.insert(users)
                    .values(
                        username=username,
                        password_hash=password_hash,
                        created_at=created_at,
                    )
                    .returning(users.c.id)
                )
                await _add_member(conn, "general", user_id, created_at)
        except IntegrityError:
            raise Conflict(f"username {username!r} is taken") from None
        return User(id=user_id, username=username, created_at=format_ms(created_at))

    async def user(self, username: str) -> UserRecord | None:
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(sa.select(users).where(users.c.username == username))
            ).first()
        if row is None:
            return None
        return UserRecord(
            id=row.id,
            username=row.username,
            created_at=format_ms(row.created_at),
            password_hash=row.password_hash,
        )

    async def ensure_user(self, username: str) -> User:
        """Return the user, creating it without a password if it is new."""
        found = await self.user(username)
        if found is not None:
            return found
        try:
            return await self.create_user(username, None)
        except Conflict:
            # Another request provisioned it first.
            found = await self.user(username)
            assert found is not None
            return found

    # Rooms and members.

    async def create_room(
        self,
        room_id: str,
        title: str,
        kind: RoomKind,
        owner: User | None,
        member_ids: Sequence[int],
    ) -> Room:
        """Insert a room with its first members; Conflict if the id is taken."""
        created_at = now_ms()
        try:
            async with self.engine.begin() as conn:
                await conn.execute(
                    sa.insert(rooms).values(
                        id=room_id,
                        title=title,
                        kind=kind.value,
                        owner_id=owner.id if owner else None,
                        created_at=created_at,
                        last_seq=0,
                    )
                )
                for user_id in member_ids:
                    await _add_member(conn, room_id, user_id, created_at)
        except IntegrityError:
            raise Conflict(f"room {room_id!r} already exists") from None
        return Room(
            id=room_id,
            title=title,
            kind=kind,
            private=kind is not RoomKind.PUBLIC,
            owner=owner.username if owner else None,
            created_at=format_ms(created_at),
            last_seq=0,
        )

    async def room(self, room_id: str) -> Room | None:
        query = _rooms_query().where(rooms.c.id == room_id)
        async with self.engine.connect() as conn:
            row = (await conn.execute(query)).first()
        return _room(row) if row is not None else None

    async def rooms_visible_to(self, user_id: int) -> list[Room]:
        """The rooms ``user_id`` belongs to, and every public room."""
        mine = sa.select(members.c.room_id).where(members.c.user_id == user_id)
        query = (
            _rooms_query()
            .where(sa.or_(rooms.c.kind == RoomKind.PUBLIC.value, rooms.c.id.in_(mine)))
            .order_by(rooms.c.id)
        )
        async with self.engine.connect() as conn:
            return [_room(row) for row in await conn.execute(query)]

    async def is_member(self, room_id: str, user_id: int) -> bool:
        query = sa.select(sa.literal(1)).where(
            members.c.room_id == room_id, members.c.user_id == user_id
        )
        async with self.engine.connect() as conn:
            return (await conn.scalar(query)) is not None

    async def add_member(self, room_id: str, user_id: int) -> bool:
        """Make ``user_id`` a member; return False if it already was one."""
        try:
            async with self.engine.begin() as conn:
                await _add_member(conn, room_id, user_id, now_ms())
        except IntegrityError:
            return False
        return True

    async def remove_member(self, room_id: str, user_id: int) -> bool:
        """Remove a membership; return False if there was none."""
        async with self.engine.begin() as conn:
            result = await conn.execute(
                sa.delete(members).where(
                    members.c.room_id == room_id, members.c.user_id == user_id
                )
            )
        return bool(result.rowcount)

    async def members(self, room_id: str) -> list[Member]:
        query = (
            sa.select(
                users.c.username, members.c.joined_at, rooms.c.owner_id, users.c.id
            )
            .join(users, users.c.id == members.c.user_id)
            .join(rooms, rooms.c.id == members.c.room_id)
            .where(members.c.room_id == room_id)
            .order_by(users.c.username)
        )
        async with self.engine.connect() as conn:
            return [
                Member(
                    username=row.username,
                    joined_at=format_ms(row.joined_at),
                    owner=row.owner_id == row.id,
                )
                for row in await conn.execute(query)
            ]

    # Messages.

    async def append(
        self, room_id: str, sender: User, text: str, client_id: str | None
    ) -> Appended:
        """Store a message through the group-commit writer."""
        return await self.writer.append(
            room_id, sender.id, sender.username, text, client_id
        )

    async def messages(
        self,
        room_id: str,
        *,
        before: int | None = None,
        after: int | None = None,
        limit: int = 50,
    ) -> list[Message]:
        """A page of messages, ascending by seq.

        With ``after`` the page starts right after it (oldest first, as a
        reconnecting client wants); otherwise it is the newest ``limit``
        messages below ``before`` (or the newest of all).
        """
        query = (
            sa.select(*MESSAGE_COLUMNS)
            .join(senders, senders.c.id == messages.c.sender_id)
            .where(messages.c.room_id == room_id)
            .limit(limit)
        )
        if before is not None:
            query = query.where(messages.c.seq < before)
        if after is not None:
            query = query.where(messages.c.seq > after).order_by(messages.c.seq)
        else:
            query = query.order_by(messages.c.seq.desc())

        async with self.engine.connect() as conn:
            found = [_message(row) for row in await conn.execute(query)]
        if after is None:
            found.reverse()
        return found


async def _add_member(
    conn: AsyncConnection, room_id: str, user_id: int, joined_at: int
) -> None:
    await conn.execute(
        sa.insert(members).values(room_id=room_id, user_id=user_id, joined_at=joined_at)
    )


def _rooms_query() -> sa.Select[Any]:
    return sa.select(*ROOM_COLUMNS).outerjoin(owners, owners.c.id == rooms.c.owner_id)


def _room(row: sa.Row[Any]) -> Room:
    kind = RoomKind(row.kind)
    return Room(
        id=row.id,
        title=row.title,
        kind=kind,
        private=kind is not RoomKind.PUBLIC,
        owner=row.owner_name,
        created_at=format_ms(row.created_at),
        last_seq=row.last_seq,
    )


def _message(row: sa.Row[Any]) -> Message:
    return Message(
        id=row.id,
        room=row.room_id,
        seq=row.seq,
        sender=row.sender_name,
        text=row.text,
        created_at=format_ms(row.created_at),
        client_id=row.client_id,
    )
