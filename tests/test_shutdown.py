"""Stopping the server: clients are told, queued messages are kept."""

from __future__ import annotations

import asyncio

from tests.conftest import Harness


async def test_clients_get_going_away_on_shutdown(harness: Harness) -> None:
    """SIGINT closes every WebSocket with 1001 and the server exits cleanly."""
    alice = await harness.user()
    sockets = [await harness.ws(alice) for _ in range(3)]
    await sockets[0].ok({"type": "send", "room": "general", "text": "kept"})

    await asyncio.to_thread(harness.server.stop)

    codes = await asyncio.gather(*(asyncio.wait_for(ws.closed, 10) for ws in sockets))
    assert codes == [1001, 1001, 1001]
    harness.server.start()
    page = await alice.call("GET", "/rooms/general/messages")
    assert [m["text"] for m in page["messages"]] == ["kept"]
