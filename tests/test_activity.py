"""Presence, typing, receipts, unread counts, edits and deletions.

All through real server processes over real sockets.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from typing import Any

from tests.conftest import Client, Harness, Ws, harness_on
from tests.test_guarantees import RawClient


async def joined(harness: Harness, client: Client, room: str = "general") -> Ws:
    ws = await harness.ws(client)
    await ws.ok({"type": "join", "room": room})
    return ws


def presence_of(events: list[dict[str, Any]], user: str) -> list[str]:
    return [
        e["status"] for e in events if e["type"] == "presence" and e["user"] == user
    ]


# Presence.


async def test_two_tabs_go_offline_only_when_both_close(harness: Harness) -> None:
    """A user with two connections is offline only after the second closes."""
    alice, bob = await harness.user("alice"), await harness.user("bob")
    watcher = await harness.ws(bob)

    tab1 = await harness.ws(alice)
    assert (await watcher.next("presence", user="alice"))["status"] == "online"
    tab2 = await harness.ws(alice)

    await tab1.close()
    assert presence_of(await watcher.collect(0.5), "alice") == []
    await tab2.close()
    offline = await watcher.next("presence", user="alice")
    assert offline["status"] == "offline"
    assert offline["last_seen"].endswith("Z")


async def test_fifth_tab_sends_no_presence(harness: Harness) -> None:
    """Opening more tabs of an online user announces nothing more."""
    alice, bob = await harness.user("alice"), await harness.user("bob")
    watcher = await harness.ws(bob)
    for _ in range(5):
        await harness.ws(alice)
    assert presence_of(await watcher.collect(0.7), "alice") == ["online"]


async def test_away_folds_over_connections(harness: Harness) -> None:
    """A user is away only when every connection says so."""
    alice, bob = await harness.user("alice"), await harness.user("bob")
    watcher = await harness.ws(bob)
    tab1, tab2 = await harness.ws(alice), await harness.ws(alice)
    await watcher.next("presence", user="alice", status="online")

    reply = await tab1.ok({"type": "presence", "status": "away"})
    assert reply["status"] == "online"  # tab2 is still active
    reply = await tab2.ok({"type": "presence", "status": "away"})
    assert reply["status"] == "away"
    await watcher.next("presence", user="alice", status="away")

    await tab1.ok({"type": "presence", "status": "online"})
    await watcher.next("presence", user="alice", status="online")
    status = await bob.call("GET", "/users/alice/presence")
    assert status["status"] == "online"

    bad = await tab1.request({"type": "presence", "status": "busy"})
    assert bad["code"] == "bad_request"


async def test_vanished_client_goes_offline_within_interval(
    server_factory: Any,
) -> None:
    """A peer that stops answering pings is dropped and marked offline."""
    server = server_factory("--ping-interval", "1")
    async with harness_on(server) as harness:
        alice, bob = await harness.user("alice"), await harness.user("bob")
        watcher = await harness.ws(bob)

        ghost = RawClient(server.port)  # never reads, so never answers a ping
        ghost.send({"type": "hello", "token": alice.token})
        await watcher.next("presence", user="alice", status="online")
        started = time.monotonic()
        await watcher.next("presence", timeout=5, user="alice", status="offline")
        # Ping after 1 s, pong due 0.5 s later; allow scheduling slack.
        assert time.monotonic() - started < 3.0


async def test_presence_reaches_only_users_sharing_a_room(harness: Harness) -> None:
    """Someone who shares no room with a user hears nothing of them."""
    alice, bob, carol = [await harness.user(n) for n in ("alice", "bob", "carol")]
    await carol.call("DELETE", "/rooms/general/members/carol")
    for client in (alice, bob):
        await client.call("GET", "/me")  # both are in general
    watch_bob, watch_carol = await harness.ws(bob), await harness.ws(carol)
    watch_bob.clear()

    tab = await harness.ws(alice)
    await watch_bob.next("presence", user="alice", status="online")
    assert presence_of(await watch_carol.collect(0.5), "alice") == []

    # Once carol shares a room with alice, she hears of her.
    await alice.call("POST", "/dms", {"username": "carol"})
    await tab.ok({"type": "presence", "status": "away"})
    await watch_carol.next("presence", user="alice", status="away")


async def test_a_connection_storm_announces_each_user_once(
    server_factory: Any,
) -> None:
    """Users connecting at once: each change reaches everyone, once.

    After the first notice of a quiet spell, which goes out at once, notices
    are held and sent every notice_interval (4 s here, to tell the two
    apart); none may be lost or repeated on the way.
    """
    server = server_factory("--send-rate", "0", "--notice-interval", "4")
    async with harness_on(server) as harness:
        watcher = await harness.ws(await harness.user("watcher"))
        crowd = [await harness.user(f"crowd{i}") for i in range(16)]
        await asyncio.sleep(4.5)  # a quiet spell: the next change goes at once

        first = await harness.ws(crowd[0])
        started = time.monotonic()
        assert (await watcher.next("presence", user="crowd0"))["status"] == "online"
        assert time.monotonic() - started < 1.5
        sockets = await asyncio.gather(*(harness.ws(c) for c in crowd[1:]))
        assert await watcher.collect(1.0) == []  # held for the interval

        events = await watcher.collect(4.0)
        for i in range(1, 16):
            assert presence_of(events, f"crowd{i}") == ["online"], i
        # The newcomers, too, hear of a later change.
        await first.close()
        heard = await sockets[-1].collect(7.5)
        assert presence_of(heard, "crowd0") == ["offline"]


async def test_join_and_members_carry_presence(harness: Harness) -> None:
    """join's ok and GET members tell each member's status and last_seen."""
    alice, bob = await harness.user("alice"), await harness.user("bob")
    await harness.ws(alice)
    ws = await harness.ws(bob)
    reply = await ws.ok({"type": "join", "room": "general"})
    members = {m["username"]: m for m in reply["members"]}
    assert members["alice"]["status"] == "online"
    assert members["bob"]["status"] == "online"

    carol = await harness.user("carol")
    listed = await carol.call("GET", "/rooms/general/members")
    by_name = {m["username"]: m for m in listed["members"]}
    assert by_name["carol"]["status"] == "offline"
    assert by_name["carol"]["last_seen"] is None
    assert by_name["alice"]["status"] == "online"


async def test_last_seen_survives_restart(harness: Harness) -> None:
    """last_seen is stored: a restarted server still reports it."""
    alice, bob = await harness.user("alice"), await harness.user("bob")
    ws = await harness.ws(alice)
    await ws.close()
    await asyncio.sleep(0.3)
    before = await bob.call("GET", "/users/alice/presence")
    assert before["status"] == "offline" and before["last_seen"]

    await asyncio.to_thread(harness.server.stop)
    await asyncio.to_thread(harness.server.start)
    after = await bob.call("GET", "/users/alice/presence")
    assert after == before


# Typing.


async def test_typing_is_relayed_to_others_and_expires(server_factory: Any) -> None:
    """Typing reaches the other subscribers, and ends by itself."""
    server = server_factory("--typing-ttl", "0.5")
    async with harness_on(server) as harness:
        alice, bob = await harness.user("alice"), await harness.user("bob")
        wa, wb = await joined(harness, alice), await joined(harness, bob)

        await wa.ok({"type": "typing", "room": "general", "active": True})
        shown = await wb.next("typing", user="alice")
        assert shown == {
            "type": "typing",
            "room": "general",
            "user": "alice",
            "active": True,
        }
        started = time.monotonic()
        ended = await wb.next("typing", timeout=3, user="alice")
        assert ended["active"] is False
        assert 0.3 < time.monotonic() - started < 2.0
        # The typist's own connections are not told about themselves.
        assert [e for e in await wa.collect(0.2) if e["type"] == "typing"] == []


async def test_sending_ends_typing(harness: Harness) -> None:
    """A message from a typist ends their indicator at once."""
    alice, bob = await harness.user("alice"), await harness.user("bob")
    wa, wb = await joined(harness, alice), await joined(harness, bob)
    await wa.ok({"type": "typing", "room": "general", "active": True})
    await wb.next("typing", user="alice", active=True)
    await wa.ok({"type": "send", "room": "general", "text": "done"})
    await wb.next("typing", timeout=2, user="alice", active=False)


async def test_typing_cannot_flood(harness: Harness) -> None:
    """Hundreds of typing frames become a handful of relayed changes."""
    alice, bob = await harness.user("alice"), await harness.user("bob")
    wa, wb = await joined(harness, alice), await joined(harness, bob)
    for i in range(200):
        await wa.ws.send_json(
            {"type": "typing", "room": "general", "active": i % 2 == 0}
        )
    await wa.ok({"type": "ping"})
    relayed = [e for e in await wb.collect(0.5) if e["type"] == "typing"]
    assert 1 <= len(relayed) <= 10


async def test_typing_needs_access(harness: Harness) -> None:
    """Typing into a private room one is not in is forbidden."""
    alice, bob = await harness.user("alice"), await harness.user("bob")
    await alice.call("POST", "/rooms", {"id": "secret", "private": True})
    wb = await harness.ws(bob)
    reply = await wb.request({"type": "typing", "room": "secret", "active": True})
    assert reply["code"] == "forbidden"


# Receipts and unread counts.


async def test_read_positions_only_move_forward(harness: Harness) -> None:
    """read never moves a position back, and others get a receipt."""
    alice, bob = await harness.user("alice"), await harness.user("bob")
    wa, wb = await joined(harness, alice), await joined(harness, bob)
    for i in range(10):
        await wa.ok({"type": "send", "room": "general", "text": f"m{i}"})

    reply = await wb.ok({"type": "read", "room": "general", "seq": 7})
    assert reply["read_seq"] == 7
    receipt = await wa.next("receipt", user="bob")
    assert receipt["read_seq"] == 7 and receipt["delivered_seq"] >= 7

    back = await wb.ok({"type": "read", "room": "general", "seq": 3})
    assert back["read_seq"] == 7
    assert [e for e in await wa.collect(0.3) if e["type"] == "receipt"] == []

    beyond = await wb.ok({"type": "read", "room": "general", "seq": 10_000})
    assert beyond["read_seq"] == 10
    rooms = await bob.call("GET", "/rooms")
    general = next(r for r in rooms["rooms"] if r["id"] == "general")
    assert general["last_read_seq"] == 10 and general["unread"] == 0

    bad = await wb.request({"type": "read", "room": "general", "seq": -1})
    assert bad["code"] == "bad_request"


async def test_unread_counts_after_a_burst(harness: Harness) -> None:
    """unread counts others' messages after the read position, own excluded."""
    reader = await harness.user("reader")
    senders = [await harness.user(f"s{i}") for i in range(3)]
    await reader.call("POST", "/rooms", {"id": "team"})
    for s in senders:
        await s.call("PUT", f"/rooms/team/members/{s.username}")

    async def burst(client: Client, n: int) -> None:
        for i in range(n):
            await client.call("POST", "/rooms/team/messages", {"text": f"x{i}"})

    await asyncio.gather(
        burst(senders[0], 7), burst(senders[1], 5), burst(senders[2], 9)
    )
    await burst(reader, 4)  # the reader's own messages never count

    def unread(listing: dict[str, Any]) -> int:
        return next(r["unread"] for r in listing["rooms"] if r["id"] == "team")

    assert unread(await reader.call("GET", "/rooms")) == 21
    await reader.call("POST", "/rooms/team/read", {"seq": 10})
    page = await reader.call("GET", "/rooms/team/messages", after=10, limit=200)
    others_after = [m for m in page["messages"] if m["sender"] != "reader"]
    assert unread(await reader.call("GET", "/rooms")) == len(others_after)
    await reader.call("POST", "/rooms/team/read", {"seq": 25})
    assert unread(await reader.call("GET", "/rooms")) == 0


