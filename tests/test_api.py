"""The REST contract under /api/v1, through a real server process.

Every failure must leave as ``{"error": {"code": …, "message": …}}`` with the
matching HTTP status, so most tests check the body shape as well as the code.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, NamedTuple

import jwt
import pytest
from openapi_spec_validator import OpenAPIV30SpecValidator

from tests.conftest import ApiError, Client, Harness, Server

STAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")

# Fields of the wire objects checked by value; servers may add more.
MESSAGE = ("room", "seq", "sender", "text", "client_id")
ROOM = ("id", "title", "kind", "private", "owner", "last_seq")

# The routes of the REST API under test, as (method, path below /api/v1).
ROUTES = {
    ("post", "/auth/register"),
    ("post", "/auth/login"),
    ("get", "/me"),
    ("get", "/rooms"),
    ("post", "/rooms"),
    ("get", "/rooms/{room}"),
    ("get", "/rooms/{room}/members"),
    ("put", "/rooms/{room}/members/{username}"),
    ("delete", "/rooms/{room}/members/{username}"),
    ("post", "/dms"),
    ("get", "/rooms/{room}/messages"),
    ("post", "/rooms/{room}/messages"),
    ("get", "/health"),
}


class Reply(NamedTuple):
    status: int
    body: Any
    headers: Mapping[str, str]


async def fetch(
    harness: Harness,
    method: str,
    path: str,
    *,
    token: str | None = None,
    body: Any = None,
    data: bytes | None = None,
    headers: Mapping[str, str] | None = None,
) -> Reply:
    """One raw HTTP request, for what Client cannot send (bad bodies, headers)."""
    sent = dict(headers or {})
    if token is not None:
        sent["Authorization"] = f"Bearer {token}"
    url = harness.server.url + path
    async with harness.http.request(
        method, url, json=body, data=data, headers=sent
    ) as response:
        raw = await response.read()
        parsed = await response.json(content_type=None) if raw else None
        return Reply(response.status, parsed, dict(response.headers))


def json_error(reply: Reply, status: int, code: str) -> str:
    """Check a raw reply is a JSON error with this status and code."""
    assert reply.status == status, reply
    assert reply.headers["Content-Type"].startswith("application/json"), reply
    return error_of(reply.body, code)


def error_of(body: Any, code: str) -> str:
    """Check the error body shape and code; return its message."""
    assert isinstance(body, dict) and set(body) == {"error"}, body
    assert set(body["error"]) == {"code", "message"}, body
    assert body["error"]["code"] == code, body
    message = body["error"]["message"]
    assert isinstance(message, str) and message, body
    return message


async def fails(call: Awaitable[Any], status: int, code: str) -> str:
    """Await a Client call that must fail; return the error message."""
    with pytest.raises(ApiError) as info:
        await call
    assert info.value.status == status, info.value.body
    return error_of(info.value.body, code)


def mint(server: Server, **claims: Any) -> str:
    """A token signed with the server's own secret, as another app would."""
    secret = (server.data_dir / "jwt-secret").read_text().strip()
    return jwt.encode(claims, secret, algorithm="HS256")


async def post_many(client: Client, room: str, count: int) -> list[dict[str, Any]]:
    """Post ``count`` messages concurrently; return them in seq order."""
    sent = await asyncio.gather(
        *(
            client.call("POST", f"/rooms/{room}/messages", {"text": f"m{i}"})
            for i in range(count)
        )
    )
    return sorted(sent, key=lambda m: m["seq"])


def pick(obj: dict[str, Any], *keys: str) -> dict[str, Any]:
    """The named fields of a server object (new fields may be added)."""
    return {key: obj[key] for key in keys}


def seqs(messages: list[dict[str, Any]]) -> list[int]:
    return [m["seq"] for m in messages]


async def page(client: Client, room: str, **params: Any) -> list[int]:
    """The seqs of one history page."""
    found = await client.call("GET", f"/rooms/{room}/messages", **params)
    return seqs(found["messages"])


def register(
    harness: Harness, name: str, password: str = "password-1"
) -> Awaitable[Any]:
    """POST /auth/register as given (harness.user replaces an empty name)."""
    return harness.anonymous().call(
        "POST", "/auth/register", {"username": name, "password": password}
    )


# Registration and login.


async def test_register_returns_201_with_user_and_token(harness: Harness) -> None:
    """Registering answers 201 with the new user and a token that works."""
    reply = await fetch(
        harness,
        "POST",
        "/api/v1/auth/register",
        body={"username": "alice", "password": "password-1"},
    )

    assert reply.status == 201
    assert set(reply.body) == {"user", "token"}
    user = reply.body["user"]
    assert user["username"] == "alice"
    assert isinstance(user["id"], int)
    assert STAMP.fullmatch(user["created_at"])
    me = await fetch(harness, "GET", "/api/v1/me", token=reply.body["token"])
    assert (me.status, me.body) == (200, user)


async def test_register_normalises_username_to_lower_case(harness: Harness) -> None:
    """Usernames are stored trimmed and lower-cased, and log in either way."""
    client = await harness.user("  MiXed.Name_1 ")

    assert client.username == "mixed.name_1"
    session = await harness.anonymous().call(
        "POST",
        "/auth/login",
        {"username": "MIXED.NAME_1", "password": "password-1"},
    )
    assert session["user"]["username"] == "mixed.name_1"


async def test_register_duplicate_username_conflicts(harness: Harness) -> None:
    """A taken username, in any case, is refused with 409 conflict."""
    await harness.user("bob")

    for name in ("bob", "BOB", " Bob "):
        await fails(register(harness, name), 409, "conflict")


