"""The dashboard's browser session: a cookie instead of the token, and proof against
cross-site request forgery.

A browser cannot be made to send ``Authorization: Bearer`` on every request, so the
dashboard trades the token, entered once, for a cookie (``HttpOnly``, so no script reads
it; ``SameSite=Strict``, so no other site's page makes the browser send it). Its value is
derived from the secret (HMAC-SHA256), never the secret itself: a leaked cookie does not
reveal the token, and a new token ends every session.

A request authenticated by the cookie that changes something (any method but ``GET``,
``HEAD`` and ``OPTIONS``) must also carry ``X-Acjob-CSRF`` with the session's CSRF value
(another HMAC of the secret, which the page reads from ``GET /ui/session``; a page of
another origin cannot read it), and, if the browser sends an ``Origin``, that origin must
be the dashboard's own: OWASP's custom request header pattern with a synchronizer token,
plus its check of the standard origin headers. Any state-changing request that comes with
another site's ``Origin`` is refused, whatever its credentials (a browser may attach HTTP
Basic credentials it cached on its own).

Every comparison is in constant time; neither the token nor these values are logged.
"""

from __future__ import annotations

import hashlib
import hmac
from enum import Enum
from urllib.parse import urlsplit

#: The header that carries the CSRF value.
CSRF_HEADER = b"x-acjob-csrf"
#: Methods that change nothing: no CSRF proof asked.
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
#: How long a daemon's cookie lasts (seconds); a new token ends it sooner.
COOKIE_MAX_AGE = 30 * 86400


class Verdict(Enum):
    """What the session check made of a request."""

    #: A valid cookie, and for a state-changing request a valid CSRF proof.
    ALLOWED = "allowed"
    #: No cookie, or not a valid one.
    NO_SESSION = "no_session"
    #: A valid cookie, but a state-changing request without the CSRF proof, or from
    #: another origin.
    FORGERY = "forgery"


def _derive(secret: bytes, purpose: bytes) -> str:
    return hmac.new(secret, b"acjob dashboard " + purpose, hashlib.sha256).hexdigest()


def session_value(secret: bytes) -> str:
    """Return the cookie value that stands for ``secret``."""
    return _derive(secret, b"session v1")


def csrf_value(secret: bytes) -> str:
    """Return the CSRF value a state-changing request sends with the cookie."""
    return _derive(secret, b"csrf v1")


def cookie_name(port: int | None) -> str:
    """Return the session cookie's name on ``port``.

    Cookies are not kept apart by port, so two dashboards on one host (a daemon on
    8750, ``ac dashboard`` on another port) would overwrite each other's cookie under a
    shared name (Jupyter names its cookie by port for the same reason).
    """
    return f"acjob_session_{port}" if port else "acjob_session"


def set_cookie(name: str, value: str, *, secure: bool, max_age: int | None) -> bytes:
    """Return a ``Set-Cookie`` header value: ``HttpOnly``, ``SameSite=Strict``, path
    ``/`` (the page's API calls go to ``/v1``), ``Secure`` over HTTPS."""
    parts = [f"{name}={value}", "Path=/", "HttpOnly", "SameSite=Strict"]
    if max_age is not None:
        parts.append(f"Max-Age={max_age}")
    if secure:
        parts.append("Secure")
    return "; ".join(parts).encode()


def clear_cookie(name: str) -> bytes:
    """Return a ``Set-Cookie`` header value that removes the cookie."""
    return f"{name}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0".encode()


def read_cookie(headers: list[tuple[bytes, bytes]], name: str) -> str | None:
    """Return the value of cookie ``name`` in the request's ``Cookie`` headers, if any."""
    wanted = name.encode()
    for key, value in headers:
        if key != b"cookie":
            continue
        for item in value.split(b";"):
            k, sep, v = item.strip().partition(b"=")
            if sep and k == wanted:
                return v.decode("latin-1")
    return None


def foreign_origin(headers: list[tuple[bytes, bytes]]) -> bool:
    """Tell whether the request comes from a page of another origin: its
    ``Sec-Fetch-Site`` is neither ``same-origin`` nor ``none`` (a user's own action), or,
    from a browser that sends no such header, its ``Origin`` (browsers send one with
    every state-changing request) is not the host and port the request was sent to.

    A request without these headers (curl, the acjob tools) is not foreign.
    """
    found = dict(headers)
    fetch_site = found.get(b"sec-fetch-site")
    if fetch_site is not None:
        # Set by the browser alone (no script can), and exact where Origin may be
        # "null" (a page whose referrer policy withholds it).
        return fetch_site not in (b"same-origin", b"none")
    origin = found.get(b"origin")
    if origin is None:
        return False
    if origin == b"null":
        return True
    try:
        parts = urlsplit(origin.decode("latin-1"))
    except ValueError:
        return True
    host = found.get(b"host", b"").decode("latin-1")
    return parts.netloc.lower() != host.lower() or parts.scheme not in ("http", "https")


def check(headers: list[tuple[bytes, bytes]], method: str, secret: bytes,
          name: str) -> Verdict:
    """Judge a request by its session cookie ``name`` for ``secret``, and for a
    state-changing request by its CSRF proof and origin."""
    presented = (read_cookie(headers, name) or "").encode()
    if not hmac.compare_digest(presented, session_value(secret).encode()):
        return Verdict.NO_SESSION
    if method in SAFE_METHODS:
        return Verdict.ALLOWED
    proof = dict(headers).get(CSRF_HEADER, b"")
    same = hmac.compare_digest(proof, csrf_value(secret).encode())
    if not same or foreign_origin(headers):
        return Verdict.FORGERY
    return Verdict.ALLOWED
