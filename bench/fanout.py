"""Fan-out: N subscribers joined to one room, one sender.

Three figures come from the same N connections, in this order:

* idle memory: the server's VmRSS before the subscribers connect and after
  all N have said hello and joined, divided by N (KiB per connection);
* latency at a fixed offered load: the sender sends ``rate / N`` messages
  per second on a fixed schedule (open loop: a late reply never delays the
  next send), each text carrying a time.monotonic_ns() stamp; every
  delivery's latency is its receive time minus that stamp (p50, p99);
* deliveries per second at saturation: the sender keeps at most ``window``
  messages' worth of deliveries outstanding (sent times N, minus delivered)
  and sends again as soon as deliveries drain, so it goes exactly as fast
  as the server delivers, without burying slow sockets and tripping the
  server's slow-consumer limit.

Every delivery of every message is accounted for after each phase: a
phase that loses deliveries or connections says so in its result.
"""

from __future__ import annotations

import asyncio
import math
import os
import time
from dataclasses import dataclass
from typing import Any

import aiohttp

from bench.servers import CoreTimes, Stack, core_times, own_cpu_seconds
from bench.wsclient import MESSAGE_PREFIX, Connection, Tally, connect, stamped_text

HOST = "127.0.0.1"
OPEN_CONCURRENCY = 100
DRAIN_TIMEOUT = 20.0


class AiohttpSubscriber:
    """A subscriber on aiohttp's client, to compare load generators with."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse, tally: Tally) -> None:
        self.ws = ws
        self.tally = tally
        self.task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        prefix = MESSAGE_PREFIX.decode()
        async for msg in self.ws:
            if msg.type is not aiohttp.WSMsgType.TEXT:
                continue
            if msg.data.startswith(prefix):
                self.tally.observe(msg.data, time.monotonic_ns())
            else:
                self.tally.other_frames += 1
                self.tally.other_bytes += len(msg.data)

    @property
    def gone(self) -> bool:
        return self.task.done()

    async def close(self) -> None:
        await self.ws.close()
        await asyncio.gather(self.task, return_exceptions=True)


async def _aiohttp_request(
    ws: aiohttp.ClientWebSocketResponse, body: dict[str, Any]
) -> None:
    await ws.send_json({**body, "id": 1})
    async with asyncio.timeout(30):
        while True:
            reply = await ws.receive_json()
            if reply.get("type") in ("ok", "error"):
                break
    if reply["type"] != "ok":
        raise RuntimeError(f"{body['type']} refused: {reply}")


class Subscribers:
    """N joined connections counting into one tally."""

    def __init__(self, tally: Tally) -> None:
        self.tally = tally
        self.lean: list[Connection] = []
        self.via_aiohttp: list[AiohttpSubscriber] = []
        self.session: aiohttp.ClientSession | None = None

    @property
    def count(self) -> int:
        return len(self.lean) + len(self.via_aiohttp)

    def gone(self) -> int:
        """Connections that closed since they joined."""
        return sum(c.closed.done() for c in self.lean) + sum(
            s.gone for s in self.via_aiohttp
        )

    async def open(self, stack: Stack, count: int, room: str, receivers: str) -> None:
        """Connect, authenticate and join ``count`` more subscribers.

        Each subscriber is its own user (``sub0``, ``sub1``, ...); at most
        OPEN_CONCURRENCY handshakes are in progress at once.
        """
        if receivers == "aiohttp" and self.session is None:
            self.session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=0)
            )
        first = self.count
        gate = asyncio.Semaphore(OPEN_CONCURRENCY)

        async def one(index: int) -> None:
            token = stack.token(f"sub{index}")
            async with gate:
                if self.session is None:
                    conn = await connect(HOST, stack.port, self.tally)
                    self.lean.append(conn)
                    await conn.ok({"type": "hello", "token": token})
                    await conn.ok({"type": "join", "room": room})
                    return
                url = f"ws://{HOST}:{stack.port}/ws"
                ws = await self.session.ws_connect(url, max_msg_size=0)
                await _aiohttp_request(ws, {"type": "hello", "token": token})
                await _aiohttp_request(ws, {"type": "join", "room": room})
                self.via_aiohttp.append(AiohttpSubscriber(ws, self.tally))

        # Let every attempt finish before failing, so none is left behind.
        results = await asyncio.gather(
            *(one(i) for i in range(first, first + count)), return_exceptions=True
        )
        failures = [r for r in results if isinstance(r, BaseException)]
        if failures:
            raise RuntimeError(
                f"{len(failures)} of {count} subscribers failed to join"
            ) from failures[0]

    async def close(self) -> None:
        for conn in self.lean:
            conn.close()
        await asyncio.gather(*(s.close() for s in self.via_aiohttp))
        if self.session is not None:
            await self.session.close()
        await asyncio.sleep(0.5)


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Counters read at one instant of a phase."""

    at: float
    deliveries: int
    server_cpu: float
    loadgen_cpu: float
    server_core: CoreTimes
    loadgen_core: CoreTimes
    other_frames: int
    other_bytes: int

    @classmethod
    def take(cls, stack: Stack, tally: Tally) -> Snapshot:
        return cls(
            time.perf_counter(),
            tally.deliveries,
            stack.server.cpu_seconds(),
            own_cpu_seconds(),
            core_times(stack.server.core),
            core_times(next(iter(os.sched_getaffinity(0)))),
            tally.other_frames,
            tally.other_bytes,
        )