async def test_sender_sees_sent_delivered_read_in_a_dm(harness: Harness) -> None:
    """In a DM the sender learns when the other side got and read a message."""
    alice, bob = await harness.user("alice"), await harness.user("bob")
    dm = (await alice.call("POST", "/dms", {"username": "bob"}))["id"]
    wa, wb = await joined(harness, alice, dm), await joined(harness, bob, dm)

    sent = await wa.ok({"type": "send", "room": dm, "text": "ping?"})
    seq = sent["message"]["seq"]
    delivery = await wa.next("delivery", timeout=5)
    assert delivery["delivered"].get("bob", 0) >= seq

    await wb.ok({"type": "read", "room": dm, "seq": seq})
    receipt = await wa.next("receipt", user="bob")
    assert receipt["read_seq"] == seq

    members = await alice.call("GET", f"/rooms/{dm}/members")
    bob_row = next(m for m in members["members"] if m["username"] == "bob")
    assert bob_row["read_seq"] == seq and bob_row["delivered_seq"] >= seq


async def test_delivery_counts_in_a_room(harness: Harness) -> None:
    """In a room, delivered positions tell how many members got a message."""
    owner = await harness.user("owner")
    others = [await harness.user(f"m{i}") for i in range(3)]
    await owner.call("POST", "/rooms", {"id": "club"})
    sockets = []
    for o in others[:2]:  # the third member is not connected
        sockets.append(await joined(harness, o, "club"))
    await others[2].call("PUT", "/rooms/club/members/m2")
    wo = await joined(harness, owner, "club")

    sent = await wo.ok({"type": "send", "room": "club", "text": "hello all"})
    seq = sent["message"]["seq"]
    got: dict[str, int] = {}
    async with asyncio.timeout(5):
        while sum(1 for u, s in got.items() if u != "owner" and s >= seq) < 2:
            got.update((await wo.next("delivery"))["delivered"])
    assert "m2" not in got


