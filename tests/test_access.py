"""Private and direct room access, over both the WebSocket and REST.

The service holds the rules and both gateways only translate, so each test
checks a rule from both sides: a WebSocket refusal is an ``error`` frame with
``forbidden`` and the request's id, a REST refusal a 403 with the same code.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import ApiError, Client, Harness, Ws


async def ask(ws: Ws, frame: dict[str, Any], rid: str) -> dict[str, Any]:
    """Send ``frame`` with our own id and return the reply that echoes it.

    Events that arrive first (a membership notice, presence) are skipped.
    """
    await ws.ws.send_json({**frame, "id": rid})
    while True:
        reply = await ws.event()
        if reply["type"] in ("ok", "error"):
            assert reply.get("id") == rid, reply
            return reply


async def refused_ws(ws: Ws, frame: dict[str, Any], rid: str) -> None:
    """The request gets a ``forbidden`` error carrying its id."""
    reply = await ask(ws, frame, rid)
    assert (reply["type"], reply["code"]) == ("error", "forbidden"), reply
    assert isinstance(reply["message"], str) and reply["message"]


async def refused_rest(
    client: Client, method: str, path: str, body: Any = None
) -> None:
    """The call gets 403 with a ``forbidden`` error body."""
    with pytest.raises(ApiError) as info:
        await client.call(method, path, body)
    assert info.value.status == 403, info.value.body
    assert info.value.code == "forbidden"


async def listed(client: Client) -> list[str]:
    return [room["id"] for room in (await client.call("GET", "/rooms"))["rooms"]]


async def texts(client: Client, room: str) -> list[str]:
    page = await client.call("GET", f"/rooms/{room}/messages")
    return [m["text"] for m in page["messages"]]


async def all_refused(ws: Ws, client: Client, room: str) -> None:
    """Join, send and history of ``room`` are forbidden both ways."""
    await refused_ws(ws, {"type": "join", "room": room}, "j")
    await refused_ws(ws, {"type": "join", "room": room, "since": 0}, "js")
    await refused_ws(ws, {"type": "send", "room": room, "text": "x"}, "s")
    await refused_ws(ws, {"type": "history", "room": room}, "h")
    await refused_rest(client, "GET", f"/rooms/{room}")
    await refused_rest(client, "GET", f"/rooms/{room}/members")
    await refused_rest(client, "GET", f"/rooms/{room}/messages")
    await refused_rest(client, "POST", f"/rooms/{room}/messages", {"text": "x"})


async def setup_private(harness: Harness) -> tuple[Client, Client]:
    """Alice owns the private room 'secret' with one message; Bob is outside."""
    alice, bob = await harness.user("alice"), await harness.user("bob")
    await alice.call("POST", "/rooms", {"id": "secret", "private": True})
    await alice.call("POST", "/rooms/secret/messages", {"text": "hidden"})
    return alice, bob


# Private rooms.


async def test_non_member_is_refused_everything(harness: Harness) -> None:
    """A non-member gets forbidden for join, send and history, WS and REST."""
    alice, bob = await setup_private(harness)
    ws = await harness.ws(bob)

    await all_refused(ws, bob, "secret")

    assert ws.events.empty(), "a refused join must replay nothing"
    assert (await ws.ok({"type": "ping"}))["type"] == "ok"
    assert "secret" not in await listed(bob)
    assert await texts(alice, "secret") == ["hidden"]


async def test_non_member_cannot_add_themself(harness: Harness) -> None:
    """A non-member adding themself to a private room gets 403."""
    alice, bob = await setup_private(harness)

    await refused_rest(bob, "PUT", "/rooms/secret/members/bob")

    members = (await alice.call("GET", "/rooms/secret/members"))["members"]
    assert [m["username"] for m in members] == ["alice"]


async def test_refused_join_does_not_subscribe(harness: Harness) -> None:
    """After a refused join, the room's new messages do not reach the socket."""
    alice, bob = await setup_private(harness)
    ws = await harness.ws(bob)
    await ws.ok({"type": "join", "room": "general"})
    await refused_ws(ws, {"type": "join", "room": "secret"}, "j")

    await alice.call("POST", "/rooms/secret/messages", {"text": "still hidden"})
    await alice.call("POST", "/rooms/general/messages", {"text": "marker"})

    event = await ws.event()
    assert (event["type"], event["room"]) == ("message", "general"), event
    assert event["message"]["text"] == "marker"