async def test_register_rejects_invalid_usernames(harness: Harness) -> None:
    """Usernames outside 1-32 of [a-z0-9_.-] are refused with 400."""
    for name in ("", "   ", "has space", "x" * 33, "émile", "semi;colon", "a/b"):
        await fails(register(harness, name), 400, "bad_request")

    longest = await harness.user("y" * 32)
    assert longest.username == "y" * 32


async def test_register_rejects_bad_passwords(harness: Harness) -> None:
    """Passwords shorter than 8 or longer than 1024 characters get 400."""
    await fails(register(harness, "short", "1234567"), 400, "bad_request")
    await fails(register(harness, "long", "p" * 1025), 400, "bad_request")

    assert (await harness.user("exact", "12345678")).username == "exact"


async def test_concurrent_creation_of_one_name(harness: Harness) -> None:
    """Racing creations of one username or room id: one 201, the rest 409."""
    alice = await harness.user("alice")
    credentials = {"username": "racer", "password": "password-1"}

    users = await asyncio.gather(
        *(
            fetch(harness, "POST", "/api/v1/auth/register", body=credentials)
            for _ in range(4)
        )
    )
    rooms = await asyncio.gather(
        *(
            fetch(harness, "POST", "/api/v1/rooms", token=alice.token, body={"id": "r"})
            for _ in range(4)
        )
    )

    for replies in (users, rooms):
        assert sorted(r.status for r in replies) == [201, 409, 409, 409]
        for reply in replies:
            if reply.status == 409:
                error_of(reply.body, "conflict")


async def test_login_returns_200_and_a_working_token(harness: Harness) -> None:
    """Logging in answers 200 with the user and a fresh token for them."""
    await harness.user("carol", "carol-secret")

    reply = await fetch(
        harness,
        "POST",
        "/api/v1/auth/login",
        body={"username": "carol", "password": "carol-secret"},
    )

    assert reply.status == 200
    assert reply.body["user"]["username"] == "carol"
    me = await fetch(harness, "GET", "/api/v1/me", token=reply.body["token"])
    assert me.body == reply.body["user"]


async def test_login_failures_are_identical(harness: Harness) -> None:
    """A wrong password and an unknown user get the same 401 and message."""
    await harness.user("dave", "dave-secret")
    path = "/api/v1/auth/login"

    wrong = await fetch(
        harness, "POST", path, body={"username": "dave", "password": "not-it-1"}
    )
    unknown = await fetch(
        harness, "POST", path, body={"username": "nobody", "password": "not-it-1"}
    )

    assert wrong.status == unknown.status == 401
    assert error_of(wrong.body, "unauthorized") == error_of(
        unknown.body, "unauthorized"
    )
    assert wrong.body == unknown.body
    assert wrong.headers["WWW-Authenticate"] == "Bearer"


async def test_me_returns_the_signed_in_user(harness: Harness) -> None:
    """GET /me names the token's user, not some other one."""
    alice, bob = await harness.user("alice"), await harness.user("bob")

    assert (await alice.call("GET", "/me"))["username"] == "alice"
    assert (await bob.call("GET", "/me"))["username"] == "bob"


# Rooms.


async def test_rooms_lists_mine_and_public_but_not_others_private(
    harness: Harness,
) -> None:
    """GET /rooms shows my rooms and every public one, never others' private."""
    alice, bob = await harness.user("alice"), await harness.user("bob")
    await alice.call("POST", "/rooms", {"id": "a-public"})
    await alice.call("POST", "/rooms", {"id": "a-secret", "private": True})
    await bob.call("POST", "/rooms", {"id": "b-public"})
    await bob.call("POST", "/rooms", {"id": "b-secret", "private": True})

    mine = [r["id"] for r in (await alice.call("GET", "/rooms"))["rooms"]]
    theirs = [r["id"] for r in (await bob.call("GET", "/rooms"))["rooms"]]

    assert mine == ["a-public", "a-secret", "b-public", "general"]
    assert theirs == ["a-public", "b-public", "b-secret", "general"]


async def test_create_room_returns_201_with_defaults(harness: Harness) -> None:
    """A new room is public, titled by its id, owned and joined by its creator."""
    alice = await harness.user("alice")

    reply = await fetch(
        harness, "POST", "/api/v1/rooms", token=alice.token, body={"id": "lobby"}
    )

    assert reply.status == 201
    room = reply.body
    assert pick(room, *ROOM) == {
        "id": "lobby",
        "title": "lobby",
        "kind": "public",
        "private": False,
        "owner": "alice",
        "last_seq": 0,
    }
    assert STAMP.fullmatch(room["created_at"])
    assert await alice.call("GET", "/rooms/lobby") == room
    members = (await alice.call("GET", "/rooms/lobby/members"))["members"]
    assert [(m["username"], m["owner"]) for m in members] == [("alice", True)]


async def test_create_private_room_with_title(harness: Harness) -> None:
    """The private flag makes a private room; a given title is kept, trimmed."""
    alice = await harness.user("alice")

    room = await alice.call(
        "POST", "/rooms", {"id": "team", "title": "  The Team ", "private": True}
    )

    assert (room["kind"], room["private"], room["title"]) == (
        "private",
        True,
        "The Team",
    )
    assert (await alice.call("GET", "/rooms/team"))["kind"] == "private"


