"""The dashboard under ``/ui/``: static pages that read the native API, the login
that trades the token for a session cookie, and the chart's figures (``/v1/stats``).

The pages are plain HTML, CSS and JavaScript from the package (no build step, no CDN:
the one library, uPlot, is vendored with its licence). They call ``/v1`` as any client
does; what lets them in on a daemon with a token is the cookie, see
:mod:`acjob.server.session` and :mod:`acjob.server.guard`.
"""

from __future__ import annotations

import hmac
import html
import time
from importlib.resources import files
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import parse_qs

from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from .services import Services
from .session import (
    COOKIE_MAX_AGE,
    clear_cookie,
    cookie_name,
    csrf_value,
    foreign_origin,
    session_value,
    set_cookie,
)

#: Where the dashboard's files are, inside the package.
STATIC = Path(str(files("acjob.server") / "static"))

router = APIRouter()


async def _services(request: Request) -> Services:
    # A coroutine: FastAPI runs a plain function dependency in its thread pool.
    svc: Services = request.app.state.services
    return svc


Svc = Annotated[Services, Depends(_services)]

#: Pages are never cached (a new version of acjob serves new ones); no other site may
#: frame them (clickjacking a cancel button), nor may they load anything from elsewhere.
_PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; "
                               "style-src 'self' 'unsafe-inline'; frame-ancestors 'none'; "
                               "base-uri 'none'; form-action 'self'",
    # Not "no-referrer": Chromium then sends "Origin: null" with the page's own form.
    "Referrer-Policy": "same-origin",
    "X-Content-Type-Options": "nosniff",
}


def page(name: str, status: int = 200, error: str = "") -> HTMLResponse:
    """Return one of the dashboard's HTML pages; ``error`` fills its error slot."""
    text = (STATIC / name).read_text()
    text = text.replace("<!--error-->", html.escape(error))
    return HTMLResponse(text, status_code=status, headers=_PAGE_HEADERS)


def session_response(target: str, secret: bytes, port: int | None, *, secure: bool,
                     max_age: int | None) -> Response:
    """Redirect to ``target`` with the session cookie for ``secret`` set."""
    response = RedirectResponse(target, status_code=303, headers={"Cache-Control": "no-store"})
    response.raw_headers.append((b"set-cookie", set_cookie(
        cookie_name(port), session_value(secret), secure=secure, max_age=max_age)))
    return response


def form_field(body: bytes, name: str) -> str:
    """Return one field of a form body (``application/x-www-form-urlencoded``)."""
    values = parse_qs(body.decode("utf-8", "replace"), max_num_fields=8).get(name, [""])
    return values[0]


def _port(request: Request) -> int | None:
    server = request.scope.get("server")
    return server[1] if server else None


@router.get("/ui", include_in_schema=False)
async def ui_root() -> Response:
    """Send ``/ui`` to ``/ui/``."""
    return RedirectResponse("/ui/", status_code=308)


@router.get("/ui/", include_in_schema=False)
async def ui_index() -> Response:
    """The dashboard: the job list, a job's page, the chart (one page, routed by the
    URL's fragment)."""
    return page("index.html")


@router.get("/ui/login", include_in_schema=False)
async def login_form() -> Response:
    """The login form (on a daemon without a token it is never needed)."""
    return page("login.html")


@router.post("/ui/login", include_in_schema=False)
async def login(request: Request, svc: Svc) -> Response:
    """Trade the token, entered in the form, for the session cookie; a wrong token shows
    the form again with an error (401). The token is compared in constant time and
    never logged."""
    if svc.token is None:
        return RedirectResponse("/ui/", status_code=303)
    if foreign_origin(request.scope["headers"]):
        # Another site's page must not log a browser in (login CSRF).
        return page("login.html", 403, "A login from another site's page is refused.")
    presented = form_field(await request.body(), "token").strip().encode()
    if not hmac.compare_digest(presented, svc.token.encode()):
        return page("login.html", 401, "That token is not the daemon's token.")
    return session_response("/ui/", svc.token.encode(), _port(request),
                            secure=request.url.scheme == "https", max_age=COOKIE_MAX_AGE)


@router.post("/ui/logout", include_in_schema=False)
async def logout(request: Request) -> Response:
    """End the browser's session (a state-changing request: it needs the CSRF proof)."""
    response = RedirectResponse("/ui/login", status_code=303)
    response.raw_headers.append((b"set-cookie", clear_cookie(cookie_name(_port(request)))))
    return response


@router.get("/ui/session", include_in_schema=False)
async def session(svc: Svc) -> JSONResponse:
    """Tell the page the CSRF value its state-changing requests send (``X-Acjob-CSRF``),
    and whether there is a session to end. Only a page of this origin can read it."""
    if svc.token is None:
        return JSONResponse({"csrf": "", "login": False}, headers={"Cache-Control": "no-store"})
    return JSONResponse({"csrf": csrf_value(svc.token.encode()), "login": True},
                        headers={"Cache-Control": "no-store"})


@router.get("/v1/stats", tags=["service"])
async def stats(
    svc: Svc,
    window: Annotated[float, Query(ge=60, le=90 * 86400)] = 3600,
    buckets: Annotated[int, Query(ge=1, le=500)] = 60,
    limit: Annotated[int, Query(ge=1, le=500)] = 200,
) -> dict[str, Any]:
    """Jobs by state over the last ``window`` seconds (``history``: ``buckets + 1``
    instants and each state's count at each), and the queue wait and run time of the jobs
    that ended in it (``jobs``, newest first, at most ``limit``)."""
    return svc.store.stats(time.time(), window, buckets, limit)


def install_ui(app: FastAPI) -> None:
    """Add the dashboard's routes and its static files to ``app``."""
    app.include_router(router)
    app.mount("/ui/static", StaticFiles(directory=STATIC), name="ui-static")
