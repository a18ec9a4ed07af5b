"""Rows to domain structs, shared by the queries and the writer."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from serenchat.domain.models import Message, Room, RoomKind, format_ms
from serenchat.store.schema import messages, rooms, users

owners = users.alias("owners")
senders = users.alias("senders")

ROOM_COLUMNS = (*rooms.c, owners.c.username.label("owner_name"))
MESSAGE_COLUMNS = (*messages.c, senders.c.username.label("sender_name"))


def select_messages() -> sa.Select[Any]:
    """Messages joined with their senders' names."""
    return sa.select(*MESSAGE_COLUMNS).join(
        senders, senders.c.id == messages.c.sender_id
    )


def select_rooms() -> sa.Select[Any]:
    return sa.select(*ROOM_COLUMNS).outerjoin(owners, owners.c.id == rooms.c.owner_id)


def message(row: Any) -> Message:
    return Message(
        id=row.id,
        room=row.room_id,
        seq=row.seq,
        sender=row.sender_name,
        text=row.text,
        created_at=format_ms(row.created_at),
        client_id=row.client_id,
        edited_at=format_ms(row.edited_at) if row.edited_at is not None else None,
        deleted=bool(row.deleted),
    )


def room(row: Any) -> Room:
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