async def test_create_room_duplicate_id_conflicts(harness: Harness) -> None:
    """A taken room id, including the built-in general, gets 409 conflict."""
    alice, bob = await harness.user("alice"), await harness.user("bob")
    await alice.call("POST", "/rooms", {"id": "taken"})

    await fails(bob.call("POST", "/rooms", {"id": "taken"}), 409, "conflict")
    await fails(alice.call("POST", "/rooms", {"id": "general"}), 409, "conflict")
    assert (await bob.call("GET", "/rooms/taken"))["owner"] == "alice"


async def test_create_room_rejects_invalid_ids(harness: Harness) -> None:
    """Ids that are not 1-64 of [a-z0-9_-], or start with 'dm-', get 400."""
    alice = await harness.user("alice")
    bad = ("", "Caps", "has space", "dot.dot", "x" * 65, "dm-mine", "ünï")

    for room_id in bad:
        await fails(alice.call("POST", "/rooms", {"id": room_id}), 400, "bad_request")

    room = await alice.call("POST", "/rooms", {"id": "x" * 64})
    assert room["id"] == "x" * 64
    listed = {r["id"] for r in (await alice.call("GET", "/rooms"))["rooms"]}
    assert listed == {"general", "x" * 64}


async def test_create_room_rejects_bad_titles(harness: Harness) -> None:
    """Blank titles, titles with NUL and titles over 200 characters get 400."""
    alice = await harness.user("alice")

    for title in ("", "   ", "t" * 201, "nul\x00here"):
        await fails(
            alice.call("POST", "/rooms", {"id": "r", "title": title}),
            400,
            "bad_request",
        )

    room = await alice.call("POST", "/rooms", {"id": "r", "title": "t" * 200})
    assert room["title"] == "t" * 200


async def test_get_room_unknown_or_invalid(harness: Harness) -> None:
    """GET of a missing room is 404 not_found; of an invalid id, 400."""
    alice = await harness.user("alice")

    await fails(alice.call("GET", "/rooms/nowhere"), 404, "not_found")
    await fails(alice.call("GET", "/rooms/NotASlug"), 400, "bad_request")


# Members.


async def test_owner_adds_and_removes_members_of_private_room(
    harness: Harness,
) -> None:
    """The owner of a private room adds (200) and removes (204) members."""
    alice, bob = await harness.user("alice"), await harness.user("bob")
    await alice.call("POST", "/rooms", {"id": "team", "private": True})

    added = await fetch(
        harness, "PUT", "/api/v1/rooms/team/members/BOB", token=alice.token
    )
    assert added.status == 200
    assert added.body["username"] == "bob"
    assert added.body["owner"] is False
    assert STAMP.fullmatch(added.body["joined_at"])
    listed = (await bob.call("GET", "/rooms/team/members"))["members"]
    assert [(m["username"], m["owner"]) for m in listed] == [
        ("alice", True),
        ("bob", False),
    ]

    removed = await fetch(
        harness, "DELETE", "/api/v1/rooms/team/members/bob", token=alice.token
    )
    assert (removed.status, removed.body) == (204, None)
    listed = (await alice.call("GET", "/rooms/team/members"))["members"]
    assert [m["username"] for m in listed] == ["alice"]


async def test_non_owner_cannot_add_or_remove_in_private_room(
    harness: Harness,
) -> None:
    """Members who do not own a private room get 403 adding or removing."""
    alice, bob = await harness.user("alice"), await harness.user("bob")
    await harness.user("carol")
    dave = await harness.user("dave")
    await alice.call("POST", "/rooms", {"id": "team", "private": True})
    await alice.call("PUT", "/rooms/team/members/bob")
    await alice.call("PUT", "/rooms/team/members/carol")

    await fails(bob.call("PUT", "/rooms/team/members/dave"), 403, "forbidden")
    await fails(bob.call("DELETE", "/rooms/team/members/carol"), 403, "forbidden")
    await fails(bob.call("DELETE", "/rooms/team/members/alice"), 403, "forbidden")
    await fails(dave.call("PUT", "/rooms/team/members/dave"), 403, "forbidden")

    listed = (await alice.call("GET", "/rooms/team/members"))["members"]
    assert [m["username"] for m in listed] == ["alice", "bob", "carol"]


async def test_user_may_add_themself_to_public_room(harness: Harness) -> None:
    """Anyone may add themself to a public room, but not someone else."""
    alice, bob = await harness.user("alice"), await harness.user("bob")
    await harness.user("carol")
    await alice.call("POST", "/rooms", {"id": "lobby"})

    member = await bob.call("PUT", "/rooms/lobby/members/bob")
    await fails(bob.call("PUT", "/rooms/lobby/members/carol"), 403, "forbidden")

    assert (member["username"], member["owner"]) == ("bob", False)
    listed = (await alice.call("GET", "/rooms/lobby/members"))["members"]
    assert [m["username"] for m in listed] == ["alice", "bob"]


async def test_public_room_membership_rules(harness: Harness) -> None:
    """In a public room the owner adds and removes others; members only leave."""
    alice, bob = await harness.user("alice"), await harness.user("bob")
    carol = await harness.user("carol")
    await alice.call("POST", "/rooms", {"id": "lobby"})

    await alice.call("PUT", "/rooms/lobby/members/carol")
    await bob.call("PUT", "/rooms/lobby/members/bob")
    await fails(bob.call("DELETE", "/rooms/lobby/members/carol"), 403, "forbidden")
    await alice.call("DELETE", "/rooms/lobby/members/carol")
    await bob.call("DELETE", "/rooms/lobby/members/bob")

    listed = (await carol.call("GET", "/rooms/lobby/members"))["members"]
    assert [m["username"] for m in listed] == ["alice"]
    await carol.call("DELETE", "/rooms/general/members/carol")
    await fails(bob.call("DELETE", "/rooms/general/members/alice"), 403, "forbidden")
    general = (await bob.call("GET", "/rooms/general/members"))["members"]
    assert [m["username"] for m in general] == ["alice", "bob"]


