"""The JSON WebSocket protocol under bad input, ids, handshake and rate limits.

Every bad frame must get a clear ``error`` and leave the connection usable,
so each test proves the connection alive afterwards with a ping or a send.
Handshake failures are read on raw aiohttp sockets to see the close code.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import jwt
import pytest

from tests.conftest import Harness, Server, Ws, harness_on

CLOSE_UNAUTHORIZED = 4401


async def bad(ws: Ws, frame: str | dict[str, Any], code: str = "bad_request") -> str:
    """Send one raw frame that must fail with ``code``; return the message.

    The reply lands in ``ws.events`` because its id, if any, is not one the
    Ws helper is waiting for; raw ids here are strings or large numbers.
    """
    raw = frame if isinstance(frame, str) else json.dumps(frame, ensure_ascii=False)
    await ws.ws.send_str(raw)
    reply = await ws.event()
    assert reply["type"] == "error", (raw[:200], reply)
    assert reply["code"] == code, (raw[:200], reply)
    if isinstance(frame, dict) and "id" in frame:
        assert reply["id"] == frame["id"], reply
    message = reply["message"]
    assert isinstance(message, str) and message
    return str(message)


async def alive(ws: Ws) -> None:
    """The connection still answers requests."""
    reply = await ws.ok({"type": "ping"})
    assert set(reply) == {"type", "id"}
    assert ws.events.empty(), "a bad frame got more than one reply"


async def refused(ws: aiohttp.ClientWebSocketResponse) -> dict[str, Any]:
    """Read a failed handshake: an unauthorized error, then close 4401."""
    async with asyncio.timeout(10):
        first = await ws.receive()
        closing = await ws.receive()
    assert first.type is aiohttp.WSMsgType.TEXT, first
    error = json.loads(first.data)
    assert (error["type"], error["code"]) == ("error", "unauthorized"), error
    assert closing.type is aiohttp.WSMsgType.CLOSE, closing
    assert closing.data == CLOSE_UNAUTHORIZED
    assert ws.close_code == CLOSE_UNAUTHORIZED
    return dict(error)


def mint(server: Server, **claims: Any) -> str:
    secret = (server.data_dir / "jwt-secret").read_text().strip()
    return jwt.encode(claims, secret, algorithm="HS256")


@pytest.fixture
async def limited(server_factory: Any) -> AsyncIterator[Harness]:
    """A harness on a server allowing 2 sends a second in bursts of 3."""
    server = server_factory("--send-rate", "2", "--send-burst", "3")
    async with harness_on(server) as harness:
        yield harness


@pytest.fixture
async def impatient(server_factory: Any) -> AsyncIterator[Harness]:
    """A harness on a server that waits only one second for the hello."""
    server = server_factory("--hello-timeout", "1", "--send-rate", "0")
    async with harness_on(server) as harness:
        yield harness


async def signed_in(harness: Harness) -> Ws:
    return await harness.ws(await harness.user("alice"))


# Bad input: an error, and the connection lives on.


async def test_malformed_json(harness: Harness) -> None:
    """Text that is not JSON gets bad_request without an id."""
    ws = await signed_in(harness)

    for raw in ("{", "not json", '{"type": "ping",}', "{'type': 'ping'}", ""):
        await bad(ws, raw)
        await alive(ws)


async def test_json_that_is_not_an_object(harness: Harness) -> None:
    """JSON arrays, strings, numbers and null get bad_request."""
    ws = await signed_in(harness)

    for raw in ("[]", '[{"type": "ping"}]', '"ping"', "42", "null", "true"):
        await bad(ws, raw)
        await alive(ws)


async def test_unknown_frame_type(harness: Harness) -> None:
    """An unknown or non-string type gets bad_request with the id."""
    ws = await signed_in(harness)

    message = await bad(ws, {"type": "shout", "id": "u1"})
    assert "shout" in message
    await alive(ws)
    await bad(ws, {"type": 5, "id": "u2"})
    await bad(ws, {"type": None, "id": "u3"})
    await alive(ws)


async def test_missing_fields(harness: Harness) -> None:
    """Frames without type or a required field get bad_request naming it."""
    ws = await signed_in(harness)
    cases = (
        ({"id": "m0"}, "type"),
        ({"type": "send", "room": "general", "id": "m1"}, "text"),
        ({"type": "send", "text": "hi", "id": "m2"}, "room"),
        ({"type": "join", "id": "m3"}, "room"),
        ({"type": "leave", "id": "m4"}, "room"),
        ({"type": "history", "id": "m5"}, "room"),
    )

    for frame, field in cases:
        assert field in await bad(ws, frame)
        await alive(ws)


async def test_wrong_field_types(harness: Harness) -> None:
    """Fields of the wrong JSON type get bad_request; nothing is stored."""
    ws = await signed_in(harness)
    frames: tuple[dict[str, Any], ...] = (
        {"type": "send", "room": "general", "text": 5, "id": "w1"},
        {"type": "send", "room": ["general"], "text": "x", "id": "w2"},
        {"type": "send", "room": "general", "text": "x", "client_id": 5, "id": "w3"},
        {"type": "join", "room": "general", "since": "1", "id": "w4"},
        {"type": "history", "room": "general", "limit": "5", "id": "w5"},
        {"type": "history", "room": "general", "limit": True, "id": "w6"},
        {"type": "history", "room": "general", "before": 1.5, "id": "w7"},
        {"type": "hello", "token": 7, "id": "w8"},
    )

    for frame in frames:
        await bad(ws, frame)
        await alive(ws)

    history = await ws.ok({"type": "history", "room": "general"})
    assert history["messages"] == []


async def test_ids_of_wrong_type_get_an_error_without_id(harness: Harness) -> None:
    """An id that is not an integer or string is refused, and not echoed."""
    ws = await signed_in(harness)

    for rid in ([1], {"a": 1}, True, 1.5):
        raw = json.dumps({"type": "ping", "id": rid})
        await bad(ws, raw)
        await alive(ws)


async def test_binary_frame(harness: Harness) -> None:
    """A binary frame gets bad_request and is not carried out."""
    ws = await signed_in(harness)
    frame = {"type": "send", "room": "general", "text": "binary", "id": "b1"}

    await ws.ws.send_bytes(json.dumps(frame).encode())

    reply = await ws.event()
    assert (reply["type"], reply["code"]) == ("error", "bad_request")
    assert "text" in reply["message"]
    await alive(ws)
    history = await ws.ok({"type": "history", "room": "general"})
    assert history["messages"] == []


async def test_oversized_frame(harness: Harness) -> None:
    """A frame over 64 KiB gets too_large with its id; one at 64 KiB passes."""
    ws = await signed_in(harness)
    padding = 64 * 1024 - len(json.dumps({"type": "ping", "id": "p", "pad": ""}))

    await bad(ws, {"type": "ping", "id": "big", "pad": "x" * 70_000}, "too_large")
    await alive(ws)
    exact = json.dumps({"type": "ping", "id": "p", "pad": "x" * padding})
    assert len(exact.encode()) == 64 * 1024
    await ws.ws.send_str(exact)
    assert await ws.event() == {"type": "ok", "id": "p"}
    await bad(ws, exact.replace('"x', '"xx', 1), "too_large")
    await alive(ws)


async def test_frame_limit_counts_utf8_bytes(harness: Harness) -> None:
    """A frame under 64 Ki characters but over 64 KiB of UTF-8 is too_large."""
    ws = await signed_in(harness)
    frame = {"type": "ping", "id": "euro", "pad": "\u20ac" * 30_000}

    assert len(json.dumps(frame, ensure_ascii=False)) < 64 * 1024
    await bad(ws, frame, "too_large")
    await alive(ws)


async def test_text_over_4000_characters(harness: Harness) -> None:
    """Text over 4000 characters gets too_large; exactly 4000 is stored."""
    ws = await signed_in(harness)

    await bad(
        ws,
        {"type": "send", "room": "general", "text": "x" * 4001, "id": "t1"},
        "too_large",
    )
    await alive(ws)
    sent = await ws.ok({"type": "send", "room": "general", "text": "\u20ac" * 4000})
    assert (sent["message"]["seq"], sent["message"]["text"]) == (1, "\u20ac" * 4000)


async def test_empty_or_blank_text(harness: Harness) -> None:
    """Empty or whitespace-only text gets bad_request and stores nothing."""
    ws = await signed_in(harness)

    for text in ("", " ", "\n\t  \r\n"):
        await bad(ws, {"type": "send", "room": "general", "text": text, "id": "e"})
        await alive(ws)

    sent = await ws.ok({"type": "send", "room": "general", "text": " padded "})
    assert (sent["message"]["seq"], sent["message"]["text"]) == (1, " padded ")


async def test_nul_in_text(harness: Harness) -> None:
    """A NUL character in text, title or client_id gets bad_request."""
    ws = await signed_in(harness)

    message = await bad(
        ws, {"type": "send", "room": "general", "text": "a\x00b", "id": "n1"}
    )
    assert "NUL" in message
    await bad(
        ws,
        {
            "type": "send",
            "room": "general",
            "text": "ok",
            "client_id": "\x00",
            "id": "n2",
        },
    )
    await alive(ws)
    history = await ws.ok({"type": "history", "room": "general"})
    assert history["messages"] == []


async def test_lone_surrogate_in_text(harness: Harness) -> None:
    """Text holding an unpaired UTF-16 surrogate escape gets bad_request."""
    ws = await signed_in(harness)

    await bad(ws, '{"type": "send", "room": "general", "text": "\\ud800"}')
    await alive(ws)

    history = await ws.ok({"type": "history", "room": "general"})
    assert history["messages"] == []


async def test_invalid_room_slug(harness: Harness) -> None:
    """Room ids outside the slug rules get bad_request for every request."""
    ws = await signed_in(harness)

    for room in ("Not A Room", "", "x" * 65, "caps-ROOM", "dot.room"):
        for frame in (
            {"type": "join", "room": room, "id": "i1"},
            {"type": "leave", "room": room, "id": "i2"},
            {"type": "send", "room": room, "text": "x", "id": "i3"},
            {"type": "history", "room": room, "id": "i4"},
        ):
            await bad(ws, frame)
        await alive(ws)


async def test_unknown_room(harness: Harness) -> None:
    """A well-formed id of no room gets not_found for join, send and history."""
    ws = await signed_in(harness)

    for frame in (
        {"type": "join", "room": "nowhere", "id": "r1"},
        {"type": "send", "room": "nowhere", "text": "x", "id": "r2"},
        {"type": "history", "room": "nowhere", "id": "r3"},
        {"type": "leave", "room": "general", "id": "r4"},
    ):
        await bad(ws, frame, "not_found")
        await alive(ws)


async def test_history_limit_zero_or_negative(harness: Harness) -> None:
    """History with limit 0 or below gets bad_request; limit 1 works."""
    ws = await signed_in(harness)
    await ws.ok({"type": "send", "room": "general", "text": "one"})

    for limit in (0, -1, -500):
        frame = {"type": "history", "room": "general", "limit": limit, "id": "l"}
        assert "limit" in await bad(ws, frame)
        await alive(ws)

    page = await ws.ok({"type": "history", "room": "general", "limit": 1})
    assert [m["text"] for m in page["messages"]] == ["one"]


async def test_negative_positions(harness: Harness) -> None:
    """Negative since, before or after get bad_request; join does not happen."""
    ws = await signed_in(harness)

    assert "since" in await bad(
        ws, {"type": "join", "room": "general", "since": -1, "id": "p1"}
    )
    assert "before" in await bad(
        ws, {"type": "history", "room": "general", "before": -1, "id": "p2"}
    )
    assert "after" in await bad(
        ws, {"type": "history", "room": "general", "after": -3, "id": "p3"}
    )
    await alive(ws)
    # The refused join must not have subscribed the connection.
    await bad(ws, {"type": "leave", "room": "general", "id": "p4"}, "not_found")


async def test_positions_beyond_64_bits(harness: Harness) -> None:
    """A position too large for a 64-bit seq gets bad_request, not a close."""
    ws = await signed_in(harness)
    frame = {"type": "history", "room": "general", "before": 2**64}

    # Race the reply against the close so that the failure shows at once.
    reply = asyncio.ensure_future(ws.request(frame))
    await asyncio.wait([reply, ws.closed], return_when=asyncio.FIRST_COMPLETED)
    if not reply.done():
        reply.cancel()

    assert not ws.closed.done(), f"closed with {ws.closed.result()}"
    assert (reply.result()["type"], reply.result()["code"]) == ("error", "bad_request")
    await alive(ws)


async def test_second_hello(harness: Harness) -> None:
    """A second hello gets bad_request and does not change the user."""
    ws = await signed_in(harness)
    other = await harness.user("bob")

    message = await bad(ws, {"type": "hello", "token": other.token, "id": "h2"})

    assert "hello" in message
    sent = await ws.ok({"type": "send", "room": "general", "text": "still me"})
    assert sent["message"]["sender"] == "alice"


async def test_frames_without_id_still_get_a_reply(harness: Harness) -> None:
    """A request without an id, or with a null id, gets a reply without id."""
    ws = await signed_in(harness)

    await ws.ws.send_str('{"type": "ping"}')
    assert await ws.event() == {"type": "ok"}
    await ws.ws.send_str('{"type": "ping", "id": null}')
    assert await ws.event() == {"type": "ok"}
    await ws.ws.send_str('{"type": "join", "room": "nowhere"}')
    reply = await ws.event()
    assert (reply["type"], reply["code"]) == ("error", "not_found")
    assert "id" not in reply
    await alive(ws)


# The handshake.


async def test_hello_replies_with_the_user(harness: Harness) -> None:
    """A good hello is answered ok with its id and the signed-in user."""
    alice = await harness.user("alice")
    me = await alice.call("GET", "/me")

    async with harness.http.ws_connect(harness.server.ws_url) as ws:
        await ws.send_json({"type": "hello", "token": alice.token, "id": "hi"})
        reply = await ws.receive_json(timeout=10)

    assert reply == {
        "type": "ok",
        "id": "hi",
        "user": me,
        "limits": {
            "max_message_length": 4000,
            "max_frame": 65536,
            "history_max": 200,
            "send_rate": 0.0,
            "send_burst": 40.0,
            "typing_ttl": 6.0,
            "max_pipeline": 64,
        },
    }


async def test_hello_tells_the_servers_limits(limited: Harness) -> None:
    """The limits in the hello reply are the server's settings."""
    ws = await limited.raw_ws()
    reply = await ws.ok({"type": "hello", "token": (await limited.user()).token})
    assert reply["limits"]["send_rate"] == 2.0
    assert reply["limits"]["send_burst"] == 3.0


