"""Presence, receipts, edits and deletions.

Adds ``users.last_seen``; per-member ``read_seq`` and ``delivered_seq``;
``messages.edited_at`` and ``messages.deleted``; and the ``changes`` table,
where each edit or deletion takes its own seq in the room's stream so that a
reconnecting client learns of it through the same ``since`` as of messages.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-03
"""

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
MYSQL: dict[str, Any] = {"mysql_charset": "utf8mb4", "mysql_engine": "InnoDB"}


def upgrade() -> None:
    with op.batch_alter_table("users") as users:
        users.add_column(sa.Column("last_seen", sa.BigInteger, nullable=True))
    with op.batch_alter_table("members") as members:
        members.add_column(
            sa.Column("read_seq", sa.BigInteger, nullable=False, server_default="0")
        )
        members.add_column(
            sa.Column(
                "delivered_seq", sa.BigInteger, nullable=False, server_default="0"
            )
        )
    with op.batch_alter_table("messages") as messages:
        messages.add_column(sa.Column("edited_at", sa.BigInteger, nullable=True))
        messages.add_column(
            sa.Column("deleted", sa.Boolean, nullable=False, server_default=sa.false())
        )
    op.create_table(
        "changes",
        sa.Column(
            "room_id", sa.String(64), sa.ForeignKey("rooms.id"), primary_key=True
        ),
        sa.Column("seq", sa.BigInteger, primary_key=True),
        sa.Column("message_id", BigId, sa.ForeignKey("messages.id"), nullable=False),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        **MYSQL,
    )


def downgrade() -> None:
    op.drop_table("changes")
    with op.batch_alter_table("messages") as messages:
        messages.drop_column("deleted")
        messages.drop_column("edited_at")
    with op.batch_alter_table("members") as members:
        members.drop_column("delivered_seq")
        members.drop_column("read_seq")
    with op.batch_alter_table("users") as users:
        users.drop_column("last_seen")
