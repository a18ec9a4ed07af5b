"""The hub's fan-out rules, on a real Hub and the real JSON codec.

The hub does no I/O: a subscriber is anything with ``deliver``. These
tests give it one that keeps what it is handed, one list entry per write,
and read the frames back with the JSON decoder a client would use.
"""

from __future__ import annotations

import json
from typing import Any

from serenchat.broker import MessagePosted, PresenceChanged
from serenchat.domain.models import Message, Status
from serenchat.gateway.jsonws import CODEC
from serenchat.hub import Hub


class Recorder:
    """A subscriber that keeps each write it is handed."""

    codec = CODEC

    def __init__(self, username: str) -> None:
        self.username = username
        self.user_id = 0
        self.status = Status.ONLINE
        self.writes: list[bytes] = []
        self.overflowed = False

    def deliver(self, data: bytes) -> None:
        self.writes.append(data)

    async def send(self, data: bytes) -> None:
        self.writes.append(data)

    def overflow(self) -> None:
        self.overflowed = True

    def frames(self) -> list[dict[str, Any]]:
        """Every JSON frame received, across writes, in order."""
        found = []
        for data in self.writes:
            found += [json.loads(text) for text in _payloads(data)]
        return found

    def seqs(self) -> list[int]:
        return [f["message"]["seq"] for f in self.frames()]


def _payloads(data: bytes) -> list[str]:
    """Split server-to-client RFC 6455 text frames (unmasked)."""
    out = []
    at = 0
    while at < len(data):
        length = data[at + 1] & 0x7F
        at += 2
        if length == 126:
            length = int.from_bytes(data[at : at + 2], "big")
            at += 2
        elif length == 127:
            length = int.from_bytes(data[at : at + 8], "big")
            at += 8
        out.append(data[at : at + length].decode())
        at += length
    return out


def posted(seq: int, room: str = "lobby") -> MessagePosted:
    return MessagePosted(
        Message(
            id=seq,
            room=room,
            seq=seq,
            sender="ann",
            text=f"m{seq}",
            created_at="2026-12-03T12:00:00.000Z",
            client_id=None,
        )
    )


def live(hub: Hub, name: str, room: str = "lobby", floor: int = 0) -> Recorder:
    subscriber = Recorder(name)
    hub.connect(subscriber, [room])
    hub.subscribe(subscriber, room).activate(floor)
    return subscriber


def test_a_commit_reaches_each_subscriber_in_one_write() -> None:
    hub = Hub()
    readers = [live(hub, f"u{i}") for i in range(5)]

    hub.publish_stream("lobby", [posted(1), posted(2), posted(3)])

    for reader in readers:
        assert len(reader.writes) == 1
        assert reader.seqs() == [1, 2, 3]
    # The same bytes object for everyone who needed the whole commit.
    assert len({id(r.writes[0]) for r in readers}) == 1
    assert (hub.encoded, hub.delivered, hub.writes) == (3, 15, 5)


def test_a_floor_inside_a_commit_gets_only_what_is_above_it() -> None:
    hub = Hub()
    behind = live(hub, "behind")
    ahead = live(hub, "ahead", floor=2)  # a replay already gave it 1 and 2
    done = live(hub, "done", floor=3)

    hub.publish_stream("lobby", [posted(1), posted(2), posted(3)])

    assert behind.seqs() == [1, 2, 3]
    assert ahead.seqs() == [3]
    assert done.writes == []
    assert hub.delivered == 4
    hub.publish_stream("lobby", [posted(4)])
    assert [r.seqs()[-1] for r in (behind, ahead, done)] == [4, 4, 4]


def test_a_syncing_subscription_holds_then_releases_above_its_floor() -> None:
    hub = Hub()
    joining = Recorder("joining")
    hub.connect(joining, ["lobby"])
    subscription = hub.subscribe(joining, "lobby")

    hub.publish_stream("lobby", [posted(5), posted(6)])
    hub.publish_stream("lobby", [posted(7)])
    assert joining.writes == []

    subscription.activate(6)  # the replay went up to 6
    assert joining.seqs() == [7]
    hub.publish_stream("lobby", [posted(7), posted(8)])  # 7 again: dropped
    assert joining.seqs() == [7, 8]


def test_a_subscription_that_holds_too_much_is_closed() -> None:
    hub = Hub(max_held=4)
    joining = Recorder("joining")
    hub.connect(joining, ["lobby"])
    hub.subscribe(joining, "lobby")
    hub.publish_stream("lobby", [posted(1), posted(2), posted(3)])
    assert not joining.overflowed
    hub.publish_stream("lobby", [posted(4), posted(5)])
    assert joining.overflowed


def test_deferred_sends_keep_their_recipients_and_go_in_one_write() -> None:
    hub = Hub()
    ann = live(hub, "ann")
    bob = live(hub, "bob")

    for user, status in (("cy", Status.ONLINE), ("di", Status.AWAY)):
        event = PresenceChanged(user=user, status=status, last_seen=None, rooms=[])
        hub.send_to_users(["ann", "bob"], event, defer=True)
    late = live(hub, "late")  # connected after the sends: not a recipient
    assert ann.writes == bob.writes == []

    assert hub.flush_deferred() is True
    for reader in (ann, bob):
        assert len(reader.writes) == 1
        assert [f["user"] for f in reader.frames()] == ["cy", "di"]
    assert late.writes == []
    assert hub.flush_deferred() is False
