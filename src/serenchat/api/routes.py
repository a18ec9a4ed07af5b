"""REST routes: HTTP in, service calls, JSON out.

Bodies are decoded straight into msgspec types, which both validates them
and feeds the OpenAPI document; errors of every kind leave as
``{"error": {"code": …, "message": …}}`` with the matching HTTP status.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import msgspec
from aiohttp import web
from swagger_ui_bundle import swagger_ui_path

from serenchat.api.openapi import Operation, Param, document
from serenchat.domain.errors import (
    BadRequest,
    ChatError,
    NotFound,
    TooLarge,
    Unauthorized,
)
from serenchat.domain.models import (
    Member,
    Message,
    Presence,
    Room,
    RoomState,
    Update,
    User,
)
from serenchat.service import ChatService, Session
from serenchat.service.faults import fault

log = logging.getLogger(__name__)

PREFIX = "/api/v1"
DOCS = Path(__file__).parent / "docs"

HTTP_STATUS = {
    "bad_request": 400,
    "unauthorized": 401,
    "forbidden": 403,
    "not_found": 404,
    "conflict": 409,
    "too_large": 413,
    "rate_limited": 429,
    "unavailable": 503,
    "internal": 500,
}


# Request and response bodies.


class Credentials(msgspec.Struct):
    username: str
    password: str


class NewRoom(msgspec.Struct):
    id: str
    title: str | None = None
    private: bool = False


class NewDirect(msgspec.Struct):
    username: str


class NewMessage(msgspec.Struct):
    text: str
    client_id: str | None = None


class Rooms(msgspec.Struct):
    rooms: list[RoomState]


class EditMessage(msgspec.Struct):
    text: str


class ReadUpTo(msgspec.Struct):
    seq: int


class ReadPosition(msgspec.Struct):
    read_seq: int


class Members(msgspec.Struct):
    members: list[Member]


class Messages(msgspec.Struct):
    messages: list[Message]


class ErrorDetail(msgspec.Struct):
    code: str
    message: str


class ErrorBody(msgspec.Struct):
    error: ErrorDetail


class Health(msgspec.Struct):
    status: str
    database: str


_encode = msgspec.json.Encoder().encode

T = TypeVar("T")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

ROOM = Param("room", "path", "room id")
USERNAME = Param("username", "path", "username")
MESSAGE_ID = Param("message_id", "path", "message id", {"type": "integer"})
POSITION = {"type": "integer", "minimum": 0}
LIMIT = {"type": "integer", "minimum": 1}
PAGE = (
    Param("before", "query", "only messages with a lower seq", POSITION),
    Param("after", "query", "only messages with a higher seq", POSITION),
    Param("limit", "query", "page size (default 50, above 200 means 200)", LIMIT),
)


def json_response(body: Any, status: int = 200) -> web.Response:
    return web.Response(
        body=_encode(body), status=status, content_type="application/json"
    )


def error_response(error: ChatError) -> web.Response:
    response = json_response(
        ErrorBody(ErrorDetail(error.code, error.message)),
        status=HTTP_STATUS.get(error.code, 500),
    )
    if error.code == "unauthorized":
        response.headers["WWW-Authenticate"] = "Bearer"
    return response


@web.middleware
async def errors_middleware(
    request: web.Request, handler: Handler
) -> web.StreamResponse:
    """Turn every failure under /api into the API's error body."""
    if not request.path.startswith(PREFIX):
        return await handler(request)
    try:
        return await handler(request)
    except ChatError as error:
        return error_response(error)
    except web.HTTPRequestEntityTooLarge:
        return error_response(TooLarge("the request body is too large"))
    except web.HTTPNotFound:
        return error_response(NotFound(f"no such endpoint: {request.path}"))
    except web.HTTPMethodNotAllowed as exc:
        detail = f"{request.method} is not allowed on {request.path}"
        response = json_response(ErrorBody(ErrorDetail("bad_request", detail)), 405)
        # RFC 9110, section 15.5.6: a 405 names the methods that would work.
        response.headers["Allow"] = ",".join(sorted(exc.allowed_methods))
        return response
    except web.HTTPException:
        raise
    except Exception as exc:
        log.exception("request failed", extra={"path": request.path})
        return error_response(fault(exc))