async def test_first_frame_not_hello(harness: Harness) -> None:
    """A first frame other than hello gets unauthorized, then close 4401."""
    alice = await harness.user("alice")
    firsts: tuple[str | bytes, ...] = (
        '{"type": "ping", "id": 7}',
        json.dumps({"type": "send", "room": "general", "text": "x", "id": "s"}),
        "{not json",
        "[]",
        b'{"type": "hello"}',
    )

    for first in firsts:
        async with harness.http.ws_connect(harness.server.ws_url) as ws:
            if isinstance(first, bytes):
                await ws.send_bytes(first)
            else:
                await ws.send_str(first)
            error = await refused(ws)
        assert "hello" in error["message"], first
        if first == '{"type": "ping", "id": 7}':
            assert error["id"] == 7

    history = await alice.call("GET", "/rooms/general/messages")
    assert history["messages"] == []


async def test_frames_after_a_failed_hello_are_not_carried_out(
    harness: Harness,
) -> None:
    """Requests pipelined behind a bad hello are dropped with the socket."""
    alice = await harness.user("alice")

    async with harness.http.ws_connect(harness.server.ws_url) as ws:
        await ws.send_str('{"type": "hello", "token": "bad", "id": 1}')
        await ws.send_str('{"type": "send", "room": "general", "text": "x", "id": 2}')
        error = await refused(ws)

    assert error["id"] == 1
    history = await alice.call("GET", "/rooms/general/messages")
    assert history["messages"] == []