# Edits and deletions.


async def test_only_the_sender_edits(harness: Harness) -> None:
    """The sender edits; others are forbidden; subscribers see the change."""
    alice, bob = await harness.user("alice"), await harness.user("bob")
    wa, wb = await joined(harness, alice), await joined(harness, bob)
    sent = (await wa.ok({"type": "send", "room": "general", "text": "teh"}))["message"]

    denied = await wb.request(
        {"type": "edit", "room": "general", "message_id": sent["id"], "text": "x"}
    )
    assert denied["code"] == "forbidden"

    reply = await wa.ok(
        {"type": "edit", "room": "general", "message_id": sent["id"], "text": "the"}
    )
    assert reply["message"]["text"] == "the" and reply["message"]["edited_at"]
    assert reply["seq"] == sent["seq"] + 1
    update = await wb.next("update")
    assert update["seq"] == reply["seq"] and update["kind"] == "edit"
    assert update["message"] == reply["message"]

    page = await bob.call("GET", "/rooms/general/messages")
    assert [m["text"] for m in page["messages"]] == ["the"]

    missing = await wa.request(
        {"type": "edit", "room": "general", "message_id": 99999, "text": "x"}
    )
    assert missing["code"] == "not_found"


async def test_owner_and_sender_delete(harness: Harness) -> None:
    """The room's owner and the sender may delete; a bystander may not."""
    owner, poster, other = [await harness.user(n) for n in ("own", "pos", "oth")]
    await owner.call("POST", "/rooms", {"id": "mod"})
    for c in (poster, other):
        await c.call("PUT", f"/rooms/mod/members/{c.username}")
    first = await poster.call("POST", "/rooms/mod/messages", {"text": "one"})
    second = await poster.call("POST", "/rooms/mod/messages", {"text": "two"})

    try:
        await other.call("DELETE", f"/rooms/mod/messages/{first['id']}")
        raise AssertionError("a bystander deleted a message")
    except Exception as exc:
        assert getattr(exc, "status", None) == 403

    by_owner = await owner.call("DELETE", f"/rooms/mod/messages/{first['id']}")
    assert by_owner["message"]["deleted"] is True
    assert by_owner["message"]["text"] == ""
    by_sender = await poster.call("DELETE", f"/rooms/mod/messages/{second['id']}")
    assert by_sender["kind"] == "delete"

    page = await other.call("GET", "/rooms/mod/messages")
    assert [(m["deleted"], m["text"]) for m in page["messages"]] == [
        (True, ""),
        (True, ""),
    ]


