"""The guard in front of every route: bearer token (or the dashboard's session cookie),
body limit, gone clients, activity, and no answer before what it acknowledges is on disk.

An ASGI middleware, so that it holds for every path whatever router answers it, and
so that a 401 or a 413 is sent before any application code runs.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import time
from typing import Any

from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..store import GroupCommit
from ..store.database import grouped
from .errors import error_body
from .services import Services
from .session import CSRF_HEADER, SAFE_METHODS, Verdict, check, cookie_name, foreign_origin

#: Paths served without a token (liveness checks from load balancers; the dashboard's
#: login form, which checks the token itself).
PUBLIC_PATHS = frozenset({"/v1/health", "/ui/login"})
#: Dashboard files served without a token (nothing secret in them).
UI_PUBLIC = "/ui/static/"
#: Dashboard pages: asked for without a session, they send the browser to the login.
UI_PAGES = frozenset({"/ui", "/ui/"})


class Guard:
    """ASGI middleware: bearer token, request and body limits, gone clients, activity,
    group commit.

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
        if services.token is not None and not await _admit(scope, send, services.token):
            return
        activity = services.activity
        if activity.in_flight >= services.max_requests and scope["path"] not in PUBLIC_PATHS:
            # Beyond the limit a client is told at once, never left hanging; the acjob
            # clients take a 503 as passing and try again with backoff.
            await _reply(send, 503, error_body(
                "too_busy", f"the daemon is serving its limit of {services.max_requests} "
                "requests at once", "try again in a moment (the daemon's [server] "
                "max_requests sets the limit)"), [(b"retry-after", b"1")])
            return
        activity.in_flight += 1
        grouping = None
        if services.commits is not None:
            # The request's acknowledged commits are flushed in groups, and nothing
            # is sent to any client before every such commit made so far is on disk.
            grouping = grouped.set(True)
            send = _after_flush(send, services.commits)
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
            if grouping is not None:
                grouped.reset(grouping)
            activity.in_flight -= 1
            activity.last_activity = time.monotonic()


def _after_flush(send: Send, commits: GroupCommit) -> Send:
    """Return ``send`` that first waits for the grouped commits made so far to be on
    disk (at once when none waits)."""

    async def flushed_send(message: Message) -> None:
        if commits.pending:
            await commits.barrier()
        await send(message)

    return flushed_send


async def _admit(scope: Scope, send: Send, token: str) -> bool:
    """Let a request through on a daemon with a token, or answer it and return ``False``.

    The token in ``Authorization``, or the dashboard's session cookie (with its CSRF
    proof for a state-changing request, see :mod:`acjob.server.session`). A
    state-changing request from another site's page is refused whatever it carries. A
    dashboard page asked for without a session is sent to the login form; anything
    else gets a JSON 401.
    """
    path: str = scope["path"]
    headers: list[tuple[bytes, bytes]] = scope["headers"]
    method: str = scope["method"]
    if path in PUBLIC_PATHS or path.startswith(UI_PUBLIC):
        return True
    secret = token.encode()
    found = dict(headers)
    if method not in SAFE_METHODS and foreign_origin(headers):
        await _reply(send, 403, error_body(
            "cross_site_refused", "a state-changing request from another site's page",
            "use the dashboard's own page, or a client that sends no Origin"))
        return False
    if _authorized(found.get(b"authorization", b""), secret):
        return True
    port = (scope.get("server") or (None, None))[1]
    verdict = check(headers, method, secret, cookie_name(port))
    if verdict is Verdict.ALLOWED:
        return True
    if verdict is Verdict.FORGERY:
        await _reply(send, 403, error_body(
            "csrf_failed", "this request needs the dashboard's CSRF proof",
            "send the X-Acjob-CSRF header with the value of GET /ui/session"))
        return False
    if method == "GET" and path in UI_PAGES:
        await send({"type": "http.response.start", "status": 303,
                    "headers": [(b"location", b"/ui/login"), (b"content-length", b"0"),
                                (b"cache-control", b"no-store")]})
        await send({"type": "http.response.body", "body": b""})
        return False
    # A page's own fetch whose session ended must not make the browser pop up its
    # password dialog (it would for a Basic challenge): no challenge for it.
    challenge = [] if CSRF_HEADER in found else [
        (b"www-authenticate", b'Bearer realm="acjob", Basic realm="acjob"')]
    await _reply(send, 401, error_body(
        "unauthorized", "a valid token is required",
        "send 'Authorization: Bearer TOKEN' (ACJOB_TOKEN for the acjob tools), "
        "or HTTP Basic with the token as the password"), challenge)
    return False


def _authorized(header: bytes, token: bytes) -> bool:
    """Tell whether an ``Authorization`` header carries the token: ``Bearer TOKEN``, or
    HTTP Basic with the token as the password (any user name), for clients that can send
    nothing else (TES clients such as Toil's ``--tesPassword``, or credentials in a URL).

    The scheme is case-insensitive and one or more spaces follow it (RFC 7235). What was
    presented is compared with the token in constant time, and compared even when the
    scheme is wrong or the Basic credentials do not decode.
    """
    scheme, _, credentials = header.partition(b" ")
    scheme, credentials = scheme.lower(), credentials.strip(b" ")
    presented = credentials
    if scheme == b"basic":
        try:
            decoded = base64.b64decode(credentials, validate=True)
        except (binascii.Error, ValueError):
            decoded = b""
        _, colon, password = decoded.partition(b":")
        presented = password if colon else b""
    same = hmac.compare_digest(presented, token)
    return same and scheme in (b"bearer", b"basic")


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


async def _reply(send: Send, status: int, body: dict[str, Any],
                 headers: list[tuple[bytes, bytes]] | None = None) -> None:
    response = JSONResponse(body, status_code=status)
    await send({"type": "http.response.start", "status": status,
                "headers": response.raw_headers + (headers or [])})
    await send({"type": "http.response.body", "body": response.body})
