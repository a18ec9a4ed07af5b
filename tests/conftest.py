"""Shared fixtures: real server processes on free ports, real clients.

``server`` starts ``python -m serenchat serve`` in a subprocess with its own
data directory and waits until it answers; tests talk to it over real
sockets with :class:`Client` (REST) and :class:`Ws` (WebSocket).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """A ``serenchat serve`` process; restartable on the same data."""

    def __init__(self, data_dir: Path, *args: str, env: dict[str, str] | None = None):
        self.data_dir = data_dir
        self.port = free_port()
        self.args = list(args)
        self.env = env or {}
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = data_dir / "server.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    def start(self, timeout: float = 30.0) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        command = [
            sys.executable, "-m", "serenchat", "serve",
            "--port", str(self.port),
            "--data-dir", str(self.data_dir),
            "--log-level", "info",
            *self.args,
        ]  # fmt: skip
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **self.env}
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited early:\n{self.log.read_text()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), 0.2):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"server did not start:\n{self.log.read_text()}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs, as in a crash."""
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()
        self.proc = None


@pytest.fixture
def server_factory(tmp_path: Path) -> Iterator[Any]:
    started: list[Server] = []
    counter = itertools.count()

    def make(*args: str, data_dir: Path | None = None, **kw: Any) -> Server:
        server = Server(data_dir or tmp_path / f"data{next(counter)}", *args, **kw)
        server.start()
        started.append(server)
        return server

    yield make
    for server in started:
        server.stop()


@pytest.fixture
def server(server_factory: Any) -> Server:
    """A server with rate limits off, on a fresh SQLite data directory."""
    return server_factory("--send-rate", "0")


class ApiError(Exception):
    def __init__(self, status: int, body: Any):
        super().__init__(f"{status}: {body}")
        self.status = status
        self.body = body

    @property
    def code(self) -> str:
        return str(self.body["error"]["code"])


class Client:
    """A REST client bound to one user (or to nobody)."""

    def __init__(
        self, http: aiohttp.ClientSession, base: str, token: str | None = None
    ):
        self.http = http
        self.base = base
        self.token = token
        self.username = ""

    async def call(
        self, method: str, path: str, body: Any = None, **params: Any
    ) -> Any:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        query = {k: str(v) for k, v in params.items() if v is not None}
        async with self.http.request(
            method,
            self.base + "/api/v1" + path,
            json=body,
            headers=headers,
            params=query,
        ) as response:
            data = await response.json() if response.status != 204 else None
            if response.status >= 400:
                raise ApiError(response.status, data)
            return data