async def test_reconnect_sees_missed_edits_and_deletions(harness: Harness) -> None:
    """A client rejoining with since learns of changes made while away."""
    alice, bob = await harness.user("alice"), await harness.user("bob")
    wa = await joined(harness, alice)
    m1 = (await wa.ok({"type": "send", "room": "general", "text": "one"}))["message"]
    m2 = (await wa.ok({"type": "send", "room": "general", "text": "two"}))["message"]
    wb = await joined(harness, bob)
    last = m2["seq"]
    await wb.close()

    await wa.ok(
        {"type": "edit", "room": "general", "message_id": m1["id"], "text": "ONE"}
    )
    await wa.ok({"type": "delete", "room": "general", "message_id": m2["id"]})
    m3 = (await wa.ok({"type": "send", "room": "general", "text": "three"}))["message"]
    await wa.ok(
        {"type": "edit", "room": "general", "message_id": m3["id"], "text": "3"}
    )

    back = await harness.ws(bob)
    reply = await back.ok({"type": "join", "room": "general", "since": last})
    frames = []
    while not back.events.empty():
        frame = back.events.get_nowait()
        if frame["type"] in ("message", "update"):
            frames.append(frame)
    # seq 3: edit of m1, seq 4: delete of m2, seq 5: m3 (already edited),
    # seq 6: the edit of m3, folded into m3 and not sent twice.
    assert [(f["type"], f.get("seq") or f["message"]["seq"]) for f in frames] == [
        ("update", last + 1),
        ("update", last + 2),
        ("message", last + 3),
    ]
    assert frames[0]["message"]["text"] == "ONE"
    assert frames[1]["message"]["deleted"] is True
    assert frames[2]["message"]["text"] == "3"
    assert reply["last_seq"] == last + 4


