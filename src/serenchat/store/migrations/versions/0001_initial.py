"""Users, rooms, members and messages; the public room ``general``.

Revision ID: 0001
Revises:
Create Date: 2026-12-03
"""

import time
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
LongText = sa.Text().with_variant(mysql.MEDIUMTEXT(), "mysql", "mariadb")
MYSQL: dict[str, Any] = {"mysql_charset": "utf8mb4", "mysql_engine": "InnoDB"}


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("username", sa.String(32), nullable=False, unique=True),
        sa.Column("password_hash", sa.String(255), nullable=True),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        **MYSQL,
    )
    rooms = op.create_table(
        "rooms",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("title", sa.String(200), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("owner_id", BigId, sa.ForeignKey("users.id"), nullable=True),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("last_seq", sa.BigInteger, nullable=False, server_default="0"),
        **MYSQL,
    )
    op.create_table(
        "members",
        sa.Column(
            "room_id", sa.String(64), sa.ForeignKey("rooms.id"), primary_key=True
        ),
        sa.Column("user_id", BigId, sa.ForeignKey("users.id"), primary_key=True),
        sa.Column("joined_at", sa.BigInteger, nullable=False),
        **MYSQL,
    )
    op.create_index("ix_members_user_id", "members", ["user_id"])
    op.create_table(
        "messages",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("room_id", sa.String(64), sa.ForeignKey("rooms.id"), nullable=False),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Column("sender_id", BigId, sa.ForeignKey("users.id"), nullable=False),
        sa.Column("text", LongText, nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("client_id", sa.String(64), nullable=True),
        sa.UniqueConstraint("room_id", "seq", name="uq_messages_room_seq"),
        sa.UniqueConstraint("sender_id", "client_id", name="uq_messages_sender_client"),
        **MYSQL,
    )
    op.bulk_insert(
        rooms,
        [
            {
                "id": "general",
                "title": "General",
                "kind": "public",
                "owner_id": None,
                "created_at": int(time.time() * 1000),
                "last_seq": 0,
            }
        ],
    )


def downgrade() -> None:
    op.drop_table("messages")
    op.drop_index("ix_members_user_id", table_name="members")
    op.drop_table("members")
    op.drop_table("rooms")
    op.drop_table("users")
