"""A lean WebSocket client for load generation (RFC 6455), on asyncio.

One :class:`Connection` is one ``asyncio.Protocol`` on a raw TCP socket: it
does the opening handshake itself (section 4.1), masks what it sends
(section 5.3) and parses the server's frames in ``data_received``, with no
task, queue or message object per frame. That keeps the load generator's
cost per received frame a few microseconds, so that a single process on
one core can count 100,000+ deliveries per second (the measured comparison
with aiohttp's client is in bench/README.md).

Scope, on purpose: text frames only, no extensions, and every server frame
must be final and unmasked, as SerenChat and aiohttp send them; anything
else is reported as a protocol error and the connection is dropped.

Frames whose payload starts with ``{"type":"message"`` are room messages:
they are counted into a shared :class:`Tally` and never decoded. Replies
(``ok`` and ``error``) are decoded and resolve the matching
:meth:`Connection.request`. Any other event (presence, receipts, typing)
is only counted, with its size, as "other" traffic.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import struct
import sys
import time
from typing import Any, cast

import msgspec

# RFC 6455, section 1.3: the GUID hashed into Sec-WebSocket-Accept.
GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

OP_TEXT = 0x1
OP_CLOSE = 0x8
OP_PING = 0x9
OP_PONG = 0xA

MESSAGE_PREFIX = b'{"type":"message"'
# Replies are decoded; other events (presence, receipts...) only counted.
REPLY_PREFIXES = (b'{"type":"ok"', b'{"type":"error"')

# Message texts start with "T" and a fixed-width time.monotonic_ns() stamp.
STAMP_MARK = b'"text":"T'
STAMP_DIGITS = 19

# Seconds to wait for a handshake or a reply before giving up on the run.
REPLY_TIMEOUT = 30.0

_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.decode


class ProtocolError(Exception):
    """The server sent something this client does not speak."""


def stamped_text(width: int) -> str:
    """A message text carrying the current monotonic time, ``width`` long.

    CLOCK_MONOTONIC is one clock for the whole machine on Linux, so a stamp
    taken here can be compared with a receive time taken in any process.
    """
    stamp = f"T{time.monotonic_ns():0{STAMP_DIGITS}d} "
    return stamp + "x" * max(0, width - len(stamp))


class Tally:
    """Deliveries counted by every receiving connection of one process.

    ``stamp_floor`` switches latency recording: ``None`` records nothing;
    otherwise every delivery whose stamp is at least the floor adds
    ``receive time - stamp`` (nanoseconds) to ``latencies``.
    """

    __slots__ = (
        "_target",
        "_waiter",
        "deliveries",
        "latencies",
        "other_bytes",
        "other_frames",
        "stamp_floor",
    )

    def __init__(self) -> None:
        self.deliveries = 0
        # Events that are neither messages nor replies, and their payload.
        self.other_frames = 0
        self.other_bytes = 0
        self.latencies: list[int] = []
        self.stamp_floor: int | None = None
        self._target = sys.maxsize
        self._waiter: asyncio.Future[None] | None = None

    async def reach(self, target: int) -> None:
        """Return once ``deliveries`` is at least ``target``."""
        if self.deliveries >= target:
            return
        self._waiter = asyncio.get_running_loop().create_future()
        self._target = target
        try:
            await self._waiter
        finally:
            self._waiter = None
            self._target = sys.maxsize

    def counted(self) -> None:
        """Called by receivers after adding to ``deliveries``."""
        if self.deliveries >= self._target:
            waiter = self._waiter
            if waiter is not None and not waiter.done():
                waiter.set_result(None)

    def observe(self, payload: bytes | bytearray | str, received_ns: int) -> None:
        """Count one delivery given as a whole payload (slow receivers)."""
        self.deliveries += 1
        if self.stamp_floor is not None:
            data = payload.encode() if isinstance(payload, str) else payload
            self.record_stamp(data, 0, len(data), received_ns)
        self.counted()

    def record_stamp(
        self, data: bytes | bytearray, start: int, end: int, received_ns: int
    ) -> None:
        """Add the latency of the message in ``data[start:end]``, if stamped."""
        at = data.find(STAMP_MARK, start, end)
        if at < 0:
            return
        at += len(STAMP_MARK)
        stamp = int(data[at : at + STAMP_DIGITS])
        floor = self.stamp_floor
        if floor is not None and stamp >= floor:
            self.latencies.append(received_ns - stamp)


class Connection(asyncio.Protocol):
    """One client connection; create it with :func:`connect`."""

    def __init__(self, tally: Tally | None) -> None:
        self.tally = tally
        self.transport: asyncio.Transport | None = None
        loop = asyncio.get_running_loop()
        self.opened: asyncio.Future[None] = loop.create_future()
        # (close code or None, reason) once the connection is gone.
        self.closed: asyncio.Future[tuple[int | None, str]] = loop.create_future()
        self.errors: list[dict[str, Any]] = []
        self.replies = 0
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._next_id = 0
        self._key = b""
        self._head = bytearray()
        self._buffer = bytearray()

    # Opening handshake (RFC 6455, section 4.1).

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports quack like asyncio.Transport without
        # inheriting from it, so this is a cast rather than a check.
        self.transport = cast(asyncio.Transport, transport)

    def handshake(self, host: str, port: int, path: str) -> None:
        self._key = base64.b64encode(os.urandom(16))
        request = (
            f"GET {path} HTTP/1.1\r\n"
            f"Host: {host}:{port}\r\n"
            "Upgrade: websocket\r\n"
            "Connection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {self._key.decode()}\r\n"
            "Sec-WebSocket-Version: 13\r\n"
            "\r\n"
        )
        assert self.transport is not None
        self.transport.write(request.encode())

    def _handshake_reply(self, data: bytes) -> bytes | None:
        """Consume the 101 response; return the bytes after it, if complete."""
        self._head += data
        end = self._head.find(b"\r\n\r\n")
        if end < 0:
            return None
        head, rest = bytes(self._head[:end]), bytes(self._head[end + 4 :])
        self._head.clear()

        lines = head.split(b"\r\n")
        if not lines[0].startswith(b"HTTP/1.1 101"):
            raise ProtocolError(
                f"handshake refused: {lines[0].decode(errors='replace')}"
            )
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            headers[name.strip().lower()] = value.strip()
        expected = base64.b64encode(hashlib.sha1(self._key + GUID).digest())
        if headers.get(b"sec-websocket-accept") != expected:
            raise ProtocolError("wrong Sec-WebSocket-Accept")

        self.opened.set_result(None)
        return rest

    # Receiving.

    def data_received(self, data: bytes) -> None:
        try:
            if not self.opened.done():
                rest = self._handshake_reply(data)
                if not rest:
                    return
                data = rest
            self._frames(data)
        except ProtocolError as exc:
            self._fail(str(exc))

    def _frames(self, data: bytes) -> None:
        buffer = self._buffer
        buffer += data
        size = len(buffer)
        pos = 0
        counted = 0
        tally = self.tally
        stamping = tally is not None and tally.stamp_floor is not None
        received_ns = time.monotonic_ns() if stamping else 0

        while size - pos >= 2:
            first, second = buffer[pos], buffer[pos + 1]
            if second & 0x80 or not first & 0x80:
                raise ProtocolError("masked or fragmented frame from the server")
            length = second & 0x7F
            start = pos + 2
            if length == 126:
                if size - pos < 4:
                    break
                length = (buffer[pos + 2] << 8) | buffer[pos + 3]
                start = pos + 4
            elif length == 127:
                if size - pos < 10:
                    break
                length = int.from_bytes(buffer[pos + 2 : pos + 10], "big")
                start = pos + 10
            end = start + length
            if end > size:
                break
            pos = end

            opcode = first & 0x0F
            if opcode != OP_TEXT:
                self._control(opcode, bytes(buffer[start:end]))
            elif tally is not None and buffer.startswith(MESSAGE_PREFIX, start):
                counted += 1
                if stamping:
                    assert tally is not None
                    tally.record_stamp(buffer, start, end, received_ns)
            elif buffer.startswith(REPLY_PREFIXES, start):
                self._reply(buffer[start:end])
            elif tally is not None:
                tally.other_frames += 1
                tally.other_bytes += length

        if pos == size:
            buffer.clear()
        elif pos:
            del buffer[:pos]
        if counted:
            assert tally is not None
            tally.deliveries += counted
            tally.counted()

    def _control(self, opcode: int, payload: bytes) -> None:
        if opcode == OP_PING:
            self._write(OP_PONG, payload)
        elif opcode == OP_CLOSE:
            code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else None
            self._finish(code, payload[2:].decode(errors="replace"))
            if self.transport is not None:
                self.transport.close()
        elif opcode != OP_PONG:
            raise ProtocolError(f"unexpected opcode {opcode}")

    def _reply(self, payload: bytearray) -> None:
        body = _decode(payload)
        self.replies += 1
        if body.get("type") == "error":
            self.errors.append(body)
        future = self._pending.pop(body.get("id"), None)
        if future is not None and not future.done():
            future.set_result(body)

    # Sending.

    def send(self, body: dict[str, Any]) -> None:
        """Send one JSON frame without waiting for anything."""
        self._write(OP_TEXT, _encode(body))

    def request(self, body: dict[str, Any]) -> asyncio.Future[dict[str, Any]]:
        """Send ``body`` with a fresh ``id``; the future gets the reply."""
        self._next_id += 1
        future = asyncio.get_running_loop().create_future()
        self._pending[self._next_id] = future
        self.send({**body, "id": self._next_id})
        return future

    async def ok(self, body: dict[str, Any]) -> dict[str, Any]:
        """Send a request and return its reply, which must be ``ok``."""
        reply = await asyncio.wait_for(self.request(body), REPLY_TIMEOUT)
        if reply.get("type") != "ok":
            raise RuntimeError(f"{body.get('type')} refused: {reply}")
        return reply

    def _write(self, opcode: int, payload: bytes) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        transport.write(_masked_frame(opcode, payload))

    def close(self) -> None:
        """Start the closing handshake (1000, normal) and drop the socket."""
        self._write(OP_CLOSE, (1000).to_bytes(2, "big"))
        if self.transport is not None:
            self.transport.close()

    # Endings.

    def connection_lost(self, exc: Exception | None) -> None:
        self._finish(None, str(exc) if exc else "connection lost")
        if not self.opened.done():
            self.opened.set_exception(ConnectionError("closed during handshake"))

    def _fail(self, reason: str) -> None:
        self._finish(None, reason)
        if self.transport is not None:
            self.transport.abort()

    def _finish(self, code: int | None, reason: str) -> None:
        if not self.closed.done():
            self.closed.set_result((code, reason))
        for future in self._pending.values():
            if not future.done():
                future.set_exception(ConnectionError(f"closed: {code} {reason}"))
        self._pending.clear()


def _masked_frame(opcode: int, payload: bytes) -> bytes:
    """A final client frame; RFC 6455 (section 5.3) requires the mask."""
    length = len(payload)
    first = 0x80 | opcode
    if length < 126:
        header = struct.pack("!BB", first, 0x80 | length)
    elif length < 1 << 16:
        header = struct.pack("!BBH", first, 0x80 | 126, length)
    else:
        header = struct.pack("!BBQ", first, 0x80 | 127, length)

    key = os.urandom(4)
    stream = (key * (length // 4 + 1))[:length]
    masked = int.from_bytes(payload, "little") ^ int.from_bytes(stream, "little")
    return header + key + masked.to_bytes(length, "little")


async def connect(
    host: str,
    port: int,
    tally: Tally | None = None,
    *,
    path: str = "/ws",
) -> Connection:
    """Open a WebSocket connection and finish its handshake."""
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(REPLY_TIMEOUT):
        _, connection = await loop.create_connection(
            lambda: Connection(tally), host, port
        )
        connection.handshake(host, port, path)
        await connection.opened
    return connection