async def test_deleted_text_is_gone_from_the_database(harness: Harness) -> None:
    """After a deletion the words are nowhere in the SQLite file."""
    alice = await harness.user("alice")
    secret = "the-password-is-swordfish-" + "z" * 40
    sent = await alice.call("POST", "/rooms/general/messages", {"text": secret})
    await alice.call("DELETE", f"/rooms/general/messages/{sent['id']}")

    path = harness.server.data_dir / "serenchat.db"
    with sqlite3.connect(path) as db:
        row = db.execute(
            "SELECT text, deleted FROM messages WHERE id = ?", (sent["id"],)
        ).fetchone()
        assert row == ("", 1)
    for file in harness.server.data_dir.glob("serenchat.db*"):
        assert secret.encode() not in file.read_bytes(), file.name


# Membership changes.


async def test_membership_changes_are_announced(harness: Harness) -> None:
    """Adding and removing a member tells the room and the member."""
    owner, bob = await harness.user("owner"), await harness.user("bob")
    await owner.call("POST", "/rooms", {"id": "den", "private": True})
    wo = await joined(harness, owner, "den")
    wb = await harness.ws(bob)

    await owner.call("PUT", "/rooms/den/members/bob")
    added = {"type": "member", "room": "den", "user": "bob", "change": "added"}
    assert await wb.next("member") == added
    assert await wo.next("member") == added

    await owner.call("DELETE", "/rooms/den/members/bob")
    assert (await wo.next("member"))["change"] == "removed"
    assert await wb.next("removed") == {"type": "removed", "room": "den"}


async def test_a_new_dm_is_announced_to_both(harness: Harness) -> None:
    """Opening a DM tells the other user, who has not asked for it."""
    alice, bob = await harness.user("alice"), await harness.user("bob")
    wb = await harness.ws(bob)
    dm = (await alice.call("POST", "/dms", {"username": "bob"}))["id"]
    notice = await wb.next("member", user="bob")
    assert notice == {"type": "member", "room": dm, "user": "bob", "change": "added"}


async def test_large_rooms_skip_member_lists_and_live_receipts(
    server_factory: Any,
) -> None:
    """Above small_room members, join omits the list and receipts stay quiet."""
    server = server_factory("--small-room", "2", "--send-rate", "0")
    async with harness_on(server) as harness:
        users = [await harness.user(f"u{i}") for i in range(3)]
        sockets = [await joined(harness, u) for u in users]
        reply = await sockets[0].ok({"type": "join", "room": "general"})
        assert "members" not in reply

        sent = await sockets[0].ok({"type": "send", "room": "general", "text": "x"})
        await sockets[1].ok(
            {"type": "read", "room": "general", "seq": sent["message"]["seq"]}
        )
        events = await sockets[0].collect(1.5)
        assert [e for e in events if e["type"] in ("receipt", "delivery")] == []
        # The positions are stored all the same.
        listed = await users[0].call("GET", "/rooms/general/members")
        u1 = next(m for m in listed["members"] if m["username"] == "u1")
        assert u1["read_seq"] == sent["message"]["seq"]
