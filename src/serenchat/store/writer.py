"""The group-commit writer: many concurrent sends, one transaction.

Every message goes through :meth:`GroupCommitWriter.append`. A single task
takes whatever is queued (up to ``max_batch``), and in one transaction
resolves idempotency keys, bumps each room's ``last_seq`` by the number of
its new messages and inserts them all. Only after the commit does it report
the new messages to ``on_commit`` (in seq order per room) and wake the
callers, so an acknowledged message is always durable.

Sequence numbers come from the row ``rooms.last_seq`` under the row lock
the UPDATE takes, so several processes sharing one database still hand out
gap-free numbers; the unique (room_id, seq) index backs that up.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from serenchat.domain.errors import ChatError, Conflict, Unavailable
from serenchat.domain.models import Message, format_ms, now_ms
from serenchat.store.schema import messages, rooms, users

log = logging.getLogger(__name__)

# A batch that loses a race on (sender_id, client_id) against another node is
# retried: the second attempt finds the other node's row and returns it.
MAX_ATTEMPTS = 3


class Appended(NamedTuple):
    """The stored message, and whether this call created it."""

    message: Message
    fresh: bool


@dataclass(slots=True)
class Draft:
    room_id: str
    sender_id: int
    sender: str
    text: str
    client_id: str | None
    future: asyncio.Future[Appended] = field(repr=False)

    @property
    def key(self) -> tuple[int, str] | None:
        return (self.sender_id, self.client_id) if self.client_id else None


class WriterStats:
    """Counters read by metrics and tests: how well commits are shared."""

    __slots__ = ("batches", "largest_batch", "messages")

    def __init__(self) -> None:
        self.batches = 0
        self.messages = 0
        self.largest_batch = 0


class GroupCommitWriter:
    """Batch concurrent appends into shared transactions.

    ``max_pending`` bounds the queue: when it is full, :meth:`append` waits,
    which slows the senders down instead of growing memory without end.
    """

    def __init__(
        self,
        engine: AsyncEngine,
        on_commit: Callable[[Sequence[Message]], None],
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

    async def append(
        self,
        room_id: str,
        sender_id: int,
        sender: str,
        text: str,
        client_id: str | None,
    ) -> Appended:
        """Store one message; return once it is committed."""
        if self._closing:
            raise Unavailable("the server is shutting down")
        future: asyncio.Future[Appended] = asyncio.get_running_loop().create_future()
        draft = Draft(room_id, sender_id, sender, text, client_id, future)
        await self._queue.put(draft)
        return await future

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
                results, fresh = await self._commit(batch)
            except IntegrityError:
                log.warning("batch lost an idempotency race", extra={"try": attempt})
                continue
            except Exception:
                if len(batch) > 1:
                    # Write one by one so that a single bad row cannot take
                    # the messages of other senders down with it.
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

        self.stats.batches += 1
        self.stats.messages += len(fresh)
        self.stats.largest_batch = max(self.stats.largest_batch, len(batch))

        if fresh:
            try:
                self.on_commit(fresh)
            except Exception:
                # The messages are stored; subscribers recover them by seq.
                log.exception("publishing committed messages failed")
        for draft, result in zip(batch, results, strict=True):
            if draft.future.done():
                continue  # the caller went away; the message is stored anyway
            if isinstance(result, ChatError):
                draft.future.set_exception(result)
            else:
                draft.future.set_result(result)

    async def _commit(
        self, batch: list[Draft]
    ) -> tuple[list[Appended | ChatError], list[Message]]:
        created_at = now_ms()
        async with self._engine.begin() as conn:
            known = await _existing(conn, [d.key for d in batch if d.key])

            # Decide per draft: a replay of a stored message, a repeat of a
            # draft earlier in this batch, or a new message.
            new: list[Draft] = []
            first_of: dict[tuple[int, str], Draft] = {}
            for draft in batch:
                key = draft.key
                if key is None or (key not in known and key not in first_of):
                    new.append(draft)
                    if key is not None:
                        first_of[key] = draft

            seqs = await _allocate(conn, new)
            rows = [
                {
                    "room_id": d.room_id,
                    "seq": seq,
                    "sender_id": d.sender_id,
                    "text": d.text,
                    "created_at": created_at,
                    "client_id": d.client_id,
                }
                for d, seq in zip(new, seqs, strict=True)
            ]
            ids = await _insert(conn, rows) if rows else []

        stamp = format_ms(created_at)
        stored = {
            id(d): Message(
                id=row_id,
                room=d.room_id,
                seq=seq,
                sender=d.sender,
                text=d.text,
                created_at=stamp,
                client_id=d.client_id,
            )
            for d, seq, row_id in zip(new, seqs, ids, strict=True)
        }
        results: list[Appended | ChatError] = []
        for draft in batch:
            key = draft.key
            if id(draft) in stored:
                results.append(Appended(stored[id(draft)], True))
                continue
            assert key is not None
            original = known.get(key) or stored[id(first_of[key])]
            if original.room != draft.room_id:
                results.append(
                    Conflict("client_id was already used for a message in another room")
                )
            else:
                results.append(Appended(original, False))

        fresh = sorted(stored.values(), key=lambda m: (m.room, m.seq))
        return results, fresh


async def _existing(
    conn: AsyncConnection, keys: list[tuple[int, str]]
) -> dict[tuple[int, str], Message]:
    """Messages already stored under these (sender_id, client_id) keys."""
    if not keys:
        return {}
    query = (
        sa.select(messages, users.c.username)
        .join(users, users.c.id == messages.c.sender_id)
        .where(sa.tuple_(messages.c.sender_id, messages.c.client_id).in_(keys))
    )
    found = {}
    for row in await conn.execute(query):
        found[(row.sender_id, row.client_id)] = Message(
            id=row.id,
            room=row.room_id,
            seq=row.seq,
            sender=row.username,
            text=row.text,
            created_at=format_ms(row.created_at),
            client_id=row.client_id,
        )
    return found


async def _allocate(conn: AsyncConnection, drafts: list[Draft]) -> list[int]:
    """Reserve consecutive seqs in each room, in the order of ``drafts``."""
    per_room: dict[str, int] = defaultdict(int)
    for draft in drafts:
        per_room[draft.room_id] += 1

    # Rooms are locked in a fixed order so that two writers sharing one
    # database cannot deadlock on each other's rows.
    next_seq: dict[str, int] = {}
    for room_id in sorted(per_room):
        count = per_room[room_id]
        await conn.execute(
            sa.update(rooms)
            .where(rooms.c.id == room_id)
            .values(last_seq=rooms.c.last_seq + count)
        )
        last = await conn.scalar(
            sa.select(rooms.c.last_seq).where(rooms.c.id == room_id)
        )
        if last is None:
            raise LookupError(f"room {room_id} vanished")
        next_seq[room_id] = last - count + 1

    seqs = []
    for draft in drafts:
        seqs.append(next_seq[draft.room_id])
        next_seq[draft.room_id] += 1
    return seqs


async def _insert(conn: AsyncConnection, rows: list[dict[str, object]]) -> list[int]:
    """Insert rows and return their ids, in the order of ``rows``."""
    result = await conn.execute(
        sa.insert(messages).returning(messages.c.id, sort_by_parameter_order=True),
        rows,
    )
    return [row.id for row in result]


def _fail(batch: list[Draft], error: ChatError) -> None:
    for draft in batch:
        if not draft.future.done():
            draft.future.set_exception(error)
