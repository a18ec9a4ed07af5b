"""Tables, in SQLAlchemy Core; the migrations under ``migrations/`` build them.

Timestamps are integer milliseconds since the epoch: exact, sortable and the
same on SQLite, PostgreSQL and MySQL, whose datetime types all differ.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import mysql

# SQLite only auto-increments an INTEGER PRIMARY KEY (the rowid alias).
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
# MySQL's TEXT holds 64 KiB; a configured limit may go past that in utf8mb4.
LongText = sa.Text().with_variant(mysql.MEDIUMTEXT(), "mysql", "mariadb")

MYSQL_OPTIONS: dict[str, Any] = {"mysql_charset": "utf8mb4", "mysql_engine": "InnoDB"}

metadata = sa.MetaData()

users = sa.Table(
    "users",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("username", sa.String(32), nullable=False, unique=True),
    # Null for users provisioned from an external token: no password login.
    sa.Column("password_hash", sa.String(255), nullable=True),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    # When the user's last connection closed (or, while online, opened).
    sa.Column("last_seen", sa.BigInteger, nullable=True),
    **MYSQL_OPTIONS,
)

rooms = sa.Table(
    "rooms",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("title", sa.String(200), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("owner_id", BigId, sa.ForeignKey("users.id"), nullable=True),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    # The highest seq handed out in this room; the writer bumps it in the
    # same transaction that inserts the messages, which keeps seq gap-free.
    sa.Column("last_seq", sa.BigInteger, nullable=False, server_default="0"),
    **MYSQL_OPTIONS,
)

members = sa.Table(
    "members",
    metadata,
    sa.Column("room_id", sa.String(64), sa.ForeignKey("rooms.id"), primary_key=True),
    sa.Column("user_id", BigId, sa.ForeignKey("users.id"), primary_key=True),
    sa.Column("joined_at", sa.BigInteger, nullable=False),
    # Stream positions; both only ever move forward.
    sa.Column("read_seq", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("delivered_seq", sa.BigInteger, nullable=False, server_default="0"),
    sa.Index("ix_members_user_id", "user_id"),
    **MYSQL_OPTIONS,
)

messages = sa.Table(
    "messages",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("room_id", sa.String(64), sa.ForeignKey("rooms.id"), nullable=False),
    sa.Column("seq", sa.BigInteger, nullable=False),
    sa.Column("sender_id", BigId, sa.ForeignKey("users.id"), nullable=False),
    sa.Column("text", LongText, nullable=False),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.Column("client_id", sa.String(64), nullable=True),
    sa.Column("edited_at", sa.BigInteger, nullable=True),
    # A deleted message keeps its row (its seq stays taken) but not its text.
    sa.Column("deleted", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.UniqueConstraint("room_id", "seq", name="uq_messages_room_seq"),
    # NULL client ids never collide (SQL treats NULLs as distinct), so only
    # messages that carry one are deduplicated.
    sa.UniqueConstraint("sender_id", "client_id", name="uq_messages_sender_client"),
    **MYSQL_OPTIONS,
)

# Edits and deletions, each at its own seq in the room's stream (the same
# counter as messages), so that ``since`` covers them too.
changes = sa.Table(
    "changes",
    metadata,
    sa.Column("room_id", sa.String(64), sa.ForeignKey("rooms.id"), primary_key=True),
    sa.Column("seq", sa.BigInteger, primary_key=True),
    sa.Column("message_id", BigId, sa.ForeignKey("messages.id"), nullable=False),
    sa.Column("kind", sa.String(8), nullable=False),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    **MYSQL_OPTIONS,
)
