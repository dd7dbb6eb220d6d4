"""The HTTP application: its services, its guards (token, size limits) and its errors.

Every error leaves as JSON: ``{"error": {"code", "message", "hint"}}`` with a 4xx
for anything the client can fix. A 500 means a bug in acjob, never bad input.
"""

from __future__ import annotations

import asyncio
import errno
import hmac
import logging
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..config import TesConfig
from ..errors import AcjobError, StorageFull
from ..hub import Hub
from ..model import describe_errors
from ..monitor import Monitor
from ..spool import Spool
from ..store import Store
from ..version import __version__

log = logging.getLogger("acjob.server")

#: Paths served without a token (liveness checks from load balancers).
PUBLIC_PATHS = frozenset({"/v1/health"})


@dataclass
class Services:
    """What the request handlers work with."""

    store: Store
    spool: Spool
    hub: Hub
    monitor: Monitor
    default_backend: str
    max_request_bytes: int = 1 << 20
    max_stdin_bytes: int | None = None
    token: str | None = field(default=None, repr=False)
    webhook_signing: bool = False
    tes: TesConfig = field(default_factory=TesConfig)
    shutdown: Callable[[], None] = lambda: None
    in_flight: int = 0
    stdin_locks: dict[str, asyncio.Lock] = field(default_factory=dict)
    last_activity: float = field(default_factory=time.monotonic)


def error_body(code: str, message: str, hint: str | None = None) -> dict[str, Any]:
    """Return the JSON body of an error response."""
    return {"error": {"code": code, "message": message, "hint": hint}}


class Guard:
    """ASGI middleware: bearer token, body size limit, gone clients, activity tracking.

    JSON bodies are read here, up to the limit, before the application sees them,
    so an oversized body gets a clean 413 whatever the route. Stdin uploads are
    streamed through untouched (their limit is checked while they are written).
    A request without a body (``GET``, ``HEAD``) is cancelled as soon as its client
    disconnects, whether or not its response has started: no long-poll, follow or
    event stream waits on for a client that left.
    """

    def __init__(self, app: ASGIApp, services: Services) -> None:
        self.app = app
        self.services = services

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        services = self.services
        if services.token is not None and scope["path"] not in PUBLIC_PATHS:
            headers = dict(scope["headers"])
            if not _authorized(headers.get(b"authorization", b""), services.token.encode()):
                await _reply(send, 401, error_body(
                    "unauthorized", "a valid bearer token is required",
                    "send 'Authorization: Bearer TOKEN' (ACJOB_TOKEN for the acjob tools)"))
                return
        services.in_flight += 1
        try:
            if scope["method"] in ("POST", "PUT", "PATCH") and not scope["path"].endswith(
                "/stdin"
            ):
                body = await _read_limited(receive, services.max_request_bytes)
                if body is None:
                    await _reply(send, 413, error_body(
                        "payload_too_large",
                        f"the request body exceeds {services.max_request_bytes} bytes",
                        "send stdin as an upload (PUT /v1/jobs/ID/stdin), not inline"))
                    return
                receive = _replay(body)
            if scope["method"] in _BODYLESS:
                await _cancel_when_gone(self.app, scope, receive, send)
            else:
                await self.app(scope, receive, send)
        finally:
            services.in_flight -= 1
            services.last_activity = time.monotonic()


def _authorized(header: bytes, token: bytes) -> bool:
    """Tell whether an ``Authorization`` header carries ``Bearer TOKEN``.

    The scheme is case-insensitive and one or more spaces follow it (RFC 7235). The
    token is compared in constant time, and compared even when the scheme is wrong.
    """
    scheme, _, credentials = header.partition(b" ")
    same = hmac.compare_digest(credentials.lstrip(b" "), token)
    return same and scheme.lower() == b"bearer"


#: Methods whose requests have no body for the application to read.
_BODYLESS = frozenset({"GET", "HEAD"})


