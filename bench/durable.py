"""Durable sends: many concurrent senders, each waiting for its own ack.

K connections (default 200) each send a message and send the next one only
after the ``ok`` for the previous one has arrived, which the server gives
after the message is committed (SQLite, synchronous=FULL). The room has no
subscribers, so the figure is the write path alone: gateway, service,
group-commit writer and the acknowledgement, without fan-out.

The average commit batch (messages per transaction) over the measured
window comes from SerenChat's own counters on /metrics:
``serenchat_messages_stored_total / serenchat_commit_batches_total``.
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass

import aiohttp

from bench.fanout import HOST, OPEN_CONCURRENCY, other_load, percentile
from bench.servers import Stack, core_times, own_cpu_seconds
from bench.wsclient import Connection, connect, stamped_text

STORED = "serenchat_messages_stored_total"
BATCHES = "serenchat_commit_batches_total"


@dataclass(frozen=True, slots=True)
class DurableResult:
    senders: int
    seconds: float
    sends_per_s: float
    average_batch: float
    ack_p50_ms: float
    ack_p99_ms: float
    server_cpu: float
    server_us_per_send: float
    interference: float


class _Senders:
    """Closed-loop senders and the counters they share."""

    def __init__(self, room: str, text_width: int) -> None:
        self.room = room
        self.text_width = text_width
        self.acks = 0
        self.measuring = False
        self.stopping = False
        self.round_trips: list[int] = []

    async def run(self, conn: Connection) -> None:
        while not self.stopping:
            text = stamped_text(self.text_width)
            started = time.perf_counter_ns()
            reply = await asyncio.wait_for(
                conn.request({"type": "send", "room": self.room, "text": text}), 30
            )
            if reply.get("type") != "ok":
                raise RuntimeError(f"send refused: {reply}")
            self.acks += 1
            if self.measuring:
                self.round_trips.append(time.perf_counter_ns() - started)


async def durable_sends(
    stack: Stack,
    http: aiohttp.ClientSession,
    room: str,
    *,
    senders: int,
    seconds: float,
    warmup: float,
    text_width: int,
) -> DurableResult:
    gate = asyncio.Semaphore(OPEN_CONCURRENCY)
    loadgen_core = next(iter(os.sched_getaffinity(0)))

    async def open_one(index: int) -> Connection:
        async with gate:
            conn = await connect(HOST, stack.port)
            await conn.ok({"type": "hello", "token": stack.token(f"writer{index}")})
            return conn

    opened = await asyncio.gather(
        *(open_one(i) for i in range(senders)), return_exceptions=True
    )
    conns = [c for c in opened if isinstance(c, Connection)]
    if len(conns) < senders:
        for conn in conns:
            conn.close()
        failure = next(c for c in opened if isinstance(c, BaseException))
        raise RuntimeError(f"{senders - len(conns)} senders failed") from failure
    group = _Senders(room, text_width)
    tasks = [asyncio.create_task(group.run(conn)) for conn in conns]
    try:
        # The warm-up also covers each sender's first post, which makes it
        # a member of the room in a transaction of its own.
        await asyncio.sleep(warmup)
        before = await stack.metrics(http)
        acks, started = group.acks, time.perf_counter()
        cpu, own = stack.server.cpu_seconds(), own_cpu_seconds()
        cores = core_times(stack.server.core), core_times(loadgen_core)
        group.measuring = True

        await asyncio.sleep(seconds)

        group.measuring = False
        acked = group.acks - acks
        elapsed = time.perf_counter() - started
        cpu = stack.server.cpu_seconds() - cpu
        own = own_cpu_seconds() - own
        others = max(
            other_load(cores[0], core_times(stack.server.core), cpu),
            other_load(cores[1], core_times(loadgen_core), own),
        )
        after = await stack.metrics(http)
    finally:
        group.stopping = True
        results = await asyncio.gather(*tasks, return_exceptions=True)
        for conn in conns:
            conn.close()
    failures = [r for r in results if isinstance(r, BaseException)]
    if failures:
        raise RuntimeError(f"{len(failures)} senders failed: {failures[0]!r}")

    batches = after[BATCHES] - before[BATCHES]
    ordered = sorted(group.round_trips)
    return DurableResult(
        senders=senders,
        seconds=elapsed,
        sends_per_s=acked / elapsed,
        average_batch=(after[STORED] - before[STORED]) / batches if batches else 0.0,
        ack_p50_ms=percentile(ordered, 0.50) / 1e6,
        ack_p99_ms=percentile(ordered, 0.99) / 1e6,
        server_cpu=cpu / elapsed,
        server_us_per_send=cpu / acked * 1e6 if acked else 0.0,
        interference=others / elapsed,
    )