class ApiRoutes:
    """The /api/v1 endpoints, bound to one ChatService."""

    def __init__(self, service: ChatService) -> None:
        self.service = service
        self.operations: list[tuple[Operation, Handler]] = [
            (
                Operation(
                    "POST",
                    "/auth/register",
                    "Create an account",
                    "auth",
                    Session,
                    201,
                    Credentials,
                    auth=False,
                    errors=(400, 409),
                ),
                self.register,
            ),
            (
                Operation(
                    "POST",
                    "/auth/login",
                    "Log in with a password",
                    "auth",
                    Session,
                    body=Credentials,
                    auth=False,
                    errors=(400, 401),
                ),
                self.login,
            ),
            (
                Operation(
                    "GET", "/me", "The signed-in user", "auth", User, errors=(401,)
                ),
                self.me,
            ),
            (
                Operation(
                    "GET",
                    "/rooms",
                    "My rooms and every public room",
                    "rooms",
                    Rooms,
                    errors=(401,),
                ),
                self.rooms,
            ),
            (
                Operation(
                    "POST",
                    "/rooms",
                    "Create a room",
                    "rooms",
                    Room,
                    201,
                    NewRoom,
                    errors=(400, 401, 409),
                ),
                self.create_room,
            ),
            (
                Operation(
                    "GET", "/rooms/{room}", "One room", "rooms", Room, params=(ROOM,)
                ),
                self.room,
            ),
            (
                Operation(
                    "GET",
                    "/rooms/{room}/members",
                    "A room's members",
                    "rooms",
                    Members,
                    params=(ROOM,),
                ),
                self.members,
            ),
            (
                Operation(
                    "PUT",
                    "/rooms/{room}/members/{username}",
                    "Add a member (owner; or yourself to a public room)",
                    "rooms",
                    Member,
                    params=(ROOM, USERNAME),
                ),
                self.add_member,
            ),
            (
                Operation(
                    "DELETE",
                    "/rooms/{room}/members/{username}",
                    "Remove a member (owner; or yourself)",
                    "rooms",
                    None,
                    204,
                    params=(ROOM, USERNAME),
                ),
                self.remove_member,
            ),
            (
                Operation(
                    "POST",
                    "/dms",
                    "The direct message room with a user",
                    "rooms",
                    Room,
                    body=NewDirect,
                    errors=(400, 404),
                ),
                self.direct,
            ),
            (
                Operation(
                    "GET",
                    "/rooms/{room}/messages",
                    "A page of history",
                    "messages",
                    Messages,
                    params=(ROOM, *PAGE),
                ),
                self.history,
            ),
            (
                Operation(
                    "POST",
                    "/rooms/{room}/messages",
                    "Send a message",
                    "messages",
                    Message,
                    201,
                    NewMessage,
                    params=(ROOM,),
                    errors=(400, 403, 404, 409, 413, 429, 503),
                ),
                self.send,
            ),
            (
                Operation(
                    "PATCH",
                    "/rooms/{room}/messages/{message_id}",
                    "Edit one's own message",
                    "messages",
                    Update,
                    body=EditMessage,
                    params=(ROOM, MESSAGE_ID),
                    errors=(400, 403, 404, 413, 503),
                ),
                self.edit,
            ),
            (
                Operation(
                    "DELETE",
                    "/rooms/{room}/messages/{message_id}",
                    "Delete a message (its sender or the room's owner)",
                    "messages",
                    Update,
                    params=(ROOM, MESSAGE_ID),
                    errors=(400, 403, 404, 503),
                ),
                self.delete,
            ),
            (
                Operation(
                    "POST",
                    "/rooms/{room}/read",
                    "Mark the room read up to a seq",
                    "receipts",
                    ReadPosition,
                    body=ReadUpTo,
                    params=(ROOM,),
                ),
                self.read,
            ),
            (
                Operation(
                    "GET",
                    "/users/{username}/presence",
                    "One user's presence",
                    "presence",
                    Presence,
                    params=(USERNAME,),
                    errors=(400, 404),
                ),
                self.presence,
            ),
            (
                Operation(
                    "GET",
                    "/health",
                    "Liveness and database backend",
                    "server",
                    Health,
                    auth=False,
                    errors=(),
                ),
                self.health,
            ),
        ]
        self.spec = document([op for op, _ in self.operations], ErrorBody)

    def install(self, app: web.Application) -> None:
        app.middlewares.append(errors_middleware)
        for op, handler in self.operations:
            app.router.add_route(op.method, PREFIX + op.path, handler)
        app.router.add_get(PREFIX + "/openapi.json", self.openapi)
        app.router.add_get("/docs", self.docs)
        app.router.add_static("/docs/assets", DOCS)
        app.router.add_static("/docs/swagger-ui", Path(str(swagger_ui_path)))

    # Plumbing.

    async def user(self, request: web.Request) -> User:
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthorized("send 'Authorization: Bearer <token>'")
        return await self.service.authenticate(token.strip())

    @staticmethod
    async def body(request: web.Request, kind: type[T]) -> T:
        raw = await request.read()
        try:
            return msgspec.json.decode(raw, type=kind)
        except msgspec.ValidationError as exc:
            raise BadRequest(str(exc)) from None
        except msgspec.DecodeError as exc:
            raise BadRequest(f"the body is not valid JSON: {exc}") from None

    @staticmethod
    def query_int(request: web.Request, name: str) -> int | None:
        raw = request.query.get(name)
        if raw is None or raw == "":
            return None
        try:
            return int(raw)
        except ValueError:
            raise BadRequest(f"{name} must be an integer") from None

    @staticmethod
    def path_int(request: web.Request, name: str) -> int:
        try:
            return int(request.match_info[name])
        except ValueError:
            raise BadRequest(f"{name} must be an integer") from None

    # Handlers.

    async def register(self, request: web.Request) -> web.Response:
        body = await self.body(request, Credentials)
        session = await self.service.register(body.username, body.password)
        return json_response(session, 201)

    async def login(self, request: web.Request) -> web.Response:
        body = await self.body(request, Credentials)
        return json_response(await self.service.login(body.username, body.password))

    async def me(self, request: web.Request) -> web.Response:
        return json_response(await self.user(request))

    async def rooms(self, request: web.Request) -> web.Response:
        user = await self.user(request)
        return json_response(Rooms(await self.service.rooms(user)))

    async def create_room(self, request: web.Request) -> web.Response:
        user = await self.user(request)
        body = await self.body(request, NewRoom)
        room = await self.service.create_room(user, body.id, body.title, body.private)
        return json_response(room, 201)

    async def room(self, request: web.Request) -> web.Response:
        user = await self.user(request)
        return json_response(await self.service.room(user, request.match_info["room"]))

    async def members(self, request: web.Request) -> web.Response:
        user = await self.user(request)
        found = await self.service.members(user, request.match_info["room"])
        return json_response(Members(found))

    async def add_member(self, request: web.Request) -> web.Response:
        user = await self.user(request)
        info = request.match_info
        member = await self.service.add_member(user, info["room"], info["username"])
        return json_response(member)

    async def remove_member(self, request: web.Request) -> web.Response:
        user = await self.user(request)
        info = request.match_info
        await self.service.remove_member(user, info["room"], info["username"])
        return web.Response(status=204)

    async def direct(self, request: web.Request) -> web.Response:
        user = await self.user(request)
        body = await self.body(request, NewDirect)
        return json_response(await self.service.direct(user, body.username))

    async def history(self, request: web.Request) -> web.Response:
        user = await self.user(request)
        found = await self.service.history(
            user,
            request.match_info["room"],
            before=self.query_int(request, "before"),
            after=self.query_int(request, "after"),
            limit=self.query_int(request, "limit"),
        )
        return json_response(Messages(found))

    async def send(self, request: web.Request) -> web.Response:
        user = await self.user(request)
        body = await self.body(request, NewMessage)
        message = await self.service.send(
            user, request.match_info["room"], body.text, body.client_id
        )
        return json_response(message, 201)

    async def edit(self, request: web.Request) -> web.Response:
        user = await self.user(request)
        body = await self.body(request, EditMessage)
        update = await self.service.edit(
            user,
            request.match_info["room"],
            self.path_int(request, "message_id"),
            body.text,
        )
        return json_response(update)

    async def delete(self, request: web.Request) -> web.Response:
        user = await self.user(request)
        update = await self.service.delete(
            user, request.match_info["room"], self.path_int(request, "message_id")
        )
        return json_response(update)

    async def read(self, request: web.Request) -> web.Response:
        user = await self.user(request)
        body = await self.body(request, ReadUpTo)
        read_seq = await self.service.read(user, request.match_info["room"], body.seq)
        return json_response(ReadPosition(read_seq))

    async def presence(self, request: web.Request) -> web.Response:
        user = await self.user(request)
        found = await self.service.presence(user, request.match_info["username"])
        return json_response(found)

    async def health(self, _: web.Request) -> web.Response:
        return json_response(Health("ok", self.service.store.backend))

    async def openapi(self, _: web.Request) -> web.Response:
        return json_response(self.spec)

    async def docs(self, _: web.Request) -> web.FileResponse:
        return web.FileResponse(DOCS / "index.html")