@dataclass(frozen=True, slots=True)
class Window:
    """Rates between two snapshots; CPU as a fraction of one core.

    ``interference`` is the CPU the two cores gave to anything but the
    server and the load generator (other processes, or the host stealing
    time), the larger of the two: a run with much of it is not clean.
    ``other_*`` count events the subscribers got besides messages and
    replies (presence, receipts), frames and payload bytes per second.

    ``server_us_per_delivery`` (server CPU time over deliveries) holds
    even when other processes take some of the server's core away, which
    deliveries per second does not.
    """

    seconds: float
    deliveries_per_s: float
    server_cpu: float
    loadgen_cpu: float
    loadgen_us_per_delivery: float
    server_us_per_delivery: float
    interference: float
    other_frames_per_s: float
    other_bytes_per_s: float

    @classmethod
    def between(cls, first: Snapshot, last: Snapshot) -> Window:
        seconds = last.at - first.at
        delivered = last.deliveries - first.deliveries
        server = last.server_cpu - first.server_cpu
        loadgen = last.loadgen_cpu - first.loadgen_cpu
        others = max(
            other_load(first.server_core, last.server_core, server),
            other_load(first.loadgen_core, last.loadgen_core, loadgen),
        )
        return cls(
            seconds,
            delivered / seconds,
            server / seconds,
            loadgen / seconds,
            loadgen / delivered * 1e6 if delivered else 0.0,
            server / delivered * 1e6 if delivered else 0.0,
            others / seconds,
            (last.other_frames - first.other_frames) / seconds,
            (last.other_bytes - first.other_bytes) / seconds,
        )


def other_load(first: CoreTimes, last: CoreTimes, ours: float) -> float:
    """Seconds a core was busy or stolen, beyond what our process used."""
    busy = last.busy - first.busy + last.steal - first.steal
    return max(0.0, busy - ours)


@dataclass(frozen=True, slots=True)
class LatencyResult:
    offered_per_s: float
    window: Window
    samples: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    missing: int
    gone: int


@dataclass(frozen=True, slots=True)
class SaturationResult:
    window: Window
    messages: int
    in_flight: int
    missing: int
    gone: int


def percentile(ordered: list[int], fraction: float) -> int:
    """Nearest-rank percentile of an ascending list."""
    if not ordered:
        return 0
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


async def _drain(tally: Tally, target: int) -> int:
    """Wait for ``target`` deliveries; return how many never came."""
    try:
        async with asyncio.timeout(DRAIN_TIMEOUT):
            await tally.reach(target)
    except TimeoutError:
        pass
    return max(0, target - tally.deliveries)


def _check_sender(sender: Connection) -> None:
    if sender.errors:
        raise RuntimeError(f"the server refused sends: {sender.errors[:3]}")
    if sender.closed.done():
        raise RuntimeError(f"the sender was disconnected: {sender.closed.result()}")


async def offered_load(
    stack: Stack,
    sender: Connection,
    subscribers: Subscribers,
    room: str,
    *,
    deliveries_per_s: float,
    seconds: float,
    warmup: float,
    text_width: int,
) -> LatencyResult:
    """Send on a fixed schedule and measure each delivery's latency."""
    tally = subscribers.tally
    loop = asyncio.get_running_loop()
    rate = deliveries_per_s / subscribers.count
    interval = 1.0 / rate
    warm_count = round(warmup * rate)
    total = warm_count + round(seconds * rate)
    expected = tally.deliveries + total * subscribers.count

    tally.latencies = []
    tally.stamp_floor = time.monotonic_ns() + round(warmup * 1e9)
    begin = loop.time()
    first = None
    for index in range(total):
        delay = begin + index * interval - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        if index == warm_count:
            first = Snapshot.take(stack, tally)
        body = {"type": "send", "room": room, "text": stamped_text(text_width)}
        sender.send({**body, "id": index})

    # The last message's slot ends one interval after it was sent.
    await asyncio.sleep(max(0.0, begin + total * interval - loop.time()))
    assert first is not None
    window = Window.between(first, Snapshot.take(stack, tally))
    missing = await _drain(tally, expected)
    tally.stamp_floor = None
    _check_sender(sender)

    ordered = sorted(tally.latencies)
    return LatencyResult(
        offered_per_s=deliveries_per_s,
        window=window,
        samples=len(ordered),
        p50_ms=percentile(ordered, 0.50) / 1e6,
        p99_ms=percentile(ordered, 0.99) / 1e6,
        max_ms=(ordered[-1] if ordered else 0) / 1e6,
        missing=missing,
        gone=subscribers.gone(),
    )


async def saturate(
    stack: Stack,
    sender: Connection,
    subscribers: Subscribers,
    room: str,
    *,
    seconds: float,
    warmup: float,
    window: int,
    text_width: int,
) -> SaturationResult:
    """Send as fast as deliveries drain; measure deliveries per second."""
    tally = subscribers.tally
    fan = subscribers.count
    loop = asyncio.get_running_loop()
    base = tally.deliveries
    sent = 0
    begin = loop.time()
    warm_end, end = begin + warmup, begin + warmup + seconds
    first: Snapshot | None = None

    while True:
        now = loop.time()
        if first is None and now >= warm_end:
            first = Snapshot.take(stack, tally)
        if now >= end:
            break

        # Outstanding deliveries: everything sent, times N, not yet counted.
        if base + sent * fan - tally.deliveries >= window * fan:
            async with asyncio.timeout(DRAIN_TIMEOUT):
                await tally.reach(base + (sent - window + 1) * fan)
            continue

        body = {"type": "send", "room": room, "text": stamped_text(text_width)}
        sender.send({**body, "id": sent})
        sent += 1

    assert first is not None
    measured = Window.between(first, Snapshot.take(stack, tally))
    missing = await _drain(tally, base + sent * fan)
    _check_sender(sender)
    return SaturationResult(
        window=measured,
        messages=sent,
        in_flight=window,
        missing=missing,
        gone=subscribers.gone(),
    )
