"""The servers under test: started as pinned processes and watched from outside.

Each server runs in its own process bound to one core (the load generator
takes the other), and is measured only through what the kernel and the
network show: VmRSS from /proc/PID/status for memory, utime + stime from
/proc/PID/stat (all threads) for CPU, and, for SerenChat, /metrics.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import NamedTuple

import aiohttp
import jwt

ROOT = Path(__file__).resolve().parent.parent
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServerProcess:
    """One server process pinned to ``core``, logging into its data dir."""

    def __init__(
        self,
        command: list[str],
        data_dir: Path,
        port: int,
        core: int,
        source: Path | None = None,
    ):
        self.command = command
        self.data_dir = data_dir
        self.port = port
        self.core = core
        # Another SerenChat source tree (its src/ directory) to run instead
        # of the installed one, e.g. an exported revision.
        self.source = source
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, timeout: float = 60.0) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        core = self.core
        log = (self.data_dir / "server.log").open("ab")
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        if self.source is not None:
            env["PYTHONPATH"] = str(self.source)
        with log:
            # Pinned before exec, so every thread the server starts later
            # (aiosqlite, to_thread) inherits the same single core.
            self.proc = subprocess.Popen(
                self.command,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=ROOT,
                preexec_fn=lambda: os.sched_setaffinity(0, {core}),
            )

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited early; see {self.data_dir}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), 0.2):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"server did not start; see {self.data_dir}")

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def rss_kib(self) -> int:
        """Resident set size now, in KiB (VmRSS)."""
        status = Path(f"/proc/{self.pid}/status").read_text()
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise RuntimeError("no VmRSS line")

    def cpu_seconds(self) -> float:
        """CPU time used so far by all threads, user plus system."""
        stat = Path(f"/proc/{self.pid}/stat").read_text()
        # Fields after the parenthesised command; utime and stime are the
        # 14th and 15th fields of the line (proc(5)).
        fields = stat.rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


class CoreTimes(NamedTuple):
    """Seconds core ``n`` spent busy (any process) and stolen by the host."""

    busy: float
    steal: float


def core_times(core: int) -> CoreTimes:
    """Cumulative busy and steal time of one core, from /proc/stat."""
    prefix = f"cpu{core} "
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith(prefix):
            ticks = [int(v) for v in line.split()[1:]]
            user, nice, system, _idle, _iowait, irq, softirq, steal = ticks[:8]
            busy = user + nice + system + irq + softirq
            return CoreTimes(busy / CLOCK_TICKS, steal / CLOCK_TICKS)
    raise RuntimeError(f"no {prefix.strip()} in /proc/stat")


async def wait_quiet(cores: list[int], *, busy: float, limit: float) -> float:
    """Wait up to ``limit`` s for a second in which no core is over ``busy``.

    Other work on the machine (other people's tests) would take CPU from
    the server or the load generator; this returns the busiest core's load
    in the last second checked, so a run that never got quiet can say so.
    """
    deadline = time.monotonic() + limit
    while True:
        before = [core_times(c) for c in cores]
        await asyncio.sleep(1.0)
        after = [core_times(c) for c in cores]
        load = max(
            (a.busy - b.busy) + (a.steal - b.steal)
            for a, b in zip(after, before, strict=True)
        )
        if load <= busy or time.monotonic() > deadline:
            return load


def own_cpu_seconds() -> float:
    """CPU time used so far by this process (the load generator)."""
    times = os.times()
    return times.user + times.system


class Stack:
    """A server under test, as the benchmark drives it."""

    name = ""
    durable = False

    def __init__(
        self, data_dir: Path, core: int, extra: list[str], source: Path | None
    ) -> None:
        self.port = free_port()
        command = self.command(data_dir) + extra
        self.server = ServerProcess(command, data_dir, self.port, core, source)

    def command(self, data_dir: Path) -> list[str]:
        raise NotImplementedError

    async def prepare(self, http: aiohttp.ClientSession, rooms: list[str]) -> str:
        """Create ``rooms``; return the sender's token."""
        raise NotImplementedError

    def token(self, username: str) -> str:
        """A token for a load-generator user."""
        raise NotImplementedError

    async def metrics(self, http: aiohttp.ClientSession) -> dict[str, float]:
        return {}


class SerenChat(Stack):
    """``serenchat serve`` on SQLite, rate limit off, as the brief runs it."""

    name = "SerenChat"
    durable = True

    def __init__(
        self, data_dir: Path, core: int, extra: list[str], source: Path | None
    ) -> None:
        super().__init__(data_dir, core, extra, source)
        self._secret = ""

    def command(self, data_dir: Path) -> list[str]:
        # python -m serenchat is what the serenchat script runs; unlike the
        # script it honours PYTHONPATH, which --serenchat-src relies on.
        return [
            sys.executable, "-m", "serenchat", "serve",
            "--port", str(self.port),
            "--data-dir", str(data_dir),
            "--send-rate", "0",
        ]  # fmt: skip

    async def prepare(self, http: aiohttp.ClientSession, rooms: list[str]) -> str:
        # The sender is a registered user, through the public API.
        body = {"username": "sender", "password": secrets.token_urlsafe(12)}
        async with http.post(
            self.server.url + "/api/v1/auth/register", json=body
        ) as response:
            response.raise_for_status()
            token = str((await response.json())["token"])

        headers = {"Authorization": f"Bearer {token}"}
        for room in rooms:
            async with http.post(
                self.server.url + "/api/v1/rooms",
                json={"id": room, "private": False},
                headers=headers,
            ) as response:
                response.raise_for_status()

        # Subscribers sign in with tokens minted with the server's secret,
        # the documented path for an existing site's users (serenchat.auth.
        # tokens): the server provisions each user on its first hello.
        # Registering them instead would cost one argon2id hash each
        # (about 150 ms of the server's core), minutes per run.
        self._secret = (self.server.data_dir / "jwt-secret").read_text().strip()
        return token

    def token(self, username: str) -> str:
        now = int(time.time())
        claims = {"sub": username, "iat": now, "exp": now + 3600}
        return jwt.encode(claims, self._secret, algorithm="HS256")

    async def metrics(self, http: aiohttp.ClientSession) -> dict[str, float]:
        """The numeric samples of /metrics, by metric name."""
        async with http.get(self.server.url + "/metrics") as response:
            response.raise_for_status()
            text = await response.text()
        values = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                values[name] = float(value)
        return values


class Baseline(Stack):
    """bench/baseline_aiohttp.py: aiohttp and a loop of send_str, nothing else."""

    name = "bare aiohttp (baseline)"

    def command(self, data_dir: Path) -> list[str]:
        return [
            sys.executable, "-m", "bench.baseline_aiohttp",
            "--port", str(self.port),
        ]  # fmt: skip

    async def prepare(self, http: aiohttp.ClientSession, rooms: list[str]) -> str:
        return "unused"

    def token(self, username: str) -> str:
        return "unused"


async def wait_idle(server: ServerProcess, *, settle: float, limit: float) -> None:
    """Sleep until the server has used no CPU for ``settle`` seconds."""
    deadline = time.monotonic() + limit
    last = server.cpu_seconds()
    while time.monotonic() < deadline:
        await asyncio.sleep(settle)
        now = server.cpu_seconds()
        if now - last < 0.01:
            return
        last = now