async def test_added_member_can_join_send_and_read(harness: Harness) -> None:
    """Once the owner adds them, a user joins, sends and reads, WS and REST."""
    alice, bob = await setup_private(harness)
    owner_ws, ws = await harness.ws(alice), await harness.ws(bob)
    await owner_ws.ok({"type": "join", "room": "secret"})

    await alice.call("PUT", "/rooms/secret/members/bob")

    joined = await ask(ws, {"type": "join", "room": "secret"}, "j")
    assert (joined["type"], joined["room"]["id"], joined["last_seq"]) == (
        "ok",
        "secret",
        1,
    )
    # The sender's own event may precede the reply, so match it by future.
    sent = await ws.ok({"type": "send", "room": "secret", "text": "by ws"})
    assert (sent["message"]["seq"], sent["message"]["sender"]) == (2, "bob")
    assert await owner_ws.messages(1) == [sent["message"]]
    assert await ws.messages(1) == [sent["message"]]
    history = await ask(ws, {"type": "history", "room": "secret"}, "h")
    assert [m["text"] for m in history["messages"]] == ["hidden", "by ws"]

    posted = await bob.call("POST", "/rooms/secret/messages", {"text": "by rest"})
    assert posted["seq"] == 3
    assert await ws.messages(1) == [posted]
    assert await texts(bob, "secret") == ["hidden", "by ws", "by rest"]
    assert (await bob.call("GET", "/rooms/secret"))["last_seq"] == 3
    assert "secret" in await listed(bob)


async def test_removed_member_gets_removed_event_and_no_more_messages(
    harness: Harness,
) -> None:
    """Removal sends 'removed' to the open subscription and stops its messages."""
    alice, bob = await setup_private(harness)
    await alice.call("PUT", "/rooms/secret/members/bob")
    owner_ws, ws = await harness.ws(alice), await harness.ws(bob)
    await owner_ws.ok({"type": "join", "room": "secret"})
    await ws.ok({"type": "join", "room": "secret"})
    await ws.ok({"type": "join", "room": "general"})
    await alice.call("POST", "/rooms/secret/messages", {"text": "before"})
    assert (await ws.event())["message"]["text"] == "before"

    assert await alice.call("DELETE", "/rooms/secret/members/bob") is None

    assert await ws.event() == {"type": "removed", "room": "secret"}
    after = await alice.call("POST", "/rooms/secret/messages", {"text": "after"})
    await alice.call("POST", "/rooms/general/messages", {"text": "marker"})
    # Fan-out keeps publish order, so a leaked 'after' would precede 'marker'.
    event = await ws.event()
    assert (event["room"], event["message"]["text"]) == ("general", "marker")
    owner_events = await owner_ws.messages(2)
    assert owner_events[1] == after


async def test_removed_member_is_refused_again(harness: Harness) -> None:
    """Right after removal, join, send and history are forbidden again."""
    alice, bob = await setup_private(harness)
    await alice.call("PUT", "/rooms/secret/members/bob")
    ws = await harness.ws(bob)
    await ws.ok({"type": "join", "room": "secret"})
    await ws.ok({"type": "send", "room": "secret", "text": "while member"})
    await ws.messages(1)

    await alice.call("DELETE", "/rooms/secret/members/bob")

    assert await ws.event() == {"type": "removed", "room": "secret"}
    await all_refused(ws, bob, "secret")
    left = await ask(ws, {"type": "leave", "room": "secret"}, "l")
    assert (left["type"], left["code"]) == ("error", "not_found")
    assert "secret" not in await listed(bob)
    assert await texts(alice, "secret") == ["hidden", "while member"]


