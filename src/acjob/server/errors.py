"""Every error leaves as JSON: ``{"error": {"code", "message", "hint"}}``.

A 4xx for anything the client can fix; a 500 only for a bug in acjob, logged with its
traceback and never shown to the client.
"""

from __future__ import annotations

import errno
import logging
import sqlite3
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Route

from ..errors import AcjobError, StorageFull
from ..model import describe_errors

log = logging.getLogger("acjob.server")


def error_body(code: str, message: str, hint: str | None = None) -> dict[str, Any]:
    """Return the JSON body of an error response."""
    return {"error": {"code": code, "message": message, "hint": hint}}


class Status400Route(APIRoute):
    """A route whose invalid input is a 400, not FastAPI's 422 (TES asks for 400)."""

    validation_status = 400


def install_error_handlers(app: FastAPI) -> None:
    """Make every error of ``app`` a JSON error body with the right status."""

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
        # A route may answer invalid input with another status (TES says 400).
        route = request.scope.get("route")
        status = getattr(route, "validation_status", 422)
        return JSONResponse(body, status_code=status)

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