async def test_bad_tokens_are_refused(harness: Harness) -> None:
    """A missing, invalid, foreign or expired token closes with 4401."""
    await harness.user("alice")
    now = int(time.time())
    tokens: tuple[Any, ...] = (
        None,
        "",
        "garbage",
        7,
        jwt.encode({"sub": "alice", "exp": now + 60}, "y" * 48, algorithm="HS256"),
        mint(harness.server, sub="alice", exp=now - 3600),
        mint(harness.server, sub="Bad Name!", exp=now + 60),
    )

    for token in tokens:
        async with harness.http.ws_connect(harness.server.ws_url) as ws:
            await ws.send_json({"type": "hello", "token": token, "id": "t"})
            error = await refused(ws)
        assert error["id"] == "t", token


async def test_expired_token_says_so(harness: Harness) -> None:
    """The refusal of an expired token names the expiry."""
    await harness.user("alice")
    token = mint(harness.server, sub="alice", exp=int(time.time()) - 3600)

    async with harness.http.ws_connect(harness.server.ws_url) as ws:
        await ws.send_json({"type": "hello", "token": token})
        error = await refused(ws)

    assert "expired" in error["message"]
    assert "id" not in error


async def test_no_hello_within_the_timeout(impatient: Harness) -> None:
    """A client silent past --hello-timeout gets unauthorized and 4401."""
    async with impatient.http.ws_connect(impatient.server.ws_url) as ws:
        started = time.monotonic()
        error = await refused(ws)
        waited = time.monotonic() - started

    assert "hello" in error["message"]
    assert waited >= 0.9


