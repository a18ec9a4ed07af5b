"""A first end-to-end pass over a real server process."""

from tests.conftest import Harness


async def test_send_reaches_every_subscriber(harness: Harness) -> None:
    """A message sent by one user arrives at every joined connection."""
    alice, bob = await harness.user(), await harness.user()
    wa, wb = await harness.ws(alice), await harness.ws(bob)
    await wa.ok({"type": "join", "room": "general"})
    await wb.ok({"type": "join", "room": "general"})

    reply = await wa.ok({"type": "send", "room": "general", "text": "hello"})

    assert reply["message"]["seq"] == 1
    for ws in (wa, wb):
        (got,) = await ws.messages(1)
        assert got == reply["message"]
