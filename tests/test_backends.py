"""Whole servers on each database backend, one or two processes sharing it."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp

from tests.conftest import Client, Harness, harness_on


async def burst(client: Client, tag: str, count: int) -> list[int]:
    seqs = []
    for i in range(count):
        body = {"text": f"{tag} {i}", "client_id": f"{tag}-{i}"}
        message = await client.call("POST", "/rooms/general/messages", body)
        seqs.append(message["seq"])
    return seqs


async def test_server_on_backend(server_factory: Any, database_url: str) -> None:
    """Register, send, fan out and recover work the same on every backend."""
    server = server_factory("--send-rate", "0", "--database-url", database_url)
    async with harness_on(server) as harness:
        alice, bob = await harness.user("alice"), await harness.user("bob")
        wb = await harness.ws(bob)
        await wb.ok({"type": "join", "room": "general"})

        seqs = await asyncio.gather(*(burst(alice, f"a{n}", 15) for n in range(4)))
        assert sorted(s for run in seqs for s in run) == list(range(1, 61))
        assert [m["seq"] for m in await wb.messages(60)] == list(range(1, 61))

        again = await alice.call(
            "POST", "/rooms/general/messages", {"text": "dup", "client_id": "a0-0"}
        )
        assert again["seq"] == seqs[0][0] and again["text"] == "a0 0"
        assert (await alice.call("GET", "/rooms/general"))["last_seq"] == 60

        await wb.close()
        await burst(alice, "later", 5)
        back = await harness.ws(bob)
        reply = await back.ok({"type": "join", "room": "general", "since": 60})
        assert reply["last_seq"] == 65
        assert [m["seq"] for m in await back.messages(5)] == [61, 62, 63, 64, 65]


async def test_two_processes_share_one_sequence(
    server_factory: Any, database_url: str
) -> None:
    """Two server processes on one database still hand out gap-free seqs."""
    first = server_factory("--send-rate", "0", "--database-url", database_url)
    second = server_factory("--send-rate", "0", "--database-url", database_url)
    async with aiohttp.ClientSession() as http:
        one, two = Harness(first, http), Harness(second, http)
        alice = await one.user("alice")
        bob = await two.user("bob")
        # Each node has its own data dir, hence its own token secret, so each
        # user talks to the node that issued their token.
        seqs = await asyncio.gather(
            *(burst(alice, f"a{n}", 20) for n in range(3)),
            *(burst(bob, f"b{n}", 20) for n in range(3)),
        )
    assert sorted(s for run in seqs for s in run) == list(range(1, 121))
