"""The store on every backend: migrations, group commit, seq, idempotency."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence

import pytest

from serenchat.domain.errors import Conflict, Unavailable
from serenchat.domain.models import Message, RoomKind, User
from serenchat.store import Store
from serenchat.store.migrate import current, upgrade


class Published:
    """Collects what the writer reports as committed."""

    def __init__(self) -> None:
        self.messages: list[Message] = []

    def __call__(self, batch: Sequence[Message]) -> None:
        self.messages.extend(batch)


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[Store]:
    store = Store(database_url, pool_size=4)
    await upgrade(store.engine)
    await store.start()
    yield store
    await store.close()


async def test_migrations_reach_head_and_seed_general(store: Store) -> None:
    """A new database is migrated to the newest revision and has `general`."""
    revision, head = await current(store.engine)
    assert revision == head == "0002"
    general = await store.room("general")
    assert general is not None
    assert general.kind is RoomKind.PUBLIC and general.last_seq == 0


async def test_upgrade_twice_changes_nothing(store: Store) -> None:
    """Running the migrations on an up-to-date database is a no-op."""
    alice = await store.create_user("alice", None)
    await store.append("general", alice, "kept", None)
    await upgrade(store.engine)
    assert [m.text for m in await store.messages("general")] == ["kept"]


async def test_concurrent_appends_share_transactions(store: Store) -> None:
    """Concurrent appends commit in shared batches with gap-free seqs."""
    published = Published()
    store.writer.on_commit = published
    users = [await store.create_user(f"u{i}", None) for i in range(10)]
    await store.create_room("other", "Other", RoomKind.PUBLIC, users[0], [])

    sends = [
        store.append(room, users[i % 10], f"m{i}", None)
        for i in range(300)
        for room in ("general", "other")
    ]
    results = await asyncio.gather(*sends)

    for room in ("general", "other"):
        seqs = sorted(r.message.seq for r in results if r.message.room == room)
        assert seqs == list(range(1, 301))
        stored = await store.messages(room, after=0, limit=1000)
        assert [m.seq for m in stored] == list(range(1, 301))
        assert (await store.room(room)).last_seq == 300  # type: ignore[union-attr]
    assert store.writer.stats.messages == 600
    assert store.writer.stats.batches < 600 / 4, "appends were not batched"
    # Published once each, after commit, in seq order within each room.
    for room in ("general", "other"):
        seqs = [m.seq for m in published.messages if m.room == room]
        assert seqs == list(range(1, 301))


async def test_client_id_makes_append_idempotent(store: Store) -> None:
    """Repeating a client_id returns the first message and stores nothing."""
    alice = await store.create_user("alice", None)
    first = await store.append("general", alice, "once", "key-1")
    again = await store.append("general", alice, "twice?", "key-1")
    assert first.fresh and not again.fresh
    assert again.message == first.message

    # Repeats inside one batch also collapse to one message.
    results = await asyncio.gather(
        *(store.append("general", alice, "burst", "key-2") for _ in range(20))
    )
    assert sum(r.fresh for r in results) == 1
    assert len({r.message.id for r in results}) == 1
    assert [m.text for m in await store.messages("general")] == ["once", "burst"]


async def test_client_id_is_per_sender(store: Store) -> None:
    """Two users may use the same client_id for different messages."""
    alice = await store.create_user("alice", None)
    bob = await store.create_user("bob", None)
    a = await store.append("general", alice, "from alice", "same")
    b = await store.append("general", bob, "from bob", "same")
    assert a.fresh and b.fresh and a.message.id != b.message.id


async def test_client_id_reused_in_another_room_conflicts(store: Store) -> None:
    """A client_id already used in one room is refused in another."""
    alice = await store.create_user("alice", None)
    await store.create_room("other", "Other", RoomKind.PUBLIC, alice, [alice.id])
    await store.append("general", alice, "here", "key")
    with pytest.raises(Conflict):
        await store.append("other", alice, "there", "key")


async def test_unicode_round_trips(store: Store) -> None:
    """Emoji, accents and CJK text are stored and read back unchanged."""
    alice = await store.create_user("alice", None)
    text = "héllo wörld 你好 🎉👩‍💻 " + "x" * 3900
    stored = await store.append("general", alice, text, None)
    (read,) = await store.messages("general")
    assert read.text == text == stored.message.text


async def test_history_pages(store: Store) -> None:
    """before/after/limit select the right window, ascending by seq."""
    alice = await store.create_user("alice", None)
    for i in range(1, 21):
        await store.append("general", alice, f"m{i}", None)

    def seqs(found: list[Message]) -> list[int]:
        return [m.seq for m in found]

    assert seqs(await store.messages("general", limit=5)) == [16, 17, 18, 19, 20]
    assert seqs(await store.messages("general", before=6, limit=3)) == [3, 4, 5]
    assert seqs(await store.messages("general", after=17)) == [18, 19, 20]
    window = await store.messages("general", after=4, before=9, limit=10)
    assert seqs(window) == [5, 6, 7, 8]


async def test_duplicate_user_and_room_conflict(store: Store) -> None:
    """Taken usernames and room ids raise Conflict."""
    alice = await store.create_user("alice", None)
    with pytest.raises(Conflict):
        await store.create_user("alice", None)
    await store.create_room("dup", "Dup", RoomKind.PRIVATE, alice, [alice.id])
    with pytest.raises(Conflict):
        await store.create_room("dup", "Dup", RoomKind.PUBLIC, alice, [])


async def test_writer_refuses_after_close(store: Store) -> None:
    """Once closing, the writer answers unavailable instead of hanging."""
    alice: User = await store.create_user("alice", None)
    await store.writer.close()
    with pytest.raises(Unavailable):
        await store.append("general", alice, "late", None)
