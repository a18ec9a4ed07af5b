"""The group-commit writer: many concurrent writes, one transaction.

Every write to a room's stream (a new message, an edit, a deletion) goes
through :class:`GroupCommitWriter`. A single task takes whatever is queued
(up to ``max_batch``) and, in one transaction, resolves idempotency keys,
bumps each room's ``last_seq`` by the number of its new stream entries,
inserts the messages and applies the changes. Only after the commit does it
report the new entries to ``on_commit`` (in seq order per room) and wake
the callers, so an acknowledged write is always durable.

Sequence numbers come from the row ``rooms.last_seq`` under the row lock
the UPDATE takes, so several processes sharing one database still hand out
gap-free numbers; unique (room_id, seq) keys back that up.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from serenchat.domain.errors import ChatError, Conflict, NotFound, Unavailable
from serenchat.domain.models import Message, Update, format_ms, now_ms
from serenchat.store import rows
from serenchat.store.schema import changes, messages, rooms

log = logging.getLogger(__name__)

# A batch that loses a race on (sender_id, client_id) against another node is
# retried: the second attempt finds the other node's row and returns it.
MAX_ATTEMPTS = 3

Entry = Message | Update
OnCommit = Callable[[Sequence[Entry]], None]


class Appended(NamedTuple):
    """The stored message, and whether this call created it."""

    message: Message
    fresh: bool


@dataclass(slots=True)
class NewMessage:
    room_id: str
    sender_id: int
    sender: str
    text: str
    client_id: str | None
    future: asyncio.Future[Appended] = field(repr=False)

    @property
    def key(self) -> tuple[int, str] | None:
        return (self.sender_id, self.client_id) if self.client_id else None


@dataclass(slots=True)
class Change:
    """An edit (``text`` set) or a deletion (``text`` None) of a message."""

    room_id: str
    message_id: int
    text: str | None
    future: asyncio.Future[Update] = field(repr=False)

    @property
    def kind(self) -> str:
        return "delete" if self.text is None else "edit"


Draft = NewMessage | Change


class WriterStats:
    """Counters read by metrics and tests: how well commits are shared."""

    __slots__ = ("batches", "largest_batch", "messages")

    def __init__(self) -> None:
        self.batches = 0
        self.messages = 0
        self.largest_batch = 0


class GroupCommitWriter:
    """Batch concurrent stream writes into shared transactions.

    ``max_pending`` bounds the queue: when it is full, writers wait, which
    slows the senders down instead of growing memory without end.
    """

    def __init__(
        self,
        engine: AsyncEngine,
        on_commit: OnCommit,
        *,
        max_batch: int = 512,
        max_pending: int = 10_000,
    ) -> None:
        self._engine = engine
        self.on_commit = on_commit
        self._max_batch = max_batch
        self._queue: asyncio.Queue[Draft] = asyncio.Queue(max_pending)
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self.stats = WriterStats()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="group-commit-writer")

    async def close(self) -> None:
        """Commit what is queued, then stop."""
        self._closing = True
        await self._queue.join()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def submit(
        self,
        room_id: str,
        sender_id: int,
        sender: str,
        text: str,
        client_id: str | None,
    ) -> asyncio.Future[Appended]:
        """Queue one message; the future resolves once it is committed.

        Returns as soon as the message has its place in the queue, so a
        caller that submits several in turn has them stored in that order
        without waiting for each commit.
        """
        future: asyncio.Future[Appended] = self._future()
        await self._put(NewMessage(room_id, sender_id, sender, text, client_id, future))
        return future

    async def change(self, room_id: str, message_id: int, text: str | None) -> Update:
        """Edit (with ``text``) or delete (``text`` None) a stored message."""
        future: asyncio.Future[Update] = self._future()
        await self._put(Change(room_id, message_id, text, future))
        return await future

    def _future(self) -> asyncio.Future[Any]:
        if self._closing:
            raise Unavailable("the server is shutting down")
        return asyncio.get_running_loop().create_future()

    async def _put(self, draft: Draft) -> None:
        await self._queue.put(draft)

    async def _scrub(self) -> None:
        # In WAL mode the page images that still hold a deleted text live
        # on in the -wal file until a checkpoint; copy them home (where
        # secure_delete zeroes freed space) and truncate the log now.
        # Best effort: a reader holding an old snapshot can defer it.
        try:
            async with self._engine.connect() as conn:
                await conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        except Exception:
            log.warning("checkpoint after deletion failed", exc_info=True)

    # The writer task.

    async def _run(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while len(batch) < self._max_batch and not self._queue.empty():
                batch.append(self._queue.get_nowait())

            try:
                await self._write(batch)
            finally:
                for _ in batch:
                    self._queue.task_done()

    async def _write(self, batch: list[Draft]) -> None:
        for attempt in range(1, MAX_ATTEMPTS + 1):
            try:
                results, entries = await self._commit(batch)
            except IntegrityError:
                log.warning("batch lost an idempotency race", extra={"try": attempt})
                continue
            except Exception:
                if len(batch) > 1:
                    # Write one by one so that a single bad row cannot take
                    # the writes of other senders down with it.
                    log.warning("batch failed, retrying singly", exc_info=True)
                    for draft in batch:
                        await self._write([draft])
                    return
                log.exception("commit failed", extra={"room": batch[0].room_id})
                _fail(batch, Unavailable("the message store is unavailable"))
                return
            break
        else:
            _fail(batch, Unavailable("the message store is busy, retry"))
            return

        if self._engine.dialect.name == "sqlite" and any(
            isinstance(d, Change) and d.text is None for d in batch
        ):
            await self._scrub()

        self.stats.batches += 1
        self.stats.messages += sum(isinstance(e, Message) for e in entries)
        self.stats.largest_batch = max(self.stats.largest_batch, len(batch))

        if entries:
            try:
                self.on_commit(entries)
            except Exception:
                # The writes are stored; subscribers recover them by seq.
                log.exception("publishing committed entries failed")
        for draft, result in zip(batch, results, strict=True):
            future: asyncio.Future[Any] = draft.future
            if future.done():
                continue  # the caller went away; the write is stored anyway
            if isinstance(result, ChatError):
                future.set_exception(result)
            else:
                future.set_result(result)

    async def _commit(
        self, batch: list[Draft]
    ) -> tuple[list[Appended | Update | ChatError], list[Entry]]:
        now = now_ms()
        async with self._engine.begin() as conn:
            news = [d for d in batch if isinstance(d, NewMessage)]
            known = await _existing(conn, [d.key for d in news if d.key])

            # A draft takes a stream position unless it repeats a stored
            # message, or one earlier in this batch, by its client_id.
            taking: list[Draft] = []
            first_of: dict[tuple[int, str], NewMessage] = {}
            for draft in batch:
                if isinstance(draft, NewMessage):
                    key = draft.key
                    if key is not None and (key in known or key in first_of):
                        continue
                    if key is not None:
                        first_of[key] = draft
                taking.append(draft)

            seqs = await _allocate(conn, taking)
            inserts = [
                (d, seq) for d, seq in zip(taking, seqs, strict=True)
                if isinstance(d, NewMessage)
            ]  # fmt: skip
            ids = await _insert(conn, inserts, now) if inserts else []
            stored: dict[int, Entry] = {}
            for (draft, seq), row_id in zip(inserts, ids, strict=True):
                stored[id(draft)] = Message(
                    id=row_id,
                    room=draft.room_id,
                    seq=seq,
                    sender=draft.sender,
                    text=draft.text,
                    created_at=format_ms(now),
                    client_id=draft.client_id,
                )
            lost: set[int] = set()
            for draft, seq in zip(taking, seqs, strict=True):
                if isinstance(draft, Change):
                    update, applied = await _apply(conn, draft, seq, now)
                    stored[id(draft)] = update
                    if not applied:
                        lost.add(id(draft))

        results: list[Appended | Update | ChatError] = []
        for draft in batch:
            entry = stored.get(id(draft))
            if isinstance(draft, Change):
                assert isinstance(entry, Update)
                results.append(
                    NotFound("the message was deleted") if id(draft) in lost else entry
                )
            elif isinstance(entry, Message):
                results.append(Appended(entry, True))
            else:
                key = draft.key
                assert key is not None
                original = known.get(key) or stored[id(first_of[key])]
                assert isinstance(original, Message)
                results.append(_repeat_result(draft, original))

        entries = sorted(stored.values(), key=_stream_order)
        return results, entries


def _stream_order(entry: Entry) -> tuple[str, int]:
    if isinstance(entry, Message):
        return entry.room, entry.seq
    return entry.message.room, entry.seq


def _repeat_result(draft: NewMessage, original: Message) -> Appended | ChatError:
    if original.room != draft.room_id:
        return Conflict("client_id was already used for a message in another room")
    return Appended(original, False)


async def _existing(
    conn: AsyncConnection, keys: list[tuple[int, str]]
) -> dict[tuple[int, str], Message]:
    """Messages already stored under these (sender_id, client_id) keys."""
    if not keys:
        return {}
    query = rows.select_messages().where(
        sa.tuple_(messages.c.sender_id, messages.c.client_id).in_(keys)
    )
    found = {}
    for row in await conn.execute(query):
        found[(row.sender_id, row.client_id)] = rows.message(row)
    return found


# The statements of the write path, built once: constructing a SQLAlchemy
# statement costs more than running it on a warm SQLite connection.
_BUMP = (
    sa.update(rooms)
    .where(rooms.c.id == sa.bindparam("room"))
    .values(last_seq=rooms.c.last_seq + sa.bindparam("count", type_=sa.BigInteger))
)
_BUMP_RETURNING = _BUMP.returning(rooms.c.last_seq)
_LAST_SEQ = sa.select(rooms.c.last_seq).where(rooms.c.id == sa.bindparam("room"))
_INSERT = sa.insert(messages)
_IDS = sa.select(messages.c.id, messages.c.seq).where(
    messages.c.room_id == sa.bindparam("room"),
    messages.c.seq.between(sa.bindparam("low"), sa.bindparam("high")),
)


async def _allocate(conn: AsyncConnection, drafts: Sequence[Draft]) -> list[int]:
    """Reserve consecutive seqs in each room, in the order of ``drafts``."""
    per_room: dict[str, int] = defaultdict(int)
    for draft in drafts:
        per_room[draft.room_id] += 1

    # Rooms are locked in a fixed order so that two writers sharing one
    # database cannot deadlock on each other's rows. Where UPDATE can
    # return the new value (SQLite, PostgreSQL) it does; MariaDB reads it
    # back under the lock the UPDATE took.
    returning = conn.dialect.update_returning
    next_seq: dict[str, int] = {}
    for room_id in sorted(per_room):
        count = per_room[room_id]
        params = {"room": room_id, "count": count}
        if returning:
            last = (await conn.execute(_BUMP_RETURNING, params)).scalar()
        else:
            await conn.execute(_BUMP, params)
            last = await conn.scalar(_LAST_SEQ, {"room": room_id})
        if last is None:
            raise LookupError(f"room {room_id} vanished")
        next_seq[room_id] = last - count + 1

    seqs = []
    for draft in drafts:
        seqs.append(next_seq[draft.room_id])
        next_seq[draft.room_id] += 1
    return seqs


async def _insert(
    conn: AsyncConnection, drafts: list[tuple[NewMessage, int]], now: int
) -> list[int]:
    """Insert new messages and return their ids, in order."""
    values = [
        {
            "room_id": d.room_id,
            "seq": seq,
            "sender_id": d.sender_id,
            "text": d.text,
            "created_at": now,
            "client_id": d.client_id,
        }
        for d, seq in drafts
    ]
    if len(values) == 1:
        # A lone row reports its key straight from the driver.
        result = await conn.execute(_INSERT, values[0])
        key = result.inserted_primary_key
        assert key is not None
        return [int(key[0])]

    # One executemany, then the ids by (room, seq), which this transaction
    # just allocated: INSERT ... RETURNING with ordered rows would run as a
    # statement per row on SQLite, a worker-thread round trip each.
    await conn.execute(_INSERT, values)
    spans: dict[str, tuple[int, int]] = {}
    for draft, seq in drafts:
        low, high = spans.get(draft.room_id, (seq, seq))
        spans[draft.room_id] = (min(low, seq), max(high, seq))
    ids: dict[tuple[str, int], int] = {}
    for room_id, (low, high) in spans.items():
        found = await conn.execute(_IDS, {"room": room_id, "low": low, "high": high})
        for row in found:
            ids[(room_id, row.seq)] = row.id
    return [ids[(draft.room_id, seq)] for draft, seq in drafts]


async def _apply(
    conn: AsyncConnection, draft: Change, seq: int, now: int
) -> tuple[Update, bool]:
    """Apply an edit or deletion at stream position ``seq``.

    Return the update and whether it changed the message: a change that
    lost a race with a deletion still takes its stream slot (the slot
    carries the deleted state, so the stream stays gap-free), but its
    caller is told the message is gone.
    """
    target = sa.and_(
        messages.c.id == draft.message_id,
        messages.c.room_id == draft.room_id,
        messages.c.deleted == sa.false(),
    )
    if draft.text is None:
        # The text is overwritten, not hidden: a deletion must not leave
        # the words in the database.
        change = {"text": "", "deleted": True}
    else:
        change = {"text": draft.text, "edited_at": now}
    result = await conn.execute(sa.update(messages).where(target).values(**change))
    await conn.execute(
        sa.insert(changes).values(
            room_id=draft.room_id,
            seq=seq,
            message_id=draft.message_id,
            kind=draft.kind,
            created_at=now,
        )
    )
    row = (
        await conn.execute(
            rows.select_messages().where(messages.c.id == draft.message_id)
        )
    ).one()
    update = Update(seq=seq, kind=draft.kind, message=rows.message(row))
    return update, bool(result.rowcount)


def _fail(batch: list[Draft], error: ChatError) -> None:
    for draft in batch:
        future: asyncio.Future[Any] = draft.future
        if not future.done():
            future.set_exception(error)