async def test_adding_an_existing_member_returns_the_membership(
    harness: Harness,
) -> None:
    """PUT of someone already a member answers 200 with the same membership."""
    alice, bob = await harness.user("alice"), await harness.user("bob")
    await alice.call("POST", "/rooms", {"id": "team", "private": True})

    first = await alice.call("PUT", "/rooms/team/members/bob")
    again = await alice.call("PUT", "/rooms/team/members/bob")
    owner = await alice.call("PUT", "/rooms/team/members/alice")

    assert again == first
    assert (owner["username"], owner["owner"]) == ("alice", True)
    listed = (await bob.call("GET", "/rooms/team/members"))["members"]
    assert [m["username"] for m in listed] == ["alice", "bob"]


async def test_owner_cannot_remove_themself(harness: Harness) -> None:
    """The owner removing themself from their room gets 403 and stays."""
    alice = await harness.user("alice")
    await alice.call("POST", "/rooms", {"id": "team", "private": True})

    await fails(alice.call("DELETE", "/rooms/team/members/alice"), 403, "forbidden")

    listed = (await alice.call("GET", "/rooms/team/members"))["members"]
    assert [m["username"] for m in listed] == ["alice"]


async def test_member_may_remove_themself(harness: Harness) -> None:
    """A member may leave a private room, and then no longer reads it."""
    alice, bob = await harness.user("alice"), await harness.user("bob")
    await alice.call("POST", "/rooms", {"id": "team", "private": True})
    await alice.call("PUT", "/rooms/team/members/bob")

    assert await bob.call("DELETE", "/rooms/team/members/bob") is None

    await fails(bob.call("GET", "/rooms/team/members"), 403, "forbidden")


async def test_member_changes_of_unknown_users(harness: Harness) -> None:
    """Adding an unknown user or removing a non-member is 404 not_found."""
    alice = await harness.user("alice")
    await harness.user("bob")
    await alice.call("POST", "/rooms", {"id": "team", "private": True})

    await fails(alice.call("PUT", "/rooms/team/members/ghost"), 404, "not_found")
    await fails(alice.call("DELETE", "/rooms/team/members/bob"), 404, "not_found")
    await fails(alice.call("PUT", "/rooms/nowhere/members/bob"), 404, "not_found")
    await fails(alice.call("PUT", "/rooms/team/members/Bad!"), 400, "bad_request")


async def test_direct_room_members_are_fixed(harness: Harness) -> None:
    """Nobody may add to or remove from a direct message room (403)."""
    alice, bob = await harness.user("alice"), await harness.user("bob")
    await harness.user("carol")
    room = (await alice.call("POST", "/dms", {"username": "bob"}))["id"]

    for client, target in ((alice, "carol"), (bob, "carol"), (bob, "bob")):
        await fails(
            client.call("PUT", f"/rooms/{room}/members/{target}"), 403, "forbidden"
        )
    for client, target in ((alice, "bob"), (bob, "bob"), (alice, "alice")):
        await fails(
            client.call("DELETE", f"/rooms/{room}/members/{target}"),
            403,
            "forbidden",
        )

    listed = (await alice.call("GET", f"/rooms/{room}/members"))["members"]
    assert [m["username"] for m in listed] == ["alice", "bob"]


# Direct messages.


async def test_direct_room_is_the_same_both_ways(harness: Harness) -> None:
    """POST /dms gives one direct room for a pair, whoever opens it."""
    alice, bob = await harness.user("alice"), await harness.user("bob")

    reply = await fetch(
        harness, "POST", "/api/v1/dms", token=alice.token, body={"username": "bob"}
    )
    again = await bob.call("POST", "/dms", {"username": "ALICE"})

    assert reply.status == 200
    room = reply.body
    assert again == room
    assert room["id"].startswith("dm-")
    assert (room["kind"], room["private"], room["owner"]) == ("direct", True, None)
    assert room["title"] == "alice, bob"
    listed = (await bob.call("GET", f"/rooms/{room['id']}/members"))["members"]
    assert [m["username"] for m in listed] == ["alice", "bob"]


async def test_direct_room_opened_by_both_at_once(harness: Harness) -> None:
    """Both users opening their DM at the same moment get the one room."""
    alice, bob = await harness.user("alice"), await harness.user("bob")

    replies = await asyncio.gather(
        *(
            fetch(
                harness,
                "POST",
                "/api/v1/dms",
                token=client.token,
                body={"username": other},
            )
            for client, other in ((alice, "bob"), (bob, "alice")) * 3
        )
    )

    assert [r.status for r in replies] == [200] * 6
    assert len({r.body["id"] for r in replies}) == 1
    rooms = (await alice.call("GET", "/rooms"))["rooms"]
    assert [r["kind"] for r in rooms].count("direct") == 1


async def test_direct_room_needs_another_known_user(harness: Harness) -> None:
    """A DM with yourself is 400, with an unknown user 404, a bad name 400."""
    alice = await harness.user("alice")

    await fails(alice.call("POST", "/dms", {"username": "Alice"}), 400, "bad_request")
    await fails(alice.call("POST", "/dms", {"username": "ghost"}), 404, "not_found")
    await fails(alice.call("POST", "/dms", {"username": "no way"}), 400, "bad_request")

    listed = [r["id"] for r in (await alice.call("GET", "/rooms"))["rooms"]]
    assert listed == ["general"]


