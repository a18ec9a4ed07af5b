"""``python -m bench``: every figure, SerenChat beside the raw aiohttp stack.

One command starts each server in turn on core 0, drives it from this
process on core 1, and prints one table: fan-out deliveries per second at
saturation, delivery latency at a fixed offered load, idle memory per
connection, and (SerenChat only) durable sends per second with the average
commit batch. Figures are medians over ``--runs`` runs, leaving out runs
that other processes disturbed; runs alternate the order of the servers
so that drift on the machine hits both alike.

See bench/README.md for what each figure means and how it is measured.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import platform
import resource
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import uvloop

from bench.durable import DurableResult, durable_sends
from bench.fanout import (
    HOST,
    LatencyResult,
    SaturationResult,
    Subscribers,
    offered_load,
    saturate,
)
from bench.servers import Baseline, SerenChat, Stack, wait_idle, wait_quiet
from bench.wsclient import Tally, connect, stamped_text

SERVER_CORE = 0
LOADGEN_CORE = 1
FANOUT_ROOM = "bench"
DURABLE_ROOM = "bench-durable"

# Seconds to wait for other work on the machine to pause before a phase.
QUIET_WAIT = 10.0
# Other load above this during a measured window marks the run as noisy.
NOISY = 0.10

STACKS: dict[str, type[Stack]] = {"serenchat": SerenChat, "baseline": Baseline}

# Not measured by this benchmark: copied from /work/shared/DESIGN.md ("The
# WebSocket stack, measured"), 1,000 subscribers, one sender, 2 cores.
REFERENCES = [
    ("Node.js Socket.IO 4.8 [DESIGN.md, not measured here]", 72_603, 36.6, 14.3),
    ("aiohttp 3.14 send_str loop [DESIGN.md, not measured here]", 86_821, 31.2, 13.6),
]


@dataclasses.dataclass(frozen=True, slots=True)
class StackRun:
    stack: str
    run: int
    clients: int
    rss_before_kib: int
    rss_half_kib: int
    rss_after_kib: int
    idle_kib_per_conn: float
    marginal_kib_per_conn: float
    latency: LatencyResult
    saturation: SaturationResult
    # Saturation with one message in flight: no two messages ever share a
    # commit or a write, so this is the cost of fanning out each one alone.
    single: SaturationResult
    durable: DurableResult | None
    load_before: float
    other_frames: int
    other_bytes: int
    connect_seconds: float
    # The same users connecting and joining again, all at once: what a
    # server restart looks like to it (no new accounts, no new members).
    reconnect_seconds: float

    @property
    def interference(self) -> float:
        """The most CPU other processes took during any measured window."""
        windows = [self.latency.window.interference]
        windows.append(self.saturation.window.interference)
        windows.append(self.single.window.interference)
        if self.durable is not None:
            windows.append(self.durable.interference)
        return max(windows)

    @property
    def noisy(self) -> bool:
        return self.interference > NOISY


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "--clients", type=int, help="subscribers (default 1000; 300 with --quick)"
    )
    parser.add_argument(
        "--senders", type=int, default=200, help="concurrent durable senders"
    )
    parser.add_argument("--runs", type=int, default=3, help="runs per server")
    parser.add_argument(
        "--retries",
        type=int,
        help="repeat a run that other processes disturbed up to this many"
        " times (default 1; 0 with --quick)",
    )
    parser.add_argument(
        "--seconds", type=float, default=5.0, help="measured seconds per phase"
    )
    parser.add_argument(
        "--warmup", type=float, default=1.0, help="unmeasured seconds per phase"
    )
    parser.add_argument(
        "--rate",
        type=float,
        default=20_000.0,
        help="offered deliveries per second for the latency figure",
    )
    parser.add_argument(
        "--window",
        type=int,
        default=16,
        help="messages' worth of deliveries in flight at saturation",
    )
    parser.add_argument(
        "--text", type=int, default=64, help="characters of message text"
    )
    parser.add_argument(
        "--receivers",
        choices=["lean", "aiohttp"],
        default="lean",
        help="subscriber client: the lean RFC 6455 client or aiohttp's",
    )
    parser.add_argument(
        "--stacks",
        default="serenchat,baseline",
        help="comma-separated servers to run: serenchat, baseline",
    )
    parser.add_argument(
        "--serenchat-args",
        default="",
        help="extra flags for serenchat serve, e.g. '--delivery-interval 60'",
    )
    parser.add_argument(
        "--serenchat-src",
        type=Path,
        help="run SerenChat from this src/ directory (e.g. an exported"
        " revision) instead of the working tree",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="one short run with 300 subscribers (about 30 s)",
    )
    parser.add_argument("--json", type=Path, help="also write every result here")
    parser.add_argument(
        "--keep", action="store_true", help="keep data directories and logs"
    )
    args = parser.parse_args(argv)
    if args.quick:
        # Joining costs SerenChat time in proportion to the room's size
        # (see docs/benchmarks.md), so a quick run keeps the room small.
        args.runs, args.seconds, args.warmup = 1, 2.0, 0.5
        args.clients = args.clients or 300
        args.retries = args.retries or 0
    args.clients = args.clients or 1000
    args.retries = 1 if args.retries is None else args.retries
    args.stacks = [name.strip() for name in args.stacks.split(",") if name.strip()]
    unknown = set(args.stacks) - set(STACKS)
    if unknown:
        parser.error(f"unknown stacks: {', '.join(sorted(unknown))}")
    return args


def prepare_process(connections: int) -> None:
    """Pin this process to the load generator's core; allow enough fds."""
    if len(os.sched_getaffinity(0)) < 2 or (os.cpu_count() or 1) < 2:
        raise SystemExit("the benchmark needs two cores: server and load generator")
    os.sched_setaffinity(0, {LOADGEN_CORE})

    # Servers inherit this limit too, and hold one fd per connection.
    needed = connections + 1024
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed:
        if hard != resource.RLIM_INFINITY and hard < needed:
            raise SystemExit(f"RLIMIT_NOFILE hard limit {hard} < {needed} needed")
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))


