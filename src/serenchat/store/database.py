"""The Store: every query SerenChat makes, on one SQLAlchemy engine.

Callers get domain structs back, never rows. Writes of messages go through
the group-commit writer (:mod:`serenchat.store.writer`); the other writes
(accounts, rooms, memberships) are rare and take their own transactions.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Sequence

import msgspec
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from serenchat.domain.errors import Conflict
from serenchat.domain.models import (
    Member,
    Message,
    Room,
    RoomKind,
    RoomState,
    Update,
    User,
    format_ms,
    now_ms,
)
from serenchat.store import rows
from serenchat.store.engine import create_engine
from serenchat.store.schema import changes, members, messages, rooms, users
from serenchat.store.writer import Appended, Entry, GroupCommitWriter, OnCommit

log = logging.getLogger(__name__)


class UserRecord(User, frozen=True):
    """A user with what stays inside the service layer."""

    password_hash: str | None = None
    last_seen: str | None = None


class Store:
    """Persistence for users, rooms, memberships and messages."""

    def __init__(
        self,
        url: str,
        *,
        on_commit: OnCommit = lambda _: None,
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
            last_seen=format_ms(row.last_seen) if row.last_seen else None,
        )

    async def touch(self, user_id: int, at: int) -> None:
        """Record ``at`` (epoch ms) as the user's last_seen."""
        async with self.engine.begin() as conn:
            await conn.execute(
                sa.update(users).where(users.c.id == user_id).values(last_seen=at)
            )

    async def last_seen(self, usernames: Iterable[str]) -> dict[str, str | None]:
        names = list(usernames)
        query = sa.select(users.c.username, users.c.last_seen).where(
            users.c.username.in_(names)
        )
        async with self.engine.connect() as conn:
            return {
                row.username: format_ms(row.last_seen) if row.last_seen else None
                for row in await conn.execute(query)
            }

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
        query = rows.select_rooms().where(rooms.c.id == room_id)
        async with self.engine.connect() as conn:
            row = (await conn.execute(query)).first()
        return rows.room(row) if row is not None else None

    async def rooms_visible_to(self, user_id: int) -> list[RoomState]:
        """The rooms ``user_id`` belongs to, and every public room.

        ``unread`` counts the messages after the user's read position that
        others sent and nobody deleted.
        """
        mine = members.alias("mine")
        query = (
            sa.select(
                *rows.ROOM_COLUMNS,
                mine.c.user_id.label("member_id"),
                mine.c.read_seq,
            )
            .select_from(rooms)
            .outerjoin(rows.owners, rows.owners.c.id == rooms.c.owner_id)
            .outerjoin(
                mine, sa.and_(mine.c.room_id == rooms.c.id, mine.c.user_id == user_id)
            )
            .where(
                sa.or_(
                    rooms.c.kind == RoomKind.PUBLIC.value, mine.c.user_id.is_not(None)
                )
            )
            .order_by(rooms.c.id)
        )
        unread = (
            sa.select(messages.c.room_id, sa.func.count().label("unread"))
            .join(
                members,
                sa.and_(
                    members.c.room_id == messages.c.room_id,
                    members.c.user_id == user_id,
                ),
            )
            .where(
                messages.c.seq > members.c.read_seq,
                messages.c.sender_id != user_id,
                messages.c.deleted == sa.false(),
            )
            .group_by(messages.c.room_id)
        )
        async with self.engine.connect() as conn:
            found = list(await conn.execute(query))
            counts = {row.room_id: row.unread for row in await conn.execute(unread)}
        return [
            RoomState(
                **msgspec.structs.asdict(rows.room(row)),
                member=row.member_id is not None,
                last_read_seq=row.read_seq or 0,
                unread=counts.get(row.id, 0),
            )
            for row in found
        ]

    async def room_ids_of(self, user_id: int) -> set[str]:
        query = sa.select(members.c.room_id).where(members.c.user_id == user_id)
        async with self.engine.connect() as conn:
            return set((await conn.scalars(query)).all())

    async def is_member(self, room_id: str, user_id: int) -> bool:
        query = sa.select(sa.literal(1)).where(
            members.c.room_id == room_id, members.c.user_id == user_id
        )
        async with self.engine.connect() as conn:
            return (await conn.scalar(query)) is not None

    async def member_count(self, room_id: str) -> int:
        query = sa.select(sa.func.count()).where(members.c.room_id == room_id)
        async with self.engine.connect() as conn:
            return int(await conn.scalar(query) or 0)

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
        """Members with stream positions and last_seen (status is offline)."""
        query = (
            sa.select(
                users.c.username,
                users.c.last_seen,
                users.c.id,
                members.c.joined_at,
                members.c.read_seq,
                members.c.delivered_seq,
                rooms.c.owner_id,
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
                    last_seen=format_ms(row.last_seen) if row.last_seen else None,
                    read_seq=row.read_seq,
                    delivered_seq=max(row.delivered_seq, row.read_seq),
                )
                for row in await conn.execute(query)
            ]

    async def mark_read(
        self, room_id: str, user_id: int, seq: int
    ) -> tuple[int, int, bool]:
        """Move a read position forward to ``seq``; reading implies delivery.

        Return the member's (read_seq, delivered_seq) afterwards, and whether
        the read position moved (it never moves back).
        """
        async with self.engine.begin() as conn:
            moved = await conn.execute(
                sa.update(members)
                .where(
                    members.c.room_id == room_id,
                    members.c.user_id == user_id,
                    members.c.read_seq < seq,
                )
                .values(
                    read_seq=seq,
                    delivered_seq=sa.case(
                        (members.c.delivered_seq < seq, seq),
                        else_=members.c.delivered_seq,
                    ),
                )
            )
            row = (
                await conn.execute(
                    sa.select(members.c.read_seq, members.c.delivered_seq).where(
                        members.c.room_id == room_id, members.c.user_id == user_id
                    )
                )
            ).first()
        if row is None:
            return 0, 0, False
        return row.read_seq, max(row.read_seq, row.delivered_seq), bool(moved.rowcount)

    async def mark_delivered(self, positions: Sequence[tuple[str, int, int]]) -> None:
        """Move (room_id, user_id) delivered positions forward, in one go."""
        if not positions:
            return
        async with self.engine.begin() as conn:
            await conn.execute(
                sa.update(members)
                .where(
                    members.c.room_id == sa.bindparam("r"),
                    members.c.user_id == sa.bindparam("u"),
                    members.c.delivered_seq < sa.bindparam("s"),
                )
                .values(delivered_seq=sa.bindparam("s")),
                [{"r": r, "u": u, "s": s} for r, u, s in positions],
            )

    # Messages.

    async def append(
        self, room_id: str, sender: User, text: str, client_id: str | None
    ) -> Appended:
        """Store a message through the group-commit writer."""
        return await (await self.submit(room_id, sender, text, client_id))

    async def submit(
        self, room_id: str, sender: User, text: str, client_id: str | None
    ) -> asyncio.Future[Appended]:
        """Queue a message in the writer; the future resolves on commit."""
        return await self.writer.submit(
            room_id, sender.id, sender.username, text, client_id
        )

    async def change(self, room_id: str, message_id: int, text: str | None) -> Update:
        """Edit or delete a message through the group-commit writer."""
        return await self.writer.change(room_id, message_id, text)

    async def message(self, message_id: int) -> Message | None:
        query = rows.select_messages().where(messages.c.id == message_id)
        async with self.engine.connect() as conn:
            row = (await conn.execute(query)).first()
        return rows.message(row) if row is not None else None

    async def messages(
        self,
        room_id: str,
        *,
        before: int | None = None,
        after: int | None = None,
        limit: int = 50,
    ) -> list[Message]:
        """A page of messages in their latest state, ascending by seq.

        With ``after`` the page starts right after it (oldest first, as a
        reconnecting client wants); otherwise it is the newest ``limit``
        messages below ``before`` (or the newest of all).
        """
        query = rows.select_messages().where(messages.c.room_id == room_id).limit(limit)
        if before is not None:
            query = query.where(messages.c.seq < before)
        if after is not None:
            query = query.where(messages.c.seq > after).order_by(messages.c.seq)
        else:
            query = query.order_by(messages.c.seq.desc())

        async with self.engine.connect() as conn:
            found = [rows.message(row) for row in await conn.execute(query)]
        if after is None:
            found.reverse()
        return found

    async def stream(self, room_id: str, after: int, upto: int) -> list[Entry]:
        """The room's stream entries with ``after < seq <= upto``, in order.

        Messages come in their latest state; an edit or deletion of a message
        that is itself in the range is left out, since the message already
        carries it.
        """
        in_range = sa.and_(
            messages.c.room_id == room_id,
            messages.c.seq > after,
            messages.c.seq <= upto,
        )
        edits = (
            sa.select(
                changes.c.seq.label("change_seq"), changes.c.kind, *rows.MESSAGE_COLUMNS
            )
            .join(messages, messages.c.id == changes.c.message_id)
            .join(rows.senders, rows.senders.c.id == messages.c.sender_id)
            .where(
                changes.c.room_id == room_id,
                changes.c.seq > after,
                changes.c.seq <= upto,
                messages.c.seq <= after,
            )
        )
        async with self.engine.connect() as conn:
            entries: list[Entry] = [
                rows.message(row)
                for row in await conn.execute(rows.select_messages().where(in_range))
            ]
            entries += [
                Update(seq=row.change_seq, kind=row.kind, message=rows.message(row))
                for row in await conn.execute(edits)
            ]
        entries.sort(key=lambda e: e.seq)
        return entries


async def _add_member(
    conn: AsyncConnection, room_id: str, user_id: int, joined_at: int
) -> None:
    await conn.execute(
        sa.insert(members).values(room_id=room_id, user_id=user_id, joined_at=joined_at)
    )