class Ws:
    """A WebSocket client speaking the JSON protocol, with request ids."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse):
        self.ws = ws
        self.ids = itertools.count(1)
        self.events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.replies: dict[Any, asyncio.Future[dict[str, Any]]] = {}
        self.closed: asyncio.Future[int | None] = (
            asyncio.get_running_loop().create_future()
        )
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for msg in self.ws:
            if msg.type is not aiohttp.WSMsgType.TEXT:
                continue
            frame = msg.json()
            future = self.replies.pop(frame.get("id"), None)
            if future is not None and frame["type"] in ("ok", "error"):
                future.set_result(frame)
            else:
                await self.events.put(frame)
        # Requests still waiting will get no reply: fail them now rather
        # than let each run into its timeout.
        for future in self.replies.values():
            if not future.done():
                future.set_exception(ConnectionResetError("websocket closed"))
        self.replies.clear()
        if not self.closed.done():
            self.closed.set_result(self.ws.close_code)

    async def request(
        self, frame: dict[str, Any], timeout: float = 10
    ) -> dict[str, Any]:
        """Send a request with a fresh id and return its reply frame."""
        rid = next(self.ids)
        future = asyncio.get_running_loop().create_future()
        self.replies[rid] = future
        await self.ws.send_json({**frame, "id": rid})
        return await asyncio.wait_for(future, timeout)

    async def ok(self, frame: dict[str, Any]) -> dict[str, Any]:
        reply = await self.request(frame)
        assert reply["type"] == "ok", reply
        return reply

    async def event(self, timeout: float = 10) -> dict[str, Any]:
        return await asyncio.wait_for(self.events.get(), timeout)

    async def messages(self, count: int, timeout: float = 10) -> list[dict[str, Any]]:
        """The next ``count`` message events (other events are skipped)."""
        found: list[dict[str, Any]] = []
        async with asyncio.timeout(timeout):
            while len(found) < count:
                frame = await self.events.get()
                if frame["type"] == "message":
                    found.append(frame["message"])
        return found

    async def next(
        self, kind: str, timeout: float = 10, **match: Any
    ) -> dict[str, Any]:
        """The next event of type ``kind`` whose fields equal ``match``.

        Events before it are dropped.
        """
        async with asyncio.timeout(timeout):
            while True:
                frame = await self.events.get()
                if frame["type"] == kind and all(
                    frame.get(k) == v for k, v in match.items()
                ):
                    return frame

    async def collect(self, seconds: float) -> list[dict[str, Any]]:
        """Every event that arrives within ``seconds``."""
        await asyncio.sleep(seconds)
        found = []
        while not self.events.empty():
            found.append(self.events.get_nowait())
        return found

    def clear(self) -> None:
        while not self.events.empty():
            self.events.get_nowait()

    async def close(self) -> None:
        await self.ws.close()
        self.reader.cancel()


class Harness:
    """Opens users and WebSockets against one server; closes them all."""

    def __init__(self, server: Server, http: aiohttp.ClientSession):
        self.server = server
        self.http = http
        self.sockets: list[Ws] = []
        self.names = itertools.count()

    def anonymous(self) -> Client:
        return Client(self.http, self.server.url)

    async def user(
        self, name: str | None = None, password: str = "password-1"
    ) -> Client:
        username = name or f"user{next(self.names)}"
        data = await self.anonymous().call(
            "POST", "/auth/register", {"username": username, "password": password}
        )
        client = Client(self.http, self.server.url, data["token"])
        client.username = data["user"]["username"]
        return client

    async def raw_ws(self) -> Ws:
        ws = Ws(await self.http.ws_connect(self.server.ws_url))
        self.sockets.append(ws)
        return ws

    async def ws(self, client: Client) -> Ws:
        ws = await self.raw_ws()
        await ws.ok({"type": "hello", "token": client.token})
        return ws

    async def close(self) -> None:
        for ws in self.sockets:
            await ws.close()


@contextlib.asynccontextmanager
async def harness_on(server: Server) -> AsyncIterator[Harness]:
    """A Harness with its own HTTP session; its sockets close at the end."""
    async with aiohttp.ClientSession() as http:
        harness = Harness(server, http)
        try:
            yield harness
        finally:
            await harness.close()


@pytest.fixture
async def harness(server: Server) -> AsyncIterator[Harness]:
    async with harness_on(server) as harness:
        yield harness


# Database backends. SQLite always runs; PostgreSQL and MariaDB run when their
# servers answer on loopback, and are skipped with the reason otherwise. CI
# sets SERENCHAT_REQUIRE_SERVICES=1, which turns such a skip into a failure.

BACKENDS = {
    "postgresql": os.environ.get(
        "SERENCHAT_TEST_POSTGRESQL", "postgresql://postgres@127.0.0.1:5432/test"
    ),
    "mysql": os.environ.get("SERENCHAT_TEST_MYSQL", "mysql://root@127.0.0.1:3306/test"),
}
REQUIRE_SERVICES = os.environ.get("SERENCHAT_REQUIRE_SERVICES") == "1"


def _unavailable(what: str, why: str) -> None:
    message = f"{what} not reachable ({why}); integration test skipped"
    if REQUIRE_SERVICES:
        pytest.fail(message + " but SERENCHAT_REQUIRE_SERVICES=1")
    pytest.skip(message)


async def _scratch_database(backend: str) -> tuple[str, Any]:
    """Create an empty database on a backend; return its URL and a dropper."""
    import sqlalchemy as sa

    from serenchat.store.engine import create_engine

    name = f"serenchat_t{os.getpid()}_{next(_scratch_ids)}"
    admin = create_engine(BACKENDS[backend], pool_size=1)
    try:
        async with admin.connect() as conn:
            conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
            await conn.execute(sa.text(f"CREATE DATABASE {name}"))
    except Exception as exc:
        await admin.dispose()
        _unavailable(backend, f"{type(exc).__name__}: {exc}".splitlines()[0])

    async def drop() -> None:
        async with admin.connect() as conn:
            conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
            if backend == "postgresql":
                await conn.execute(sa.text(f"DROP DATABASE {name} WITH (FORCE)"))
            else:
                await conn.execute(sa.text(f"DROP DATABASE {name}"))
        await admin.dispose()

    base = BACKENDS[backend].rsplit("/", 1)[0]
    return f"{base}/{name}", drop


_scratch_ids = itertools.count()


@pytest.fixture(params=["sqlite", "postgresql", "mysql"])
async def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    """An empty database on each backend, dropped after the test."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'store.db'}"
        return
    url, drop = await _scratch_database(request.param)
    yield url
    await drop()
