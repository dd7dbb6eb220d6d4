"""``ac dashboard``: the dashboard of a daemon a browser cannot reach, on a loopback port.

The private daemon listens on a Unix socket, which browsers do not speak. The relay
listens on ``127.0.0.1`` and passes every request on to the daemon as it is, streaming
both ways (output follows and event streams included), adding the daemon's bearer
token where it has one. Like Jupyter, it prints a URL with a fresh one-time token; the
first visit trades that token for a session cookie (``HttpOnly``, ``SameSite=Strict``)
and the token is spent. From then on the relay asks what the daemon asks of a browser
on TCP: the cookie on every request, and on a state-changing one the CSRF proof and
the page's own origin (:mod:`acjob.server.session`). Anything else on this machine that
connects to the port gets a 401.
"""

from __future__ import annotations

import asyncio
import hmac
import html
import json
import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import parse_qs

import httpx
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from ..client.core import Target
from ..private import ensure_private_daemon
from ..server.session import (
    SAFE_METHODS,
    Verdict,
    check,
    cookie_name,
    csrf_value,
    foreign_origin,
    session_value,
    set_cookie,
)

#: The dashboard's files, read from the package for the login page.
STATIC = Path(__file__).resolve().parent.parent / "server" / "static"

#: Request headers that stay here: the browser's session and proof are the relay's,
#: and hop-by-hop headers are the connection's.
_DROPPED_REQUEST = frozenset({
    b"host", b"cookie", b"x-acjob-csrf", b"authorization", b"connection", b"keep-alive",
    b"transfer-encoding", b"upgrade", b"te", b"proxy-authorization", b"content-length",
})
_DROPPED_RESPONSE = frozenset({
    "connection", "keep-alive", "transfer-encoding", "upgrade", "set-cookie",
    "www-authenticate",
})


class Relay:
    """The relay's ASGI application.

    Args:
        target: The daemon, as the client finds it.
        port: The loopback port the relay listens on (it names the session cookie).
        one_time: The token the first visit trades for the session cookie.
    """

    def __init__(self, target: Target, port: int, one_time: str) -> None:
        self.target = target
        self.port = port
        self._one_time: str | None = one_time
        self._secret = secrets.token_bytes(32)
        self._cookie = cookie_name(port)
        transport = (httpx.AsyncHTTPTransport(uds=target.transport_uds)
                     if target.transport_uds else httpx.AsyncHTTPTransport())
        self._client = httpx.AsyncClient(base_url=target.base_url, transport=transport,
                                         timeout=httpx.Timeout(None, connect=10.0))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        request = Request(scope, receive)
        response = await self._answer(request)
        await response(scope, receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self._client.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _answer(self, request: Request) -> Response:
        path = request.url.path
        headers = request.scope["headers"]
        if path == "/ui/login":
            return await self._login(request)
        if path.startswith("/ui/static/") and request.method in SAFE_METHODS:
            return await self._forward(request)
        if request.method not in SAFE_METHODS and foreign_origin(headers):
            return _error(403, "cross_site_refused",
                          "a state-changing request from another site's page")
        verdict = check(headers, request.method, self._secret, self._cookie)
        if verdict is Verdict.FORGERY:
            return _error(403, "csrf_failed", "this request needs the dashboard's CSRF proof")
        if verdict is Verdict.NO_SESSION:
            if request.method == "GET" and path in ("/ui", "/ui/"):
                return RedirectResponse("/ui/login", status_code=303)
            return _error(401, "unauthorized",
                          "open the URL 'ac dashboard' printed (run it again for a new one)")
        if path == "/ui/session":
            return Response(json.dumps({"csrf": csrf_value(self._secret), "login": False}),
                            media_type="application/json",
                            headers={"Cache-Control": "no-store"})
        return await self._forward(request)

    async def _login(self, request: Request) -> Response:
        """Trade the one-time token (in the URL, or typed into the form) for the cookie."""
        if request.method not in ("GET", "POST"):
            return _error(405, "method_not_allowed", "the login takes GET or POST")
        if request.method == "POST":
            body = (await request.body()).decode("utf-8", "replace")
            presented = parse_qs(body, max_num_fields=8).get("token", [""])[0]
        else:
            presented = request.query_params.get("token", "")
            if not presented:
                return _page(200, "")
        if self._spend(presented.strip()):
            response = RedirectResponse("/ui/", status_code=303,
                                        headers={"Cache-Control": "no-store"})
            response.raw_headers.append((b"set-cookie", set_cookie(
                self._cookie, session_value(self._secret), secure=False, max_age=None)))
            return response
        return _page(401, "That token is wrong or was used already: run 'ac dashboard' "
                          "again for a new URL.")

    def _spend(self, presented: str) -> bool:
        """Tell whether ``presented`` is the one-time token, which it then no longer is."""
        expected = self._one_time
        if expected is None:
            hmac.compare_digest(presented.encode(), b"-" * 43)  # the same work either way
            return False
        if not hmac.compare_digest(presented.encode(), expected.encode()):
            return False
        self._one_time = None
        return True

    async def _forward(self, request: Request) -> Response:
        """Pass the request on to the daemon and its answer back, both streamed."""
        headers = [(k, v) for k, v in request.scope["headers"] if k not in _DROPPED_REQUEST]
        if self.target.token:
            headers.append((b"authorization", f"Bearer {self.target.token}".encode()))
        url = httpx.URL(path=request.url.path, query=request.url.query.encode())
        # A stdin upload streams through (it may be large); other bodies are small JSON
        # (the daemon limits them), kept so that the request can be sent again.
        streamed = request.method == "PUT"
        body: bytes | AsyncIterator[bytes] | None = None
        if streamed:
            body = request.stream()
        elif request.method not in SAFE_METHODS:
            body = await request.body()
        outgoing = self._client.build_request(request.method, url, headers=headers,
                                              content=body)
        try:
            answer = await self._client.send(outgoing, stream=True)
        except httpx.TransportError:
            if self.target.autostart is None or streamed:
                return _error(502, "daemon_unreachable",
                              f"the daemon at {self.target.where} does not answer")
            # The private daemon stops when idle: start it again, as the tools do.
            await asyncio.to_thread(ensure_private_daemon, self.target.autostart)
            try:
                answer = await self._client.send(outgoing, stream=True)
            except httpx.TransportError:
                return _error(502, "daemon_unreachable",
                              f"the daemon at {self.target.where} does not answer")
        kept = [(k, v) for k, v in answer.headers.raw
                if k.decode("latin-1").lower() not in _DROPPED_RESPONSE]
        response = StreamingResponse(_relay_body(answer), status_code=answer.status_code)
        response.raw_headers = [h for h in response.raw_headers
                                if h[0] not in (b"content-type", b"content-length")]
        response.raw_headers.extend((k.lower(), v) for k, v in kept)
        return response


async def _relay_body(answer: httpx.Response) -> AsyncIterator[bytes]:
    """Yield the daemon's answer as it comes; close it however the relay ends (the
    browser gone cancels this, and the daemon then sees its own client gone)."""
    try:
        async for chunk in answer.aiter_raw():
            yield chunk
    finally:
        await answer.aclose()


def _error(status: int, code: str, message: str) -> Response:
    body = {"error": {"code": code, "message": message, "hint": None}}
    return Response(json.dumps(body), status_code=status, media_type="application/json")


def _page(status: int, error: str) -> Response:
    text = (STATIC / "login.html").read_text().replace("<!--error-->", html.escape(error))
    return HTMLResponse(text, status_code=status, headers={"Cache-Control": "no-store",
                                                           "X-Frame-Options": "DENY"})