# History.


async def test_history_defaults_to_newest_50_ascending(harness: Harness) -> None:
    """Without parameters, history is the newest 50 messages, oldest first."""
    alice = await harness.user("alice")
    sent = await post_many(alice, "general", 60)

    page = (await alice.call("GET", "/rooms/general/messages"))["messages"]

    assert seqs(page) == list(range(11, 61))
    assert page == sent[10:]


async def test_history_limit_over_200_is_clamped(harness: Harness) -> None:
    """A limit above 200 returns the newest 200, not more."""
    alice = await harness.user("alice")
    await post_many(alice, "general", 210)

    page = await alice.call("GET", "/rooms/general/messages", limit=500)
    exact = await alice.call("GET", "/rooms/general/messages", limit=200)

    assert seqs(page["messages"]) == list(range(11, 211))
    assert page == exact


async def test_history_before_gives_newest_below(harness: Harness) -> None:
    """``before`` pages backwards: the newest messages under it, ascending."""
    alice = await harness.user("alice")
    await post_many(alice, "general", 20)

    assert await page(alice, "general", before=11, limit=5) == [6, 7, 8, 9, 10]
    assert await page(alice, "general", before=3) == [1, 2]
    assert await page(alice, "general", before=1) == []


async def test_history_after_gives_oldest_above(harness: Harness) -> None:
    """``after`` pages forwards: the oldest messages over it, ascending."""
    alice = await harness.user("alice")
    await post_many(alice, "general", 20)

    assert await page(alice, "general", after=5, limit=3) == [6, 7, 8]
    assert await page(alice, "general", after=0, limit=2) == [1, 2]
    assert await page(alice, "general", after=20) == []
    assert await page(alice, "general", after=5, before=9) == [6, 7, 8]


async def test_history_rejects_bad_values(harness: Harness) -> None:
    """Non-integer or out-of-range before/after/limit are 400 bad_request."""
    alice = await harness.user("alice")
    await post_many(alice, "general", 3)
    path = "/rooms/general/messages"
    bad = (
        {"limit": 0},
        {"limit": -1},
        {"limit": "abc"},
        {"limit": "1.5"},
        {"before": -1},
        {"before": "x"},
        {"after": -5},
        {"after": "1e3"},
    )

    for params in bad:
        await fails(alice.call("GET", path, **params), 400, "bad_request")

    assert await page(alice, "general", limit=1) == [3]
    assert await page(alice, "general", limit="", before="", after="") == [1, 2, 3]


async def test_history_positions_beyond_64_bits_are_400(harness: Harness) -> None:
    """A before/after too large for a 64-bit seq is a JSON 400, not a 500."""
    alice = await harness.user("alice")
    huge = str(2**64)

    for query in (f"before={huge}", f"after={huge}"):
        reply = await fetch(
            harness,
            "GET",
            f"/api/v1/rooms/general/messages?{query}",
            token=alice.token,
        )
        assert reply.status == 400, (query, reply.status)
        error_of(reply.body, "bad_request")


async def test_history_of_unknown_or_empty_room(harness: Harness) -> None:
    """History of a missing room is 404; of an empty room, an empty list."""
    alice = await harness.user("alice")
    await alice.call("POST", "/rooms", {"id": "quiet"})

    await fails(alice.call("GET", "/rooms/nowhere/messages"), 404, "not_found")
    assert await alice.call("GET", "/rooms/quiet/messages") == {"messages": []}


# Sending.


async def test_post_message_returns_201_and_stores_it(harness: Harness) -> None:
    """POST of a message answers 201 with the stored message."""
    alice = await harness.user("alice")

    reply = await fetch(
        harness,
        "POST",
        "/api/v1/rooms/general/messages",
        token=alice.token,
        body={"text": "hello there"},
    )

    assert reply.status == 201
    message = reply.body
    assert isinstance(message["id"], int)
    assert pick(message, *MESSAGE) == {
        "room": "general",
        "seq": 1,
        "sender": "alice",
        "text": "hello there",
        "client_id": None,
    }
    assert STAMP.fullmatch(message["created_at"])
    history = await alice.call("GET", "/rooms/general/messages")
    assert history["messages"] == [message]
    assert (await alice.call("GET", "/rooms/general"))["last_seq"] == 1


async def test_client_id_makes_posting_idempotent(harness: Harness) -> None:
    """A repeated client_id returns the first message and stores nothing new."""
    alice = await harness.user("alice")
    path = "/rooms/general/messages"

    first = await alice.call("POST", path, {"text": "once", "client_id": "c-1"})
    again = await fetch(
        harness,
        "POST",
        "/api/v1" + path,
        token=alice.token,
        body={"text": "once", "client_id": "c-1"},
    )
    changed = await alice.call("POST", path, {"text": "twice", "client_id": "c-1"})

    assert first["client_id"] == "c-1"
    assert (again.status, again.body) == (201, first)
    assert changed == first
    assert (await alice.call("GET", path))["messages"] == [first]
    assert (await alice.call("GET", "/rooms/general"))["last_seq"] == 1


async def test_client_id_is_scoped_to_its_sender(harness: Harness) -> None:
    """Two users with the same client_id each get their own message."""
    alice, bob = await harness.user("alice"), await harness.user("bob")
    path = "/rooms/general/messages"

    mine = await alice.call("POST", path, {"text": "a", "client_id": "same"})
    theirs = await bob.call("POST", path, {"text": "b", "client_id": "same"})

    assert (mine["seq"], theirs["seq"]) == (1, 2)
    assert theirs["sender"] == "bob"