async def test_hello_timeout_ends_with_the_hello(impatient: Harness) -> None:
    """After a good hello the hello timeout no longer applies."""
    ws = await impatient.ws(await impatient.user("alice"))

    await asyncio.sleep(1.5)

    await alive(ws)


# Request ids.


async def test_ids_are_echoed_exactly(harness: Harness) -> None:
    """Integer and string ids come back with the same value and JSON type."""
    ws = await signed_in(harness)
    ids: tuple[int | str, ...] = (0, 42, -7, 2**53 + 1, "abc", "", "42", "ünï ✓")

    for rid in ids:
        await ws.ws.send_str(json.dumps({"type": "ping", "id": rid}))
        reply = await ws.event()
        assert reply == {"type": "ok", "id": rid}
        assert type(reply["id"]) is type(rid)
        await ws.ws.send_str(json.dumps({"type": "join", "room": "none", "id": rid}))
        error = await ws.event()
        assert (error["type"], error["id"], error["code"]) == (
            "error",
            rid,
            "not_found",
        )
        assert type(error["id"]) is type(rid)


async def test_every_request_with_id_gets_exactly_one_reply(
    harness: Harness,
) -> None:
    """Pipelined good and bad requests each get one reply.

    Replies come in request order, except that a send's ``ok`` waits for
    its commit and may come later; committed sends keep their order.
    """
    alice = await harness.user("alice")
    async with harness.http.ws_connect(harness.server.ws_url) as ws:
        await ws.send_json({"type": "hello", "token": alice.token, "id": "hello"})
        assert (await ws.receive_json(timeout=10))["type"] == "ok"
        frames: list[dict[str, Any]] = [
            {"type": "ping", "id": 1},
            {"type": "send", "room": "general", "text": "a", "id": 2},
            {"type": "send", "room": "general", "text": "", "id": 3},
            {"type": "history", "room": "general", "id": "four"},
            {"type": "join", "room": "nowhere", "id": 5},
            {"type": "bogus", "id": 6},
            {"type": "join", "room": "general", "id": 7},
            {"type": "send", "room": "general", "text": "b", "id": 8},
            {"type": "leave", "room": "general", "id": 9},
            {"type": "leave", "room": "general", "id": 10},
            {"type": "hello", "token": alice.token, "id": 11},
            {"type": "history", "room": "general", "limit": 0, "id": 12},
            {"type": "send", "room": "general", "text": "c", "id": 13},
            {"type": "ping", "id": "last"},
        ]
        for frame in frames:
            await ws.send_json(frame)

        replies: list[dict[str, Any]] = []
        async with asyncio.timeout(10):
            while len(replies) < len(frames):
                frame = await ws.receive_json()
                if frame["type"] in ("ok", "error"):
                    replies.append(frame)
        await ws.send_json({"type": "ping", "id": "after"})
        following = await ws.receive_json(timeout=10)

    assert sorted(map(str, (r["id"] for r in replies))) == sorted(
        map(str, (f["id"] for f in frames))
    )
    sends = {f["id"] for f in frames if f["type"] == "send"}

    def in_order(ids: list[Any]) -> list[Any]:
        return [i for i in ids if i not in sends]

    assert in_order([r["id"] for r in replies]) == in_order([f["id"] for f in frames])
    committed = [r["id"] for r in replies if r["id"] in sends and r["type"] == "ok"]
    assert committed == [2, 8, 13]
    outcome = {r["id"]: r.get("code", "ok") for r in replies}
    assert outcome == {
        1: "ok",
        2: "ok",
        3: "bad_request",
        "four": "ok",
        5: "not_found",
        6: "bad_request",
        7: "ok",
        8: "ok",
        9: "ok",
        10: "not_found",
        11: "bad_request",
        12: "bad_request",
        13: "ok",
        "last": "ok",
    }
    assert following == {"type": "ok", "id": "after"}


