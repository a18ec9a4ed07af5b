"""The raw stack: a bare aiohttp WebSocket fan-out server, for comparison.

It speaks just enough of SerenChat's JSON protocol for the same load
generator to drive it (``hello``, ``join``, ``send``), and does the least a
chat server can: no authentication (any token is accepted), no database,
no membership checks, no per-room sequence kept anywhere but in memory.
A ``send`` is fanned out with a plain loop of ``await ws.send_str(...)``
over every joined socket, and then acknowledged, so the benchmark's
SerenChat row minus this row is the price of authorization, persistence
and sequencing.

Frames have the same shape and size as SerenChat's: the message object
takes its field list from ``serenchat.domain.models.Message`` (only the
list; nothing of SerenChat runs here), so both servers put the same bytes
on the wire per delivery. Like SerenChat it runs on uvloop.

Run: ``python -m bench.baseline_aiohttp --port 8765``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
from typing import Any

import uvloop
from aiohttp import WSMsgType, web
from msgspec import structs

from serenchat.domain.models import Message

log = logging.getLogger(__name__)

ROOMS = web.AppKey("rooms", dict)
MESSAGE_FIELDS = structs.fields(Message)


def _dumps(body: dict[str, Any]) -> str:
    return json.dumps(body, separators=(",", ":"))


class Room:
    """Subscribers of one room and its in-memory message counter."""

    def __init__(self) -> None:
        self.sockets: set[web.WebSocketResponse] = set()
        self.seq = 0


async def websocket(request: web.Request) -> web.WebSocketResponse:
    rooms: dict[str, Room] = request.app[ROOMS]
    ws = web.WebSocketResponse(compress=False)
    await ws.prepare(request)
    joined: list[Room] = []

    try:
        async for msg in ws:
            if msg.type is not WSMsgType.TEXT:
                continue
            frame = json.loads(msg.data)
            kind, rid = frame.get("type"), frame.get("id")

            if kind == "hello":
                user = {"id": 0, "username": "anyone", "created_at": ""}
                await ws.send_str(_dumps({"type": "ok", "id": rid, "user": user}))

            elif kind == "join":
                room = rooms.setdefault(frame["room"], Room())
                room.sockets.add(ws)
                joined.append(room)
                reply = {"type": "ok", "id": rid, "room": frame["room"]}
                await ws.send_str(_dumps({**reply, "last_seq": room.seq}))

            elif kind == "send":
                room = rooms.setdefault(frame["room"], Room())
                message = _message(frame, room)
                event = _dumps(
                    {"type": "message", "room": frame["room"], "message": message}
                )
                # The loop under test: one send_str per subscriber.
                for peer in list(room.sockets):
                    await peer.send_str(event)
                await ws.send_str(_dumps({"type": "ok", "id": rid, "message": message}))
    finally:
        for room in joined:
            room.sockets.discard(ws)
    return ws


def _message(frame: dict[str, Any], room: Room) -> dict[str, Any]:
    """SerenChat's message fields, in its order, filled without a database."""
    room.seq += 1
    now = dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")
    values = {
        "id": room.seq,
        "room": frame["room"],
        "seq": room.seq,
        "sender": "sender",
        "text": frame["text"],
        "created_at": now.replace("+00:00", "Z"),
        "client_id": frame.get("client_id"),
    }
    # Fields SerenChat has and this server has no notion of (edits, for
    # one) get SerenChat's defaults.
    return {f.name: values.get(f.name, f.default) for f in MESSAGE_FIELDS}


def create_app() -> web.Application:
    app = web.Application()
    app[ROOMS] = {}
    app.router.add_get("/ws", websocket)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    args = parser.parse_args()

    logging.basicConfig(level=logging.WARNING)
    web.run_app(
        create_app(),
        host=args.host,
        port=args.port,
        access_log=None,
        print=None,
        loop=uvloop.new_event_loop(),
    )


if __name__ == "__main__":
    main()