async def test_client_id_reused_in_another_room_conflicts(harness: Harness) -> None:
    """Reusing a client_id in another room is 409 and stores nothing there."""
    alice = await harness.user("alice")
    await alice.call("POST", "/rooms", {"id": "other"})
    await alice.call("POST", "/rooms/general/messages", {"text": "a", "client_id": "k"})

    await fails(
        alice.call("POST", "/rooms/other/messages", {"text": "b", "client_id": "k"}),
        409,
        "conflict",
    )

    assert (await alice.call("GET", "/rooms/other/messages"))["messages"] == []


async def test_post_message_rejects_bad_text(harness: Harness) -> None:
    """Empty, blank, NUL or non-string text is 400; over 4000 chars is 413."""
    alice = await harness.user("alice")
    path = "/rooms/general/messages"

    for text in ("", "   ", "\n\t", "a\x00b"):
        await fails(alice.call("POST", path, {"text": text}), 400, "bad_request")
    await fails(alice.call("POST", path, {"text": "x" * 4001}), 413, "too_large")
    for client_id in ("", "c" * 65):
        await fails(
            alice.call("POST", path, {"text": "ok", "client_id": client_id}),
            400,
            "bad_request",
        )

    assert (await alice.call("GET", path))["messages"] == []
    longest = await alice.call("POST", path, {"text": "x" * 4000})
    assert (longest["seq"], len(longest["text"])) == (1, 4000)


async def test_post_message_to_unknown_room(harness: Harness) -> None:
    """Posting to a missing room is 404; to an invalid id, 400."""
    alice = await harness.user("alice")

    await fails(
        alice.call("POST", "/rooms/nowhere/messages", {"text": "hi"}), 404, "not_found"
    )
    await fails(
        alice.call("POST", "/rooms/No!/messages", {"text": "hi"}), 400, "bad_request"
    )


async def test_posting_to_public_room_makes_a_member(harness: Harness) -> None:
    """Posting in a public room adds the sender to its members."""
    alice, bob = await harness.user("alice"), await harness.user("bob")
    await alice.call("POST", "/rooms", {"id": "lobby"})

    await bob.call("POST", "/rooms/lobby/messages", {"text": "hi"})

    listed = (await alice.call("GET", "/rooms/lobby/members"))["members"]
    assert [m["username"] for m in listed] == ["alice", "bob"]


async def test_websocket_subscriber_receives_rest_posts(harness: Harness) -> None:
    """A message posted over REST reaches a WebSocket subscriber of the room."""
    alice, bob = await harness.user("alice"), await harness.user("bob")
    ws = await harness.ws(bob)
    await ws.ok({"type": "join", "room": "general"})

    posted = await alice.call("POST", "/rooms/general/messages", {"text": "via rest"})

    event = await ws.event()
    assert event == {"type": "message", "room": "general", "message": posted}


# Errors of every kind.


async def test_unknown_endpoints_are_404(harness: Harness) -> None:
    """Paths under /api/v1 that match no route get 404 not_found."""
    alice = await harness.user("alice")

    for method, path in (
        ("GET", "/api/v1/nope"),
        ("POST", "/api/v1/nope"),
        ("GET", "/api/v1/rooms/general/nope"),
        ("GET", "/api/v1/rooms/general/members/alice/x"),
        ("GET", "/api/v1/rooms/"),
    ):
        reply = await fetch(harness, method, path, token=alice.token)
        assert path in json_error(reply, 404, "not_found"), (method, path)


async def test_wrong_method_is_405_with_error_body(harness: Harness) -> None:
    """A known path with the wrong method gets 405 and the error body."""
    alice = await harness.user("alice")

    for method, path in (
        ("DELETE", "/api/v1/me"),
        ("GET", "/api/v1/auth/login"),
        ("PUT", "/api/v1/rooms"),
        ("PATCH", "/api/v1/rooms/general/messages"),
    ):
        reply = await fetch(harness, method, path, token=alice.token)
        message = json_error(reply, 405, "bad_request")
        assert method in message and path in message


async def test_wrong_method_names_the_allowed_ones(harness: Harness) -> None:
    """A 405 answer carries an Allow header listing the path's methods."""
    alice = await harness.user("alice")

    reply = await fetch(harness, "DELETE", "/api/v1/rooms", token=alice.token)

    assert reply.status == 405
    allowed = {m.strip() for m in reply.headers.get("Allow", "").split(",")}
    assert {"GET", "POST"} <= allowed


async def test_malformed_bodies_are_400(harness: Harness) -> None:
    """Bodies that are not a JSON object get 400 bad_request."""
    alice = await harness.user("alice")
    targets = (
        ("/api/v1/auth/register", None),
        ("/api/v1/auth/login", None),
        ("/api/v1/rooms", alice.token),
        ("/api/v1/dms", alice.token),
        ("/api/v1/rooms/general/messages", alice.token),
    )

    for path, token in targets:
        for data in (b"", b"{", b"{'a': 1}", b"[1, 2]", b"null", b"42", b"\xff"):
            reply = await fetch(harness, "POST", path, token=token, data=data)
            assert reply.status == 400, (path, data)
            error_of(reply.body, "bad_request")

    assert (await alice.call("GET", "/rooms/general"))["last_seq"] == 0


