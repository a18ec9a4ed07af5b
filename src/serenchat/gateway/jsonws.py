"""The JSON WebSocket protocol (``GET /ws``); see docs/protocol.md.

Each text frame holds one JSON object with a ``type``. The first frame must
be ``hello`` with a token; after it, requests are handled one at a time in
arrival order, and each request carrying an ``id`` gets exactly one reply,
``ok`` or ``error``, with that ``id``. Sends are pipelined: once a send is
checked and queued for the writer, the next frame is read while it commits,
so a busy connection's messages share transactions; its ``ok`` follows the
commit and may come after replies to later requests.

All frames to the client, replies and room events alike, go through one
bounded path (:meth:`JsonConnection.deliver`): bytes are written straight
to the transport, and a client whose unsent backlog passes the limit is
closed with code 4408 instead of being waited for.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Coroutine
from typing import Any, Literal

import msgspec
from aiohttp import WSMsgType, web

from serenchat.broker import (
    ClientEvent,
    Delivered,
    MemberChanged,
    MemberRemoved,
    MessageChanged,
    MessagePosted,
    PresenceChanged,
    Receipt,
    Typing,
)
from serenchat.domain.errors import (
    BadRequest,
    ChatError,
    TooLarge,
    Unauthorized,
)
from serenchat.domain.models import Message, Status, User
from serenchat.gateway.frames import frame
from serenchat.service import ChatService
from serenchat.service.faults import fault

log = logging.getLogger(__name__)

# Close codes; 4xxx are SerenChat's own (RFC 6455, section 7.4.2).
CLOSE_UNAUTHORIZED = 4401  # no or bad hello; do not retry with the same token
CLOSE_SLOW = 4408  # the client fell behind; reconnect and rejoin with since
CLOSE_GOING_AWAY = 1001  # the server shuts down; reconnect elsewhere or later
CLOSE_TRY_LATER = 1013  # the server cannot serve now; reconnect with backoff

RequestId = int | str


# Client frames. Unknown fields are ignored so that clients may run ahead.


class Hello(msgspec.Struct, tag="hello"):
    token: str | None = None
    id: RequestId | None = None


class Join(msgspec.Struct, tag="join"):
    room: str
    since: int | None = None
    id: RequestId | None = None


class Leave(msgspec.Struct, tag="leave"):
    room: str
    id: RequestId | None = None


class Send(msgspec.Struct, tag="send"):
    room: str
    text: str
    client_id: str | None = None
    id: RequestId | None = None


class History(msgspec.Struct, tag="history"):
    room: str
    before: int | None = None
    after: int | None = None
    limit: int | None = None
    id: RequestId | None = None


class Ping(msgspec.Struct, tag="ping"):
    id: RequestId | None = None


class SetPresence(msgspec.Struct, tag="presence"):
    status: Literal["online", "away"]
    id: RequestId | None = None


class SetTyping(msgspec.Struct, tag="typing"):
    room: str
    active: bool
    id: RequestId | None = None


class Read(msgspec.Struct, tag="read"):
    room: str
    seq: int
    id: RequestId | None = None


class Edit(msgspec.Struct, tag="edit"):
    room: str
    message_id: int
    text: str
    id: RequestId | None = None


class Delete(msgspec.Struct, tag="delete"):
    room: str
    message_id: int
    id: RequestId | None = None


Request = (
    Hello
    | Join
    | Leave
    | Send
    | History
    | Ping
    | SetPresence
    | SetTyping
    | Read
    | Edit
    | Delete
)


class Envelope(msgspec.Struct):
    """What is read of a frame that failed to decode, to address the error."""

    id: Any = None


class ClientLimits(msgspec.Struct, frozen=True):
    """The settings a client should know, sent with the hello reply."""

    max_message_length: int
    max_frame: int
    history_max: int
    send_rate: float  # messages per second per user; 0: no limit
    send_burst: float
    typing_ttl: float
    max_pipeline: int


# Server frames, one per broker event.


class MessageFrame(msgspec.Struct, tag="message"):
    room: str
    message: Message


class UpdateFrame(msgspec.Struct, tag="update"):
    room: str
    seq: int
    kind: str
    message: Message


class RemovedFrame(msgspec.Struct, tag="removed"):
    room: str


class PresenceFrame(msgspec.Struct, tag="presence"):
    user: str
    status: Status
    last_seen: str | None


class TypingFrame(msgspec.Struct, tag="typing"):
    room: str
    user: str
    active: bool


class ReceiptFrame(msgspec.Struct, tag="receipt"):
    room: str
    user: str
    read_seq: int
    delivered_seq: int


class DeliveryFrame(msgspec.Struct, tag="delivery"):
    room: str
    delivered: dict[str, int]


def _frame_of(event: ClientEvent) -> msgspec.Struct:
    match event:
        case MemberChanged():
            return event  # already shaped as its frame
        case MessagePosted(message=message):
            return MessageFrame(room=message.room, message=message)
        case MessageChanged(update=update):
            return UpdateFrame(
                room=update.message.room,
                seq=update.seq,
                kind=update.kind,
                message=update.message,
            )
        case MemberRemoved(room=room):
            return RemovedFrame(room=room)
        case PresenceChanged(user=user, status=status, last_seen=last_seen):
            return PresenceFrame(user=user, status=status, last_seen=last_seen)
        case Typing(room=room, user=user, active=active):
            return TypingFrame(room=room, user=user, active=active)
        case Receipt():
            return ReceiptFrame(
                room=event.room,
                user=event.user,
                read_seq=event.read_seq,
                delivered_seq=event.delivered_seq,
            )
        case Delivered(room=room, delivered=delivered):
            return DeliveryFrame(room=room, delivered=delivered)
    raise TypeError(f"no JSON frame for {type(event).__name__}")


_encode = msgspec.json.Encoder().encode
_decode_request = msgspec.json.Decoder(Request).decode
_decode_envelope = msgspec.json.Decoder(Envelope).decode


def _reply(request_id: RequestId | None, **fields: Any) -> bytes:
    body: dict[str, Any] = {"type": "ok"}
    if request_id is not None:
        body["id"] = request_id
    body.update(fields)
    return frame(_encode(body))


def _error(request_id: object, error: ChatError) -> bytes:
    body: dict[str, Any] = {"type": "error"}
    if isinstance(request_id, int | str) and not isinstance(request_id, bool):
        body["id"] = request_id
    body.update(code=error.code, message=error.message)
    return frame(_encode(body))


class JsonCodec:
    """Encodes broker events as JSON text frames."""

    def encode(self, event: ClientEvent) -> bytes:
        return frame(_encode(_frame_of(event)))


CODEC = JsonCodec()


class JsonConnection:
    """One client of the JSON protocol: the hub's Subscriber for it."""

    __slots__ = (
        "_closing",
        "_max_buffer",
        "_transport",
        "peer",
        "pipeline",
        "status",
        "user_id",
        "username",
        "ws",
    )

    codec = CODEC

    def __init__(
        self, ws: web.WebSocketResponse, request: web.Request, max_buffer: int
    ) -> None:
        self.ws = ws
        self.username = ""
        self.user_id = 0
        self.status = Status.ONLINE
        self.peer = request.remote or "?"
        transport = request.transport
        assert transport is not None
        self._transport = transport
        self._max_buffer = max_buffer
        self._closing: asyncio.Task[None] | None = None
        # Sends queued for the writer whose replies wait for the commit;
        # made on the first send (most connections mostly listen).
        self.pipeline: set[asyncio.Task[None]] | None = None

    def deliver(self, data: bytes) -> None:
        if self._closing is not None or self._transport.is_closing():
            return
        if self._transport.get_write_buffer_size() > self._max_buffer:
            self.overflow()
            return
        self._transport.write(data)

    async def send(self, data: bytes) -> None:
        self.deliver(data)
        # Let a long replay drain instead of tripping the overflow limit.
        waited = 0.0
        while (
            self._transport.get_write_buffer_size() > self._max_buffer // 2
            and not self._transport.is_closing()
            and waited < 10.0
        ):
            await asyncio.sleep(0.005)
            waited += 0.005

    def overflow(self) -> None:
        if self._closing is None:
            log.warning("closing slow consumer", extra={"user": self.username})
            self._closing = asyncio.create_task(
                self._close(CLOSE_SLOW, "too slow: rejoin with since")
            )

    async def _close(self, code: int, reason: str) -> None:
        with contextlib.suppress(Exception):
            async with asyncio.timeout(5):
                await self.ws.close(code=code, message=reason.encode())
        self._transport.abort()