# Rate limiting.


async def test_burst_is_rate_limited(limited: Harness) -> None:
    """Sends beyond the burst get rate_limited; the connection stays usable."""
    ws = await limited.ws(await limited.user("alice"))

    replies = await asyncio.gather(
        *(
            ws.request({"type": "send", "room": "general", "text": f"m{i}"})
            for i in range(10)
        )
    )

    codes = [r.get("code", "ok") for r in replies]
    assert codes[:3] == ["ok", "ok", "ok"], codes
    assert set(codes[3:]) <= {"ok", "rate_limited"}, codes
    assert codes.count("rate_limited") >= 6, codes
    await alive(ws)
    history = await ws.ok({"type": "history", "room": "general"})
    assert len(history["messages"]) == codes.count("ok")


async def test_rate_limit_refills(limited: Harness) -> None:
    """After a pause the bucket refills and sends are accepted again."""
    ws = await limited.ws(await limited.user("alice"))
    for i in range(3):
        await ws.ok({"type": "send", "room": "general", "text": f"m{i}"})
    refused = await ws.request({"type": "send", "room": "general", "text": "no"})
    assert refused.get("code") == "rate_limited"

    await asyncio.sleep(0.6)

    await ws.ok({"type": "send", "room": "general", "text": "again"})


async def test_rate_limit_is_per_user_and_shared_with_rest(limited: Harness) -> None:
    """One user's exhausted bucket limits their REST sends, not other users."""
    alice, bob = await limited.user("alice"), await limited.user("bob")
    ws = await limited.ws(alice)
    replies = await asyncio.gather(
        *(
            ws.request({"type": "send", "room": "general", "text": f"m{i}"})
            for i in range(6)
        )
    )
    assert "rate_limited" in [r.get("code") for r in replies]

    response = await limited.http.post(
        limited.server.url + "/api/v1/rooms/general/messages",
        json={"text": "via rest"},
        headers={"Authorization": f"Bearer {alice.token}"},
    )
    async with response:
        assert response.status == 429
        body = await response.json()
    assert body["error"]["code"] == "rate_limited"

    posted = await bob.call("POST", "/rooms/general/messages", {"text": "bob"})
    assert posted["sender"] == "bob"