async def test_missing_fields_are_400(harness: Harness) -> None:
    """Bodies without a required field get 400 naming the field."""
    alice = await harness.user("alice")
    cases = (
        ("/auth/register", {"username": "x"}, "password"),
        ("/auth/login", {"password": "password-1"}, "username"),
        ("/rooms", {"title": "t"}, "id"),
        ("/dms", {}, "username"),
        ("/rooms/general/messages", {"client_id": "c"}, "text"),
    )

    for path, body, field in cases:
        message = await fails(alice.call("POST", path, body), 400, "bad_request")
        assert field in message, (path, message)


async def test_wrong_types_are_400(harness: Harness) -> None:
    """Fields of the wrong JSON type get 400 bad_request."""
    alice = await harness.user("alice")
    cases = (
        ("/auth/register", {"username": 5, "password": "password-1"}),
        ("/auth/login", {"username": "alice", "password": None}),
        ("/rooms", {"id": "ok", "private": "yes"}),
        ("/rooms", {"id": 7}),
        ("/rooms", {"id": "ok", "title": 5}),
        ("/dms", {"username": ["bob"]}),
        ("/rooms/general/messages", {"text": ["x"]}),
        ("/rooms/general/messages", {"text": "x", "client_id": 5}),
    )

    for path, body in cases:
        await fails(alice.call("POST", path, body), 400, "bad_request")

    listed = [r["id"] for r in (await alice.call("GET", "/rooms"))["rooms"]]
    assert listed == ["general"]


async def test_body_over_one_mebibyte_is_413(harness: Harness) -> None:
    """A request body over the 1 MiB limit gets 413 too_large."""
    alice = await harness.user("alice")

    reply = await fetch(
        harness,
        "POST",
        "/api/v1/rooms/general/messages",
        token=alice.token,
        data=b'{"text": "' + b"x" * (2 * 1024 * 1024) + b'"}',
    )

    assert reply.status == 413
    error_of(reply.body, "too_large")


async def test_missing_bearer_token_is_401(harness: Harness) -> None:
    """Requests without a usable Authorization header get 401 everywhere."""
    await harness.user("alice")
    headers: tuple[dict[str, str], ...] = (
        {},
        {"Authorization": ""},
        {"Authorization": "Bearer"},
        {"Authorization": "Bearer    "},
        {"Authorization": "Basic YWxpY2U6cGFzc3dvcmQtMQ=="},
        {"Authorization": "Token abc"},
    )
    paths = (
        ("GET", "/api/v1/me"),
        ("GET", "/api/v1/rooms"),
        ("GET", "/api/v1/rooms/general/messages"),
        ("POST", "/api/v1/rooms/general/messages"),
    )

    for header in headers:
        for method, path in paths:
            reply = await fetch(
                harness, method, path, headers=header, body={"text": "x"}
            )
            assert reply.status == 401, (header, path)
            error_of(reply.body, "unauthorized")
            assert reply.headers["WWW-Authenticate"] == "Bearer"


async def test_bearer_scheme_is_case_insensitive(harness: Harness) -> None:
    """'bearer' and 'BEARER' work like 'Bearer' (RFC 7235 section 2.1)."""
    alice = await harness.user("alice")

    for scheme in ("bearer", "BEARER"):
        reply = await fetch(
            harness,
            "GET",
            "/api/v1/me",
            headers={"Authorization": f"{scheme} {alice.token}"},
        )
        assert (reply.status, reply.body["username"]) == (200, "alice")


async def test_invalid_tokens_are_401(harness: Harness) -> None:
    """Garbage, foreign-secret, unsigned, tampered or sub-less tokens get 401."""
    alice = await harness.user("alice")
    later = int(time.time()) + 3600
    head, body, signature = alice.token.split(".")
    flipped = "A" if signature[0] != "A" else "B"
    tampered = f"{head}.{body}.{flipped}{signature[1:]}"
    tokens = (
        "garbage",
        "a.b.c",
        jwt.encode({"sub": "alice", "exp": later}, "x" * 48, algorithm="HS256"),
        jwt.encode({"sub": "alice", "exp": later}, None, algorithm="none"),
        tampered,
        mint(harness.server, exp=later),
        mint(harness.server, sub="Not Valid!", exp=later),
        mint(harness.server, sub="alice", exp=later, aud="elsewhere"),
        mint(harness.server, sub="alice", nbf=later),
        mint(harness.server, sub="alice", iat=later),
    )

    for token in tokens:
        reply = await fetch(harness, "GET", "/api/v1/me", token=token)
        assert reply.status == 401, token
        error_of(reply.body, "unauthorized")


async def test_expired_token_is_401(harness: Harness) -> None:
    """A token whose exp has passed gets 401 saying it expired."""
    await harness.user("alice")
    now = int(time.time())
    token = mint(harness.server, sub="alice", iat=now - 7200, exp=now - 3600)

    reply = await fetch(harness, "GET", "/api/v1/me", token=token)

    assert reply.status == 401
    assert "expired" in error_of(reply.body, "unauthorized")


async def test_foreign_token_provisions_its_user(harness: Harness) -> None:
    """A token minted elsewhere with the secret signs in and creates its user."""
    now = int(time.time())
    token = mint(harness.server, sub="NewComer", iat=now, exp=now + 600)
    guest = Client(harness.http, harness.server.url, token)

    me = await guest.call("GET", "/me")
    posted = await guest.call("POST", "/rooms/general/messages", {"text": "hi"})

    assert me["username"] == "newcomer"
    assert await guest.call("GET", "/me") == me
    assert (posted["sender"], posted["seq"]) == ("newcomer", 1)
    members = (await guest.call("GET", "/rooms/general/members"))["members"]
    assert "newcomer" in [m["username"] for m in members]
    await fails(register(harness, "newcomer"), 409, "conflict")
    login = harness.anonymous().call(
        "POST", "/auth/login", {"username": "newcomer", "password": "password-1"}
    )
    await fails(login, 401, "unauthorized")