async def _cancel_when_gone(app: ASGIApp, scope: Scope, receive: Receive, send: Send) -> None:
    """Run ``app`` for a request without a body, and cancel it once the client is gone.

    Starlette notices a gone client only when a response sends, and a wait before the
    response starts (a long-poll, a follow of a job not started yet) sends nothing for
    minutes. So one watcher reads the real ``receive`` all along; the application reads
    the same messages from it, ``http.disconnect`` last, and is cancelled at that one.
    An exception of the application propagates; a cancelled application answers
    nobody, so nothing is sent for it.
    """
    messages: asyncio.Queue[Message] = asyncio.Queue()

    async def watch() -> None:
        while True:
            message = await receive()
            messages.put_nowait(message)
            if message["type"] == "http.disconnect":
                return

    async def app_receive() -> Message:
        message = await messages.get()
        if message["type"] == "http.disconnect":
            messages.put_nowait(message)  # every later call hears it too
        return message

    watcher = asyncio.create_task(watch())
    handler = asyncio.ensure_future(app(scope, app_receive, send))
    try:
        await asyncio.wait({watcher, handler}, return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:  # the server itself stops this request
        watcher.cancel()
        handler.cancel()
        raise
    watcher.cancel()
    if not handler.done():
        handler.cancel()  # the client is gone
        await asyncio.wait({handler})
    if not handler.cancelled():
        handler.result()


async def _read_limited(receive: Receive, limit: int) -> bytes | None:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _replay(body: bytes) -> Receive:
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return {"type": "http.disconnect"}

    return receive


async def _reply(send: Send, status: int, body: dict[str, Any]) -> None:
    response = JSONResponse(body, status_code=status)
    await send({"type": "http.response.start", "status": status,
                "headers": response.raw_headers})
    await send({"type": "http.response.body", "body": response.body})


def create_app(services: Services) -> FastAPI:
    """Build the application over ``services``."""
    from .metrics import install_metrics
    from .metrics import router as metrics_router
    from .native import router
    from .tes import router as tes_router

    app = FastAPI(
        title="acjob",
        version=__version__,
        description="Run long jobs and get their output back: the native acjob API, "
                    "and GA4GH TES v1.1 under /ga4gh/tes/v1.",
    )
    app.state.services = services
    app.state.metrics = install_metrics(services)
    app.include_router(router)
    app.include_router(tes_router)
    app.include_router(metrics_router)

    @app.exception_handler(AcjobError)
    async def _acjob_error(request: Request, exc: AcjobError) -> JSONResponse:
        status = exc.http_status if 400 <= exc.http_status < 600 else 500
        return JSONResponse(error_body(exc.code, exc.message, exc.hint), status_code=status)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        details = [
            {"loc": list(e.get("loc", ())), "msg": str(e.get("msg", "")),
             "type": str(e.get("type", ""))}
            for e in exc.errors()
        ]
        body = error_body("invalid_request", describe_errors(details),
                          "see /openapi.json for the request schema")
        body["detail"] = details
        # TES clients expect 400 for an invalid task or parameter.
        tes = request.url.path.startswith(("/ga4gh/tes/", "/v1/tasks"))
        return JSONResponse(body, status_code=400 if tes else 422)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        codes = {404: "not_found", 405: "method_not_allowed"}
        code = codes.get(exc.status_code, "http_error")
        headers = dict(getattr(exc, "headers", None) or {})
        if exc.status_code == 405:
            # Every method the path has, not only those of the one route that matched.
            methods = {m for route in request.app.routes
                       if isinstance(route, Route) and route.path_regex.match(request.url.path)
                       for m in route.methods or ()}
            headers["Allow"] = ", ".join(sorted(methods))
        return JSONResponse(error_body(code, str(exc.detail)), status_code=exc.status_code,
                            headers=headers)

    @app.exception_handler(OSError)
    async def _os_error(request: Request, exc: OSError) -> JSONResponse:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return await _acjob_error(request, StorageFull(
                "no space left for the job's files", hint="free space in the spool"))
        return await _bug(request, exc)

    @app.exception_handler(sqlite3.OperationalError)
    async def _db_error(request: Request, exc: sqlite3.OperationalError) -> JSONResponse:
        if "full" in str(exc):
            return await _acjob_error(request, StorageFull(
                "no space left for the store", hint="free space in the state directory"))
        return await _bug(request, exc)

    @app.exception_handler(Exception)
    async def _bug(request: Request, exc: Exception) -> JSONResponse:
        log.exception("internal error on %s %s", request.method, request.url.path)
        return JSONResponse(error_body("internal", "internal error (a bug in acjob)",
                                       "see the daemon's log"), status_code=500)

    app.add_middleware(Guard, services=services)
    return app
