"""Persistence: schema, migrations, queries and the group-commit writer."""

from serenchat.store.database import Store

__all__ = ["Store"]