class JsonGateway:
    """Serves ``GET /ws``."""

    def __init__(
        self,
        service: ChatService,
        *,
        hello_timeout: float = 10.0,
        heartbeat: float = 30.0,
        max_frame: int = 64 * 1024,
        max_buffer: int = 1024 * 1024,
        max_pipeline: int = 64,
    ) -> None:
        self.service = service
        self.hello_timeout = hello_timeout
        self.heartbeat = heartbeat
        self.max_frame = max_frame
        self.max_buffer = max_buffer
        self.max_pipeline = max(1, max_pipeline)
        limits = service.limits
        # Told to every client in its hello reply, so that clients need not
        # guess the server's settings.
        self._limits = ClientLimits(
            max_message_length=limits.max_text,
            max_frame=max_frame,
            history_max=limits.history_max,
            send_rate=limits.send_rate,
            send_burst=limits.send_burst,
            typing_ttl=limits.typing_ttl,
            max_pipeline=self.max_pipeline,
        )
        self._connections: set[JsonConnection] = set()

    async def handle(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(
            heartbeat=self.heartbeat,
            # Frames above max_frame get a too_large error and the
            # connection lives on; only far larger ones are cut off (1009).
            max_msg_size=max(self.max_frame * 16, 1024 * 1024),
            compress=False,
            autoping=True,
        )
        await ws.prepare(request)
        conn = JsonConnection(ws, request, self.max_buffer)
        self._connections.add(conn)
        try:
            user = await self._hello(conn)
            if user is not None:
                await self._serve(conn, user)
        finally:
            self._connections.discard(conn)
            await self.service.activity.disconnect(conn)
            if not ws.closed:
                await ws.close()
        return ws

    async def close_all(self) -> None:
        """Tell every client the server is going away."""
        await asyncio.gather(
            *(
                c.ws.close(code=CLOSE_GOING_AWAY, message=b"server shutdown")
                for c in list(self._connections)
            ),
            return_exceptions=True,
        )

    async def _hello(self, conn: JsonConnection) -> User | None:
        try:
            async with asyncio.timeout(self.hello_timeout):
                msg = await conn.ws.receive()
        except TimeoutError:
            await self._refuse(conn, None, Unauthorized("no hello in time"))
            return None
        if msg.type in _CLOSING:
            return None  # the client left before saying hello
        if msg.type is not WSMsgType.TEXT:
            await self._refuse(
                conn, None, Unauthorized("the first frame must be a hello")
            )
            return None

        try:
            request = _decode_request(msg.data)
        except msgspec.DecodeError as exc:
            await self._refuse(
                conn,
                _request_id(msg.data),
                Unauthorized(f"the first frame must be a valid hello: {exc}"),
            )
            return None
        if not isinstance(request, Hello):
            await self._refuse(
                conn, request.id, Unauthorized("the first frame must be a hello")
            )
            return None

        try:
            user = await self.service.authenticate(request.token)
            conn.username = user.username
            conn.user_id = user.id
            await self.service.activity.connect(conn, user)
        except ChatError as error:
            await self._refuse(conn, request.id, error)
            return None
        except Exception as exc:
            # Most likely the database; the client should retry later.
            log.exception("hello failed", extra={"peer": conn.peer})
            conn.deliver(_error(request.id, fault(exc)))
            await conn.ws.close(code=CLOSE_TRY_LATER, message=b"try again later")
            return None
        conn.deliver(_reply(request.id, user=user, limits=self._limits))
        log.debug("hello", extra={"user": user.username, "peer": conn.peer})
        return user

    async def _refuse(
        self, conn: JsonConnection, request_id: object, error: ChatError
    ) -> None:
        conn.deliver(_error(request_id, Unauthorized(error.message)))
        await conn.ws.close(code=CLOSE_UNAUTHORIZED, message=b"unauthorized")

    async def _serve(self, conn: JsonConnection, user: User) -> None:
        async for msg in conn.ws:
            if msg.type is not WSMsgType.TEXT:
                if msg.type is WSMsgType.BINARY:
                    conn.deliver(_error(None, _bad("frames must be text")))
                continue
            data: str = msg.data
            if self._too_large(data):
                error = TooLarge(f"frames are limited to {self.max_frame} bytes")
                conn.deliver(_error(_request_id(data), error))
                continue
            try:
                request = _decode_request(data)
            except msgspec.DecodeError as exc:
                conn.deliver(_error(_request_id(data), _bad(_explain(exc))))
                continue
            try:
                await self._dispatch(conn, user, request)
            except ChatError as error:
                conn.deliver(_error(request.id, error))
            except Exception as exc:
                # Keep the one-reply promise and the connection; the fault
                # is the server's and goes to the log with its traceback.
                log.exception("request failed", extra={"user": user.username})
                conn.deliver(_error(request.id, fault(exc)))

    async def _pipeline(
        self,
        conn: JsonConnection,
        request_id: RequestId | None,
        stored: Coroutine[None, None, Message],
    ) -> None:
        """Reply to a queued send once it commits, without waiting here."""
        task = asyncio.create_task(self._answer(conn, request_id, stored))
        pipeline = conn.pipeline
        if pipeline is None:
            pipeline = conn.pipeline = set()
        pipeline.add(task)
        task.add_done_callback(pipeline.discard)
        if len(pipeline) >= self.max_pipeline:
            # Stop reading until a commit frees a place; the writer commits
            # in queue order, so the oldest send finishes first.
            await asyncio.wait(pipeline, return_when=asyncio.FIRST_COMPLETED)

    async def _answer(
        self,
        conn: JsonConnection,
        request_id: RequestId | None,
        stored: Coroutine[None, None, Message],
    ) -> None:
        try:
            message = await stored
        except ChatError as error:
            conn.deliver(_error(request_id, error))
        except Exception as exc:
            log.exception("send failed", extra={"user": conn.username})
            conn.deliver(_error(request_id, fault(exc)))
        else:
            conn.deliver(_reply(request_id, message=message))

    def _too_large(self, data: str) -> bool:
        # Characters never outnumber UTF-8 bytes; encode only when the count
        # of characters alone cannot settle it.
        if len(data) > self.max_frame:
            return True
        return len(data) * 4 > self.max_frame and len(data.encode()) > self.max_frame

    async def _dispatch(
        self, conn: JsonConnection, user: User, request: Request
    ) -> None:
        service = self.service
        match request:
            case Send(room=room, text=text, client_id=client_id, id=rid):
                stored = await service.submit(user, room, text, client_id)
                await self._pipeline(conn, rid, stored)
            case Join(room=room, since=since, id=rid):
                joined = await service.join(user, conn, room, since)
                extra = {} if joined.members is None else {"members": joined.members}
                conn.deliver(
                    _reply(rid, room=joined.room, last_seq=joined.last_seq, **extra)
                )
                joined.activate()
            case Leave(room=room, id=rid):
                service.leave(conn, room)
                conn.deliver(_reply(rid))
            case History(room=room, before=before, after=after, limit=limit, id=rid):
                messages = await service.history(
                    user, room, before=before, after=after, limit=limit
                )
                conn.deliver(_reply(rid, messages=messages))
            case Ping(id=rid):
                conn.deliver(_reply(rid))
            case SetPresence(status=status, id=rid):
                folded = await service.activity.set_status(conn, Status(status))
                conn.deliver(_reply(rid, status=folded))
            case SetTyping(room=room, active=active, id=rid):
                await service.typing(user, room, active)
                conn.deliver(_reply(rid))
            case Read(room=room, seq=seq, id=rid):
                read_seq = await service.read(user, room, seq)
                conn.deliver(_reply(rid, read_seq=read_seq))
            case Edit(room=room, message_id=message_id, text=text, id=rid):
                update = await service.edit(user, room, message_id, text)
                conn.deliver(_reply(rid, seq=update.seq, message=update.message))
            case Delete(room=room, message_id=message_id, id=rid):
                update = await service.delete(user, room, message_id)
                conn.deliver(_reply(rid, seq=update.seq, message=update.message))
            case Hello(id=rid):
                conn.deliver(_error(rid, _bad("already said hello")))


_CLOSING = {WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR}


def _bad(message: str) -> ChatError:
    return BadRequest(message)


def _request_id(data: str | bytes) -> object:
    try:
        return _decode_envelope(data).id
    except msgspec.DecodeError:
        return None


def _explain(exc: msgspec.DecodeError) -> str:
    text = str(exc)
    if text.startswith("Invalid value") and "$.type" in text:
        return "unknown frame type " + text.removeprefix("Invalid value ").split(" ")[0]
    return text