async def test_every_connection_of_removed_member_is_unsubscribed(
    harness: Harness,
) -> None:
    """Each socket of the removed user that joined the room gets 'removed'."""
    alice, bob = await setup_private(harness)
    await alice.call("PUT", "/rooms/secret/members/bob")
    first, second, other = [await harness.ws(bob) for _ in range(3)]
    await first.ok({"type": "join", "room": "secret"})
    await second.ok({"type": "join", "room": "secret"})
    await other.ok({"type": "join", "room": "general"})

    await alice.call("DELETE", "/rooms/secret/members/bob")
    await alice.call("POST", "/rooms/general/messages", {"text": "marker"})

    for ws in (first, second):
        assert await ws.event() == {"type": "removed", "room": "secret"}
    # A socket that never joined the room keeps its own subscriptions.
    event = await other.event()
    while event["type"] == "removed":
        event = await other.event()
    assert (event["type"], event["room"]) == ("message", "general")


async def test_member_leaving_by_rest_is_unsubscribed(harness: Harness) -> None:
    """A member removing themself gets 'removed' and loses access."""
    alice, bob = await setup_private(harness)
    await alice.call("PUT", "/rooms/secret/members/bob")
    ws = await harness.ws(bob)
    await ws.ok({"type": "join", "room": "secret"})

    await bob.call("DELETE", "/rooms/secret/members/bob")

    assert await ws.event() == {"type": "removed", "room": "secret"}
    await refused_ws(ws, {"type": "send", "room": "secret", "text": "x"}, "s")
    await refused_rest(bob, "GET", "/rooms/secret/messages")


async def test_readded_member_regains_access(harness: Harness) -> None:
    """Adding a removed member back restores join, send and history."""
    alice, bob = await setup_private(harness)
    await alice.call("PUT", "/rooms/secret/members/bob")
    await alice.call("DELETE", "/rooms/secret/members/bob")
    ws = await harness.ws(bob)
    await refused_ws(ws, {"type": "join", "room": "secret"}, "j1")

    await alice.call("PUT", "/rooms/secret/members/bob")

    joined = await ask(ws, {"type": "join", "room": "secret"}, "j2")
    assert joined["type"] == "ok"
    sent = await ws.ok({"type": "send", "room": "secret", "text": "back"})
    assert sent["message"]["seq"] == 2
    assert await texts(bob, "secret") == ["hidden", "back"]


# Direct message rooms.


async def test_direct_room_works_for_its_two_users(harness: Harness) -> None:
    """Both users of a DM join it, exchange messages and read its history."""
    alice, bob = await harness.user("alice"), await harness.user("bob")
    room = (await alice.call("POST", "/dms", {"username": "bob"}))["id"]
    wa, wb = await harness.ws(alice), await harness.ws(bob)
    await wa.ok({"type": "join", "room": room})
    await wb.ok({"type": "join", "room": room})

    first = await wa.ok({"type": "send", "room": room, "text": "hi bob"})
    second = await bob.call("POST", f"/rooms/{room}/messages", {"text": "hi alice"})

    for ws in (wa, wb):
        assert await ws.messages(2) == [first["message"], second]
    for client in (alice, bob):
        assert await texts(client, room) == ["hi bob", "hi alice"]
        assert room in await listed(client)


async def test_direct_room_is_closed_to_a_third_user(harness: Harness) -> None:
    """A third user is refused every access to someone else's DM."""
    alice, bob = await harness.user("alice"), await harness.user("bob")
    carol = await harness.user("carol")
    room = (await alice.call("POST", "/dms", {"username": "bob"}))["id"]
    await bob.call("POST", f"/rooms/{room}/messages", {"text": "private"})
    ws = await harness.ws(carol)

    await all_refused(ws, carol, room)
    await refused_rest(carol, "PUT", f"/rooms/{room}/members/carol")
    await refused_rest(alice, "PUT", f"/rooms/{room}/members/carol")

    assert ws.events.empty()
    assert room not in await listed(carol)
    assert await texts(alice, room) == ["private"]
    members = (await bob.call("GET", f"/rooms/{room}/members"))["members"]
    assert [m["username"] for m in members] == ["alice", "bob"]