def revision(source: Path | None) -> str:
    """The commit under test, and whether src/ differs from it."""
    if source is not None:
        return str(source)
    root = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        changed = subprocess.run(
            ["git", "status", "--porcelain", "--", "src"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split("\n")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    dirty = sum(1 for line in changed if line.strip())
    return head + (f" with {dirty} changed files in src/" if dirty else "")


def machine(source: Path | None) -> dict[str, str]:
    model = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    return {
        "cpus": str(os.cpu_count()),
        "cpu": model,
        "python": platform.python_version(),
        "kernel": platform.release(),
        "revision": revision(source),
    }


async def _quiet(limit: float = QUIET_WAIT) -> float:
    """Let a burst of other work on the machine pass before a phase."""
    return await wait_quiet([SERVER_CORE, LOADGEN_CORE], busy=0.10, limit=limit)


async def run_stack(
    kind: type[Stack], args: argparse.Namespace, workdir: Path, run: int
) -> StackRun:
    load = await _quiet(limit=2 * QUIET_WAIT)
    stack = kind(
        workdir / f"{kind.__name__.lower()}-{run}",
        SERVER_CORE,
        shlex.split(args.serenchat_args) if kind is SerenChat else [],
        args.serenchat_src,
    )
    stack.server.start()
    try:
        async with aiohttp.ClientSession() as http:
            return await _measure(stack, http, args, run, load)
    finally:
        stack.server.stop()


async def _measure(
    stack: Stack,
    http: aiohttp.ClientSession,
    args: argparse.Namespace,
    run: int,
    load: float,
) -> StackRun:
    server = stack.server
    token = await stack.prepare(http, [FANOUT_ROOM, DURABLE_ROOM])
    sender = await connect(HOST, stack.port)
    await sender.ok({"type": "hello", "token": token})
    # One committed message warms the send path before memory is read.
    text = stamped_text(args.text)
    await sender.ok({"type": "send", "room": FANOUT_ROOM, "text": text})
    await wait_idle(server, settle=0.5, limit=10)
    rss_before = server.rss_kib()

    # Half, then the rest: the second half's growth leaves out one-time
    # costs the first burst of logins triggers (database pool connections
    # and their threads, allocator arenas).
    subscribers = Subscribers(Tally())
    opening = time.perf_counter()
    half = args.clients // 2
    await subscribers.open(stack, half, FANOUT_ROOM, args.receivers)
    await wait_idle(server, settle=0.5, limit=20)
    rss_half = server.rss_kib()
    await subscribers.open(stack, args.clients - half, FANOUT_ROOM, args.receivers)
    await wait_idle(server, settle=0.5, limit=20)
    rss_after = server.rss_kib()
    opened = time.perf_counter() - opening

    await _quiet()
    latency = await offered_load(
        stack,
        sender,
        subscribers,
        FANOUT_ROOM,
        deliveries_per_s=args.rate,
        seconds=args.seconds,
        warmup=args.warmup,
        text_width=args.text,
    )
    saturated = []
    for window in (args.window, 1):
        await _quiet()
        saturated.append(
            await saturate(
                stack,
                sender,
                subscribers,
                FANOUT_ROOM,
                seconds=args.seconds,
                warmup=args.warmup,
                window=window,
                text_width=args.text,
            )
        )
    saturation, single = saturated
    await subscribers.close()
    sender.close()

    await wait_idle(server, settle=0.5, limit=20)
    again = Subscribers(Tally())
    reopening = time.perf_counter()
    await again.open(stack, args.clients, FANOUT_ROOM, args.receivers)
    reopened = time.perf_counter() - reopening
    await again.close()

    durable = None
    if stack.durable:
        await _quiet()
        durable = await durable_sends(
            stack,
            http,
            DURABLE_ROOM,
            senders=args.senders,
            seconds=args.seconds,
            warmup=args.warmup,
            text_width=args.text,
        )
    return StackRun(
        stack=stack.name,
        run=run,
        clients=args.clients,
        rss_before_kib=rss_before,
        rss_half_kib=rss_half,
        rss_after_kib=rss_after,
        idle_kib_per_conn=(rss_after - rss_before) / args.clients,
        marginal_kib_per_conn=(rss_after - rss_half) / (args.clients - half),
        latency=latency,
        saturation=saturation,
        single=single,
        durable=durable,
        load_before=load,
        other_frames=subscribers.tally.other_frames,
        other_bytes=subscribers.tally.other_bytes,
        connect_seconds=opened,
        reconnect_seconds=reopened,
    )


def describe(result: StackRun) -> str:
    lat, sat, one = result.latency, result.saturation, result.single
    lines = [
        f"run {result.run} {result.stack}:",
        f"  idle: {result.rss_before_kib:,} -> {result.rss_after_kib:,} KiB RSS"
        f" = {result.idle_kib_per_conn:.1f} KiB/conn"
        f" ({result.marginal_kib_per_conn:.1f} over the second half);"
        f" connecting and joining took {result.connect_seconds:.1f} s,"
        f" reconnecting all at once {result.reconnect_seconds:.1f} s",
        f"  offered {lat.offered_per_s:,.0f}/s: got"
        f" {lat.window.deliveries_per_s:,.0f}/s, p50 {lat.p50_ms:.2f} ms,"
        f" p99 {lat.p99_ms:.2f} ms, max {lat.max_ms:.1f} ms"
        f" ({lat.samples:,} samples); server cpu {lat.window.server_cpu:.0%}",
        f"  saturation: {sat.window.deliveries_per_s:,.0f} deliveries/s"
        f" ({sat.messages:,} messages); server cpu {sat.window.server_cpu:.0%}"
        f" ({sat.window.server_us_per_delivery:.2f} us/delivery),"
        f" load generator cpu {sat.window.loadgen_cpu:.0%}"
        f" ({sat.window.loadgen_us_per_delivery:.2f} us/delivery)",
        f"  one message in flight: {one.window.deliveries_per_s:,.0f}"
        f" deliveries/s ({one.messages:,} messages); server cpu"
        f" {one.window.server_cpu:.0%}"
        f" ({one.window.server_us_per_delivery:.2f} us/delivery)",
        f"  other events at subscribers (presence, receipts...): in all"
        f" {result.other_frames:,} frames, {result.other_bytes / 1e6:,.1f} MB;"
        f" {lat.window.other_frames_per_s:,.0f} frames/s"
        f" ({lat.window.other_bytes_per_s / 1e6:.1f} MB/s) during latency,"
        f" {sat.window.other_frames_per_s:,.0f} frames/s"
        f" ({sat.window.other_bytes_per_s / 1e6:.1f} MB/s) during saturation",
    ]
    lines.append(
        f"  other load: {result.load_before:.0%} before the run,"
        f" {lat.window.interference:.0%} during latency,"
        f" {sat.window.interference:.0%} during saturation,"
        f" {one.window.interference:.0%} with one in flight"
        + (
            f", {result.durable.interference:.0%} during durable"
            if result.durable
            else ""
        )
        + (" (NOISY: other processes took CPU)" if result.noisy else "")
    )
    lost = lat.missing + sat.missing + one.missing
    if lost or sat.gone or one.gone:
        gone = max(sat.gone, one.gone)
        lines.append(f"  LOST {lost:,} deliveries, {gone} subscribers closed")
    if result.durable is not None:
        dur = result.durable
        lines.append(
            f"  durable: {dur.sends_per_s:,.0f} sends/s from {dur.senders} senders,"
            f" average batch {dur.average_batch:.1f}, ack p50 {dur.ack_p50_ms:.1f}"
            f" ms p99 {dur.ack_p99_ms:.1f} ms; server cpu {dur.server_cpu:.0%}"
            f" ({dur.server_us_per_send:.0f} us/send)"
        )
    return "\n".join(lines)


def _median(runs: list[StackRun], pick: Callable[[StackRun], float | None]) -> str:
    values = [v for v in map(pick, runs) if v is not None]
    return "" if not values else _fmt(statistics.median(values))


def _fmt(value: float) -> str:
    if value >= 1000:
        return f"{value:,.0f}"
    if value >= 100:
        return f"{value:.0f}"
    return f"{value:.1f}" if value >= 10 else f"{value:.2f}"


def table(results: list[StackRun], args: argparse.Namespace) -> str:
    rate = f"{args.rate / 1000:g}k/s"
    header = [
        "stack",
        f"fan-out deliveries/s, {args.window} in flight",
        "server CPU µs/delivery",
        "fan-out deliveries/s, 1 in flight",
        "server CPU µs/delivery, 1 in flight",
        f"p50 ms at {rate}",
        f"p99 ms at {rate}",
        "idle KiB/conn",
        "idle KiB/conn, 2nd half",
        "durable sends/s",
        "server CPU µs/send",
        "avg commit batch",
        "server CPU at saturation",
        "load-gen CPU at saturation",
        f"connect and join {args.clients:,} (s)",
        f"reconnect {args.clients:,} at once (s)",
        "lost deliveries",
    ]
    rows = []
    for name in dict.fromkeys(r.stack for r in results):
        every = [r for r in results if r.stack == name]
        runs = [r for r in every if not r.noisy]
        if runs:
            label = f"median of {len(runs)} clean runs"
            if len(runs) < len(every):
                label += f", {len(every) - len(runs)} noisy left out"
        else:
            runs = every
            label = f"median of {len(runs)} runs, all NOISY"
        lost = sum(
            r.latency.missing + r.saturation.missing + r.single.missing for r in every
        )
        rows.append(
            [
                f"{name} (measured, {label})",
                _median(runs, lambda r: r.saturation.window.deliveries_per_s),
                _median(runs, lambda r: r.saturation.window.server_us_per_delivery),
                _median(runs, lambda r: r.single.window.deliveries_per_s),
                _median(runs, lambda r: r.single.window.server_us_per_delivery),
                _median(runs, lambda r: r.latency.p50_ms),
                _median(runs, lambda r: r.latency.p99_ms),
                _median(runs, lambda r: r.idle_kib_per_conn),
                _median(runs, lambda r: r.marginal_kib_per_conn),
                _median(runs, lambda r: r.durable and r.durable.sends_per_s),
                _median(runs, lambda r: r.durable and r.durable.server_us_per_send),
                _median(runs, lambda r: r.durable and r.durable.average_batch),
                _median(runs, lambda r: r.saturation.window.server_cpu * 100) + "%",
                _median(runs, lambda r: r.saturation.window.loadgen_cpu * 100) + "%",
                _median(runs, lambda r: r.connect_seconds),
                _median(runs, lambda r: r.reconnect_seconds),
                str(lost),
            ]
        )
    for name, fanout, p99, kib in REFERENCES:
        rows.append(
            [name, f"{fanout:,}", "", "", "", "", f"{p99}", f"{kib}"] + [""] * 9
        )

    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    lines += ["| " + " | ".join(cell or "-" for cell in row) + " |" for row in rows]
    return "\n".join(lines)


async def run_all(args: argparse.Namespace, workdir: Path) -> list[StackRun]:
    """Every run of every stack; a noisy run is repeated up to ``retries``."""
    results = []
    attempt = 0
    for run in range(1, args.runs + 1):
        order = args.stacks if run % 2 else list(reversed(args.stacks))
        for name in order:
            for retry in range(args.retries + 1):
                attempt += 1
                started = time.monotonic()
                result = await run_stack(STACKS[name], args, workdir, attempt)
                results.append(dataclasses.replace(result, run=run))
                print(describe(results[-1]), f"[{time.monotonic() - started:.0f} s]")
                sys.stdout.flush()
                if not result.noisy:
                    break
                if retry < args.retries:
                    print("  repeating this run: other processes took CPU")
    return results


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    prepare_process(args.clients + args.senders)
    info = machine(args.serenchat_src)
    print(
        f"machine: {info['cpus']} cpus, {info['cpu']}, Python {info['python']},"
        f" Linux {info['kernel']}; server on core {SERVER_CORE},"
        f" load generator on core {LOADGEN_CORE}; SerenChat at {info['revision']}"
    )
    print(
        f"clients {args.clients}, durable senders {args.senders}, runs {args.runs},"
        f" {args.seconds:g} s measured + {args.warmup:g} s warm-up per phase,"
        f" window {args.window}, text {args.text} chars, receivers {args.receivers}"
    )

    workdir = Path(tempfile.mkdtemp(prefix="serenchat-bench-"))
    started = time.monotonic()
    try:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            results = runner.run(run_all(args, workdir))
    finally:
        if args.keep:
            print(f"data directories kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)

    print()
    print(table(results, args))
    print(f"\ntotal {time.monotonic() - started:.0f} s")
    if args.json:
        payload: dict[str, Any] = {
            "machine": info,
            "args": {k: str(v) for k, v in vars(args).items()},
            "results": [dataclasses.asdict(r) for r in results],
        }
        args.json.write_text(json.dumps(payload, indent=2))


if __name__ == "__main__":
    main()
