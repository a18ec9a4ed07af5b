"""The core guarantees, proved against a real server process.

Gap-free sequencing under concurrency, durability across kill -9, group
commit, encode-once fan-out, recovery with ``since``, and the bounded
per-connection buffer.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import socket
import struct
from pathlib import Path
from typing import Any

import aiohttp

from tests.conftest import Client, Harness, Server, Ws, harness_on


def metric(text: str, name: str) -> float:
    match = re.search(rf"^{name} (\S+)$", text, re.MULTILINE)
    assert match, f"{name} missing from /metrics"
    return float(match.group(1))


async def metrics(harness: Harness) -> str:
    async with harness.http.get(harness.server.url + "/metrics") as response:
        return await response.text()


async def joined(harness: Harness, client: Client, room: str = "general") -> Ws:
    ws = await harness.ws(client)
    await ws.ok({"type": "join", "room": room})
    return ws


async def test_seq_is_gap_free_under_concurrent_senders(harness: Harness) -> None:
    """Many concurrent senders over WS and REST get seqs 1..N, no gap or dup."""
    senders = [await harness.user() for _ in range(12)]
    watcher = await joined(harness, await harness.user())
    sockets = [await harness.ws(s) for s in senders[:8]]

    async def over_ws(ws: Ws, n: int) -> list[int]:
        replies = [
            await ws.ok({"type": "send", "room": "general", "text": f"ws {i}"})
            for i in range(n)
        ]
        return [r["message"]["seq"] for r in replies]

    async def over_rest(client: Client, n: int) -> list[int]:
        out = []
        for i in range(n):
            body = {"text": f"rest {i}"}
            message = await client.call("POST", "/rooms/general/messages", body)
            out.append(message["seq"])
        return out

    batches = await asyncio.gather(
        *(over_ws(ws, 40) for ws in sockets),
        *(over_rest(c, 20) for c in senders[8:]),
    )
    total = 8 * 40 + 4 * 20
    acked = sorted(seq for batch in batches for seq in batch)
    assert acked == list(range(1, total + 1))

    # Every subscriber sees each message once, in seq order.
    seen = [m["seq"] for m in await watcher.messages(total)]
    assert seen == list(range(1, total + 1))
    # And the stored history agrees.
    page = await senders[0].call("GET", "/rooms/general/messages", after=0, limit=200)
    assert [m["seq"] for m in page["messages"]] == list(range(1, 201))

    text = await metrics(harness)
    batches_run = metric(text, "serenchat_commit_batches_total")
    stored = metric(text, "serenchat_messages_stored_total")
    assert stored == total
    assert batches_run < stored, "concurrent sends were not group-committed"


async def _pipelined_burst(
    server: Server, count: int
) -> tuple[list[dict[str, Any]], dict[str, float]]:
    """One connection fires ``count`` sends without waiting.

    Returns the replies and the fan-out counters, with three more
    subscribers in the room (and the sender's own connection) watching.
    """
    async with harness_on(server) as harness:
        ws = await joined(harness, await harness.user())
        watchers = [await joined(harness, await harness.user()) for _ in range(3)]
        frames = [
            {"type": "send", "room": "general", "text": f"p{i}"} for i in range(count)
        ]
        frames[count // 2]["text"] = "x" * 5000  # refused; the rest go on
        replies = await asyncio.gather(*(ws.request(f) for f in frames))
        for watcher in watchers:
            seen = await watcher.messages(count - 1)
            assert [m["seq"] for m in seen] == list(range(1, count))
        text = await metrics(harness)
        counters = {
            name: metric(text, f"serenchat_{name}_total")
            for name in ("commit_batches", "fanout_deliveries", "fanout_writes")
        }
    return replies, counters


async def test_one_connection_pipelines_its_sends(server_factory: Any) -> None:
    """A connection's sends share commits, keep their order and each get a reply."""
    count = 100
    replies, counters = await _pipelined_burst(
        server_factory("--send-rate", "0", "--max-pipeline", "16"), count
    )
    batches = counters["commit_batches"]
    refused = replies.pop(count // 2)
    assert refused["type"] == "error" and refused["code"] == "too_large"
    assert all(r["type"] == "ok" for r in replies)
    # Stored in the order sent, with no gap where the refused one was.
    assert [r["message"]["seq"] for r in replies] == list(range(1, count))
    texts = [f"p{i}" for i in range(count) if i != count // 2]
    assert [r["message"]["text"] for r in replies] == texts
    assert batches <= count // 4, f"{batches} commits for {count - 1} sends"
    # Each subscriber got each commit's messages in one write.
    assert counters["fanout_deliveries"] == 4 * (count - 1)
    assert counters["fanout_writes"] == 4 * batches

    # With a pipeline of one, each send waits for its commit before the
    # next frame is read, so none share a transaction.
    _, alone = await _pipelined_burst(
        server_factory("--send-rate", "0", "--max-pipeline", "1"), count
    )
    assert alone["commit_batches"] == count - 1
    assert alone["fanout_writes"] == alone["fanout_deliveries"] == 4 * (count - 1)


async def test_fanout_encodes_each_broadcast_once(harness: Harness) -> None:
    """One broadcast to many subscribers encodes one frame, delivers many."""
    clients = [await harness.user() for _ in range(30)]
    sockets = [await joined(harness, c) for c in clients]
    before = await metrics(harness)

    for i in range(5):
        await sockets[0].ok({"type": "send", "room": "general", "text": f"b{i}"})
    for ws in sockets:
        await ws.messages(5)

    after = await metrics(harness)
    encoded = metric(after, "serenchat_fanout_frames_encoded_total") - metric(
        before, "serenchat_fanout_frames_encoded_total"
    )
    delivered = metric(after, "serenchat_fanout_deliveries_total") - metric(
        before, "serenchat_fanout_deliveries_total"
    )
    assert encoded == 5
    assert delivered == 5 * 30


async def test_acknowledged_messages_survive_kill_9(
    server_factory: Any, tmp_path: Path
) -> None:
    """Every message acknowledged before a SIGKILL is there after restart."""
    data = tmp_path / "durable"
    server: Server = server_factory("--send-rate", "0", data_dir=data)
    acked: dict[int, str] = {}

    async with harness_on(server) as harness:
        users = [await harness.user() for _ in range(10)]
        sockets = [await harness.ws(u) for u in users]
        stop = asyncio.Event()

        async def pump(ws: Ws, tag: int) -> None:
            i = 0
            while not stop.is_set():
                try:
                    reply = await ws.request(
                        {"type": "send", "room": "general", "text": f"{tag}-{i}"},
                        timeout=5,
                    )
                except (TimeoutError, ConnectionError, aiohttp.ClientError):
                    return
                if reply["type"] == "ok":
                    acked[reply["message"]["id"]] = reply["message"]["text"]
                i += 1

        pumps = [asyncio.create_task(pump(ws, n)) for n, ws in enumerate(sockets)]
        while len(acked) < 300:
            await asyncio.sleep(0.01)
        server.kill()  # mid-stream: sends are in flight right now
        stop.set()
        await asyncio.gather(*pumps, return_exceptions=True)

    assert len(acked) >= 300
    server.start()
    async with aiohttp.ClientSession() as http:
        reader = Harness(server, http)
        client = await reader.user("reader")
        stored: dict[int, str] = {}
        after = 0
        while True:
            page = await client.call(
                "GET", "/rooms/general/messages", after=after, limit=200
            )
            for m in page["messages"]:
                stored[m["id"]] = m["text"]
                assert m["seq"] == after + 1, "gap in seq after restart"
                after = m["seq"]
            if len(page["messages"]) < 200:
                break

    missing = {i: t for i, t in acked.items() if stored.get(i) != t}
    assert not missing, f"{len(missing)} acknowledged messages lost"


async def test_rejoin_with_since_receives_exactly_the_missed(harness: Harness) -> None:
    """A client that drops and rejoins with since gets the gap, then live."""
    reader, writer = await harness.user(), await harness.user()
    wr = await joined(harness, reader)
    ww = await joined(harness, writer)
    for i in range(5):
        await ww.ok({"type": "send", "room": "general", "text": f"before {i}"})
    seen = await wr.messages(5)
    last = seen[-1]["seq"]
    await wr.close()

    for i in range(600):  # more than one replay page
        await ww.request({"type": "send", "room": "general", "text": f"missed {i}"})

    back = await harness.ws(reader)
    reply = await back.ok({"type": "join", "room": "general", "since": last})
    missed = [back.events.get_nowait()["message"] for _ in range(600)]
    assert back.events.empty(), "more than the missed messages arrived"
    assert [m["seq"] for m in missed] == list(range(last + 1, last + 601))
    assert [m["text"] for m in missed] == [f"missed {i}" for i in range(600)]
    assert reply["last_seq"] == last + 600

    await ww.ok({"type": "send", "room": "general", "text": "live"})
    (live,) = await back.messages(1)
    assert live["seq"] == last + 601


async def test_rejoin_during_a_stream_has_no_gap_or_duplicate(harness: Harness) -> None:
    """Rejoining while others keep sending yields one unbroken seq run."""
    reader = await harness.user()
    writers = [await harness.ws(await harness.user()) for _ in range(4)]
    first = await joined(harness, reader)
    stop = asyncio.Event()

    async def stream(ws: Ws) -> None:
        i = 0
        while not stop.is_set():
            await ws.ok({"type": "send", "room": "general", "text": f"s{i}"})
            i += 1

    tasks = [asyncio.create_task(stream(ws)) for ws in writers]
    got = await first.messages(20)
    await first.close()
    await asyncio.sleep(0.05)

    second = await harness.ws(reader)
    await second.ok({"type": "join", "room": "general", "since": got[-1]["seq"]})
    got += await second.messages(100)
    stop.set()
    await asyncio.gather(*tasks)

    seqs = [m["seq"] for m in got]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))


async def test_join_reply_follows_replay_and_precedes_live(harness: Harness) -> None:
    """Replayed messages come before the join ok, live ones after it."""
    reader, writer = await harness.user(), await harness.user()
    ww = await joined(harness, writer)
    for i in range(3):
        await ww.ok({"type": "send", "room": "general", "text": f"old {i}"})

    ws = await harness.ws(reader)
    rid = "join-1"
    order: list[str] = []
    done = asyncio.get_running_loop().create_future()

    async def read() -> None:
        async for msg in ws.ws:
            frame = json.loads(msg.data)
            if frame["type"] not in ("message", "ok"):
                continue  # presence and receipts are not part of this order
            order.append((frame.get("id") == rid and "ok") or frame["type"])
            if len(order) == 5:
                done.set_result(None)

    ws.reader.cancel()
    reader_task = asyncio.create_task(read())
    await ws.ws.send_json({"type": "join", "room": "general", "since": 0, "id": rid})
    while "ok" not in order:
        await asyncio.sleep(0.01)
    await ww.ok({"type": "send", "room": "general", "text": "new"})
    await asyncio.wait_for(done, 5)
    reader_task.cancel()
    assert order == ["message", "message", "message", "ok", "message"]


class RawClient:
    """A WebSocket client on a bare socket that reads only when told to."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port))
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            (
                "GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                "Sec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        head = b""
        while b"\r\n\r\n" not in head:
            head += self.sock.recv(1)
        assert b" 101 " in head.split(b"\r\n")[0]

    def send(self, obj: dict[str, Any]) -> None:
        payload = json.dumps(obj).encode()
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        assert len(payload) < 1 << 16
        header = struct.pack("!BBH", 0x81, 0x80 | 126, len(payload))
        self.sock.sendall(header + mask + masked)

    def close_code(self, timeout: float = 10) -> int | None:
        """Read until a close frame; return its code (None if cut off)."""
        self.sock.settimeout(timeout)
        buffer = b""
        while True:
            try:
                chunk = self.sock.recv(65536)
            except (ConnectionResetError, TimeoutError):
                return None
            if not chunk:
                return None
            buffer += chunk
            while len(buffer) >= 2:
                opcode, length = buffer[0] & 0x0F, buffer[1] & 0x7F
                offset = 2
                if length == 126:
                    (length,) = struct.unpack("!H", buffer[2:4])
                    offset = 4
                elif length == 127:
                    (length,) = struct.unpack("!Q", buffer[2:10])
                    offset = 10
                if len(buffer) < offset + length:
                    break
                payload = buffer[offset : offset + length]
                buffer = buffer[offset + length :]
                if opcode == 0x8:
                    return int(struct.unpack("!H", payload[:2])[0])


async def test_slow_consumer_is_closed_with_4408(server_factory: Any) -> None:
    """A client that stops reading is cut off at its buffer limit, not waited on."""
    server = server_factory(
        "--send-rate", "0",
        "--max-connection-buffer", "65536",
        "--max-message-length", "50000",
        "--max-frame", "100000",
    )  # fmt: skip
    async with harness_on(server) as harness:
        slow_user, writer = await harness.user(), await harness.user()
        raw = RawClient(server.port)
        raw.send({"type": "hello", "token": slow_user.token})
        raw.send({"type": "join", "room": "general"})
        ww = await joined(harness, writer)
        await asyncio.sleep(0.2)

        # 10 MB: far past 64 KiB plus what the kernel's socket buffers hold.
        text = "x" * 50_000
        for _ in range(200):
            await ww.ok({"type": "send", "room": "general", "text": text})
        # The writer is unaffected, and the slow one gets 4408.
        await ww.ok({"type": "ping"})
        code = await asyncio.to_thread(raw.close_code)
        assert code == 4408


async def test_metrics_are_the_ones_the_readme_lists(harness: Harness) -> None:
    """Every metric the README documents is served, with the process's own."""
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    documented = set(re.findall(r"^\| `(serenchat_\w+)` \|", readme, re.MULTILINE))
    assert len(documented) >= 7
    text = await metrics(harness)
    served = set(re.findall(r"^(serenchat_\w+) ", text, re.MULTILINE))
    assert documented == served
    assert metric(text, "serenchat_connections") == 0
    assert metric(text, "process_resident_memory_bytes") > 0