async def test_health_reports_the_database(harness: Harness) -> None:
    """GET /health needs no token and names the SQLite backend."""
    reply = await fetch(harness, "GET", "/api/v1/health")

    assert (reply.status, reply.body) == (200, {"status": "ok", "database": "sqlite"})


# OpenAPI and the docs page.


async def openapi(harness: Harness) -> dict[str, Any]:
    reply = await fetch(harness, "GET", "/api/v1/openapi.json")
    assert reply.status == 200
    assert reply.headers["Content-Type"].startswith("application/json")
    return dict(reply.body)


async def test_openapi_document_is_valid_openapi_30(harness: Harness) -> None:
    """/api/v1/openapi.json validates as an OpenAPI 3.0 document."""
    spec = await openapi(harness)

    errors = [e.message for e in OpenAPIV30SpecValidator(spec).iter_errors()]

    assert errors == []
    assert spec["openapi"].startswith("3.0.")
    assert spec["servers"] == [{"url": "/api/v1"}]


async def test_openapi_lists_every_route(harness: Harness) -> None:
    """The document lists every route, and each one it lists is real."""
    spec = await openapi(harness)

    listed = {
        (method, path)
        for path, item in spec["paths"].items()
        for method in item
        if method in {"get", "put", "post", "delete", "patch"}
    }

    assert listed >= ROUTES, ROUTES - listed
    for method, path in sorted(listed):
        operation = spec["paths"][path][method]
        filled = path.format(room="general", username="alice", message_id=1)
        reply = await fetch(harness, method.upper(), "/api/v1" + filled)
        if "security" in operation:
            assert reply.status == 401, (method, path, reply.body)
            assert "401" in operation["responses"]
        else:
            assert reply.status in (200, 400), (method, path, reply.body)


@pytest.mark.parametrize(
    ("operation", "status"),
    [
        pytest.param(("post", "/auth/register"), 409, id="register-409"),
        pytest.param(("post", "/rooms"), 409, id="create-room-409"),
        pytest.param(("delete", "/rooms/{room}/members/{username}"), 204, id="del-204"),
        pytest.param(("post", "/auth/login"), 401, id="login-401"),
        pytest.param(("post", "/rooms/{room}/messages"), 409, id="send-409"),
    ],
)
async def test_openapi_documents_real_statuses(
    harness: Harness, operation: tuple[str, str], status: int
) -> None:
    """A status the server really returns is declared for that operation."""
    alice, bob = await harness.user("alice"), await harness.user("bob")
    await alice.call("POST", "/rooms", {"id": "team", "private": True})
    await alice.call("PUT", "/rooms/team/members/bob")
    await alice.call("POST", "/rooms/general/messages", {"text": "a", "client_id": "k"})
    provoke: dict[tuple[str, str], Callable[[], Awaitable[Reply]]] = {
        ("post", "/auth/register"): lambda: fetch(
            harness,
            "POST",
            "/api/v1/auth/register",
            body={"username": "bob", "password": "password-1"},
        ),
        ("post", "/rooms"): lambda: fetch(
            harness, "POST", "/api/v1/rooms", token=bob.token, body={"id": "team"}
        ),
        ("delete", "/rooms/{room}/members/{username}"): lambda: fetch(
            harness, "DELETE", "/api/v1/rooms/team/members/bob", token=alice.token
        ),
        ("post", "/auth/login"): lambda: fetch(
            harness,
            "POST",
            "/api/v1/auth/login",
            body={"username": "bob", "password": "wrong-one"},
        ),
        ("post", "/rooms/{room}/messages"): lambda: fetch(
            harness,
            "POST",
            "/api/v1/rooms/team/messages",
            token=alice.token,
            body={"text": "b", "client_id": "k"},
        ),
    }

    reply = await provoke[operation]()
    spec = await openapi(harness)

    assert reply.status == status
    method, path = operation
    assert str(status) in spec["paths"][path][method]["responses"]


async def test_openapi_limit_minimum_is_accepted(harness: Harness) -> None:
    """The documented minimum of the history limit is a value the server takes."""
    alice = await harness.user("alice")
    spec = await openapi(harness)
    operation = spec["paths"]["/rooms/{room}/messages"]["get"]
    (limit,) = [p for p in operation["parameters"] if p["name"] == "limit"]

    reply = await fetch(
        harness,
        "GET",
        f"/api/v1/rooms/general/messages?limit={limit['schema']['minimum']}",
        token=alice.token,
    )

    assert reply.status == 200, reply.body


async def test_docs_page_loads_swagger_ui(harness: Harness) -> None:
    """/docs serves HTML whose scripts and styles all load, aimed at the spec."""
    async with harness.http.get(harness.server.url + "/docs") as response:
        assert response.status == 200
        assert response.content_type == "text/html"
        html = await response.text()

    assets = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert any(a.endswith("swagger-ui-bundle.js") for a in assets), assets
    assert any(a.endswith("swagger-ui.css") for a in assets), assets

    bodies = []
    for asset in assets:
        async with harness.http.get(harness.server.url + asset) as response:
            assert response.status == 200, asset
            bodies.append(await response.text())
            assert bodies[-1].strip(), asset
    assert any('"/api/v1/openapi.json"' in text for text in bodies)
