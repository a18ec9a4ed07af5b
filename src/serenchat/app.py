"""Composition: build the components from Settings and wire them together."""

from __future__ import annotations

import gc
import logging
from collections.abc import AsyncIterator
from pathlib import Path

from aiohttp import web
from prometheus_client import (
    CollectorRegistry,
    GCCollector,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

from serenchat.api import ApiRoutes
from serenchat.auth import PasswordHasher, TokenAuthority, load_secret
from serenchat.broker import MemoryBroker
from serenchat.config import Settings
from serenchat.gateway.jsonws import JsonGateway
from serenchat.hub import Hub
from serenchat.metrics import ServerCollector
from serenchat.service import ChatService, Limits
from serenchat.store import Store, migrate

log = logging.getLogger(__name__)

WEB_ROOT = Path(__file__).parent / "web"

# The web client loads nothing but its own files: no inline script or
# style, no third-party origin, no framing. Sent with / and /static/.
CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "font-src 'self'",
        "manifest-src 'self'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    )
)
CLIENT_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    # Revalidate on every load (a 304 when unchanged) so that an upgraded
    # server never runs with a stale mix of old and new client modules.
    "Cache-Control": "no-cache",
}

SERVICE = web.AppKey("service", ChatService)
GATEWAY = web.AppKey("gateway", JsonGateway)


def build_service(settings: Settings) -> ChatService:
    """The service and everything under it, not yet started."""
    secret = settings.jwt_secret or load_secret(settings.data_dir)
    hub = Hub()
    store = Store(
        settings.database,
        pool_size=settings.db_pool_size,
        max_batch=settings.batch_size,
        max_pending=settings.write_queue,
    )
    service = ChatService(
        store,
        hub,
        MemoryBroker(),
        TokenAuthority(secret, settings.token_ttl),
        PasswordHasher(),
        Limits(
            max_text=settings.max_message_length,
            send_rate=settings.send_rate,
            send_burst=settings.send_burst,
            typing_ttl=settings.typing_ttl,
            delivery_interval=settings.delivery_interval,
            small_room=settings.small_room,
            notice_interval=settings.notice_interval,
        ),
    )
    store.writer.on_commit = service.on_commit
    return service


async def secure_client(request: web.Request, response: web.StreamResponse) -> None:
    """Add the web client's security headers to its page and static files."""
    if request.path == "/" or request.path.startswith("/static/"):
        response.headers.update(CLIENT_HEADERS)


def create_app(settings: Settings) -> web.Application:
    """The aiohttp application: WebSocket, REST API, docs, metrics, web client."""
    service = build_service(settings)
    gateway = JsonGateway(
        service,
        hello_timeout=settings.hello_timeout,
        heartbeat=settings.ping_interval,
        max_frame=settings.max_frame,
        max_buffer=settings.max_connection_buffer,
        max_pipeline=settings.max_pipeline,
    )
    registry = CollectorRegistry()
    registry.register(ServerCollector(service.hub, service.store.writer.stats))
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)

    app = web.Application(client_max_size=1024 * 1024)
    app[SERVICE] = service
    app[GATEWAY] = gateway

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(
            body=generate_latest(registry),
            headers={"Content-Type": CONTENT_TYPE_PLAIN_0_0_4},
        )

    async def index(_: web.Request) -> web.FileResponse:
        return web.FileResponse(WEB_ROOT / "index.html")

    app.router.add_get("/ws", gateway.handle)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/", index)
    ApiRoutes(service).install(app)
    app.router.add_static("/static", WEB_ROOT)

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        if settings.migrate:
            await migrate.upgrade(service.store.engine)
        await service.store.start()
        await service.start()
        # What exists now (modules, the app, engine pools) lives as long as
        # the process: take it out of the collector's sight, so that full
        # collections scan only what connections allocate. With 1,000
        # connections a full pass otherwise stalls the loop for over 100 ms.
        gc.collect()
        gc.freeze()
        log.info(
            "serving",
            extra={"database": service.store.backend, "port": settings.port},
        )
        yield
        # Runs after on_shutdown closed the sockets: commit what is queued.
        await service.close()
        await service.store.close()
        await service.broker.close()

    async def say_goodbye(app: web.Application) -> None:
        # WebSocket handlers live as long as their clients; close them with
        # 1001 first so clients reconnect instead of seeing a dropped link.
        await gateway.close_all()

    app.on_response_prepare.append(secure_client)
    app.cleanup_ctx.append(lifecycle)
    app.on_shutdown.append(say_goodbye)
    return app
