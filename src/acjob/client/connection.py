"""Blocking HTTP/1.1 to the daemon: plain sockets, framed by :mod:`h11`.

The synchronous client needs plain HTTP over a Unix socket or TCP and nothing more
(TLS belongs to a reverse proxy in front of the daemon). h11 (the HTTP/1.1 state
machine under httpx and uvicorn) parses and frames the messages; this module owns the
sockets. Both load in a few milliseconds, where a full HTTP library takes a tenth of a
second, and the standard library's ``http.client`` (with the ``email`` parser and
``ssl`` it loads) twice as long as this: a cost every run of a command-line tool, and
every worker of a web service, would pay.

Each thread gets a connection of its own that is kept alive between requests, so one
:class:`Connections` may serve many threads; a stream gets a fresh connection that is
closed with it.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import h11

from .core import Response
from .handoff import HandedStream, open_handed

#: What a failing connection raises here: the socket's errors and the protocol's.
CONNECTION_ERRORS = (OSError, h11.ProtocolError)

#: A stream's body is read in pieces of at most this size.
READ_SIZE = 1 << 16


class Disconnected(ConnectionError):
    """The daemon closed the connection before it answered."""


class Wire:
    """One HTTP/1.1 connection: its socket and h11's state of it.

    Args:
        sock: The connected socket (its timeout is the wire's).
        host: The ``Host`` header sent with each request.
    """

    def __init__(self, sock: socket.socket, host: str) -> None:
        self.sock = sock
        self.host = host
        self.http = h11.Connection(h11.CLIENT)
        self.closed = False

    def send_request(self, method: str, target: str, headers: Mapping[str, str],
                     body: bytes | Iterator[bytes]) -> None:
        """Send a request: ``bytes`` with their length, an iterator of chunks with
        chunked encoding as they are produced.

        Raises:
            OSError: the socket failed.
            h11.LocalProtocolError: the request cannot be framed.
        """
        fields = [("Host", self.host), *headers.items()]
        if isinstance(body, bytes):
            if body or method in ("POST", "PUT", "PATCH"):
                fields.append(("Content-Length", str(len(body))))
            head = self.http.send(h11.Request(method=method, target=target, headers=fields))
            tail = self.http.send(h11.Data(data=body)) if body else b""
            # One write for head, body and end: no small packets waiting on each other.
            self.sock.sendall(b"".join((head or b"", tail or b"",
                                        self.http.send(h11.EndOfMessage()) or b"")))
            return
        fields.append(("Transfer-Encoding", "chunked"))
        self.sock.sendall(self.http.send(
            h11.Request(method=method, target=target, headers=fields)) or b"")
        for chunk in body:
            if chunk:
                self.sock.sendall(self.http.send(h11.Data(data=chunk)) or b"")
        self.sock.sendall(self.http.send(h11.EndOfMessage()) or b"")

    def read_head(self) -> h11.Response:
        """Return the answer's status and headers (interim answers skipped).

        Raises:
            Disconnected: the daemon closed the connection first.
            OSError, h11.RemoteProtocolError: the socket failed, or the answer is not HTTP.
        """
        while True:
            event = self._next()
            if isinstance(event, h11.Response):
                return event

    def read_some(self) -> bytes:
        """Return the next bytes of the answer's body as soon as some arrived; ``b""``
        at its end.

        Raises:
            OSError, h11.RemoteProtocolError: the socket failed, or the body was cut.
        """
        while True:
            event = self._next()
            if isinstance(event, h11.Data):
                if event.data:
                    return bytes(event.data)
            elif isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
                return b""

    def finish(self) -> bool:
        """Get ready for the next request; return False if the connection cannot take
        one (the daemon said it closes it) and was closed."""
        if self.http.our_state is h11.DONE and self.http.their_state is h11.DONE:
            self.http.start_next_cycle()
            return True
        self.close()
        return False

    def close(self) -> None:
        """Close the socket; a thread blocked reading it is woken (it reads the end)."""
        self.closed = True
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()

    def _next(self) -> Any:
        while True:
            event = self.http.next_event()
            if event is not h11.NEED_DATA:
                return event
            data = self.sock.recv(READ_SIZE)
            if not data and self.http.their_state is h11.SEND_RESPONSE:
                raise Disconnected("the daemon closed the connection without an answer")
            self.http.receive_data(data)


class Stream:
    """The body of one answer, read as it arrives, on a connection of its own.

    Attributes:
        status: The answer's status.
        headers: Its headers, by lower-case name.
    """

    def __init__(self, wire: Wire, head: h11.Response, connections: Connections) -> None:
        self._wire = wire
        self._connections = connections
        self.status = head.status_code
        self.headers = _headers(head)

    def read(self) -> bytes:
        """Return the next piece of the body as soon as some arrived; ``b""`` at its end.

        The wait for bytes is unbounded: a job may be silent for hours.
        """
        return self._wire.read_some()

    def close(self) -> None:
        """Close the stream and its connection."""
        self._connections.forget(self._wire)


class Connections:
    """Requests to one daemon, on kept-alive connections (one per thread).

    Args:
        base_url: ``http://host:port`` of a TCP daemon (or any URL when ``uds`` is set).
        uds: The Unix socket to connect to, if any.
        headers: Sent with every request (the token).
        timeout: Seconds for an answer unless a request says otherwise.
        start: Called when nothing listens on ``uds`` (no such socket, or refused), to
            start the daemon there; the connection is then tried once more.

    Attributes:
        uds: The Unix socket, if any.
        handoff: Over a Unix socket, read a job's output from the file the daemon hands
            over rather than from an HTTP stream, and let :class:`~.sync.Client` write
            a piped stdin into the job's file likewise (True; the bytes are the same).
    """

    def __init__(self, base_url: str, uds: str | None, headers: Mapping[str, str],
                 timeout: float | None, start: Callable[[], None] | None = None) -> None:
        self._address = ("localhost", 80)
        self._host, self._prefix = "acjob", ""
        if uds is None:
            # urllib.parse (with ipaddress) is a few milliseconds of a start: only TCP needs it.
            from urllib.parse import urlsplit

            url = urlsplit(base_url)
            self._address = (url.hostname or "localhost", url.port or 80)
            self._host, self._prefix = url.netloc, url.path.rstrip("/")
        self.uds = uds
        self._headers = dict(headers)
        self.timeout = timeout
        self._local = threading.local()
        self._lock = threading.Lock()
        self._open: set[Wire] = set()
        self._start = start
        self.handoff = True

    def _connect(self, timeout: float | None) -> Wire:
        if self.uds is not None:
            try:
                sock = _connect_unix(self.uds, timeout)
            except (FileNotFoundError, ConnectionRefusedError):
                if self._start is None:
                    raise
                self._start()
                sock = _connect_unix(self.uds, timeout)
        else:
            sock = socket.create_connection(self._address, timeout)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        wire = Wire(sock, self._host)
        with self._lock:
            self._open.add(wire)
        return wire

    def forget(self, wire: Wire) -> None:
        """Close ``wire`` and stop tracking it."""
        wire.close()
        with self._lock:
            self._open.discard(wire)

    def request(self, method: str, path: str, *, params: Mapping[str, Any] | None = None,
                json_body: Any = None, content: bytes | Iterator[bytes] | None = None,
                headers: Mapping[str, str] | None = None,
                timeout: float | None = None) -> Response:
        """Make a request and read its whole answer.

        ``content`` may be an iterator of chunks, sent with chunked encoding as it is
        produced. A kept-alive connection found closed by the daemon is replaced, and
        the request (when its body can be sent again) sent once more at once.

        Raises:
            OSError, h11.ProtocolError: the connection failed.
        """
        target = self._target(path, params)
        body, sent_headers = self._body(json_body, content, headers)
        wire: Wire | None = getattr(self._local, "wire", None)
        reused = wire is not None
        while True:
            if wire is None:
                wire = self._connect(timeout)
                self._local.wire = wire
            else:
                wire.sock.settimeout(timeout)
            try:
                wire.send_request(method, target, sent_headers, body)
                head = wire.read_head()
                data = b"".join(iter(wire.read_some, b""))
            except (Disconnected, BrokenPipeError, ConnectionResetError,
                    ConnectionAbortedError):
                # A kept-alive connection the daemon closed while it was idle: the
                # request never reached it.
                self.forget(wire)
                self._local.wire = wire = None
                if reused and not isinstance(body, Iterator):
                    reused = False
                    continue
                raise
            except BaseException:
                self.forget(wire)
                self._local.wire = None
                raise
            if not wire.finish():
                self.forget(wire)
                self._local.wire = None
            return Response(head.status_code, _headers(head), data)

    def stream(self, path: str, params: Mapping[str, Any],
               timeout: float | None) -> Stream | HandedStream:
        """Send a GET on a new connection and return its answer, body unread.

        ``timeout`` bounds the connection and the wait for the answer's head; the body
        is then awaited without limit. Over a Unix socket, a job's output is read from
        the file the daemon hands over, where it can (:mod:`acjob.client.handoff`).

        Raises:
            OSError, h11.ProtocolError: the connection failed.
        """
        if self.uds is not None and self.handoff:
            handed = open_handed(self.uds, path, params, self.request)
            if handed is not None:
                return handed
        wire = self._connect(timeout)
        try:
            wire.send_request("GET", self._target(path, params), self._headers, b"")
            head = wire.read_head()
            wire.sock.settimeout(None)
        except BaseException:
            self.forget(wire)
            raise
        return Stream(wire, head, self)

    def close(self) -> None:
        """Close every connection, kept-alive and streaming, of every thread.

        A thread blocked reading one of them is woken (it reads the end of the stream)
        rather than left holding it: the socket is shut down before it is closed.
        """
        with self._lock:
            wires, self._open = self._open, set()
        for wire in wires:
            wire.close()

    def _target(self, path: str, params: Mapping[str, Any] | None) -> str:
        target = self._prefix + path
        if params:
            target += "?" + _query({k: _text(v) for k, v in params.items() if v is not None})
        return target

    def _body(self, json_body: Any, content: bytes | Iterator[bytes] | None,
              headers: Mapping[str, str] | None,
              ) -> tuple[bytes | Iterator[bytes], dict[str, str]]:
        sent = dict(self._headers)
        if headers:
            sent.update(headers)
        if json_body is not None:
            sent["Content-Type"] = "application/json"
            return json.dumps(json_body, separators=(",", ":")).encode(), sent
        if content is None or isinstance(content, Iterator):
            return (b"" if content is None else content), sent
        return bytes(content), sent


def _connect_unix(path: str, timeout: float | None) -> socket.socket:
    """Return a socket connected to ``path``, within ``timeout``."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        sock.connect(path)
    except BaseException:
        sock.close()
        raise
    return sock


def _query(params: Mapping[str, Any]) -> str:
    """Encode a query string as ``urlencode(params, doseq=True)`` does (the keys are
    the plans' own plain names).

    Numbers and the words ``true``/``false`` are written as they are (nothing in them
    needs quoting), so the hot path (a wait, an upload's offset) does without
    urllib.parse, a few milliseconds of a start; anything else goes through it.
    """
    if all(isinstance(v, int | float) or v in ("true", "false") for v in params.values()):
        return "&".join(f"{k}={v}" for k, v in params.items())
    from urllib.parse import urlencode

    return urlencode(params, doseq=True)


def _text(value: Any) -> Any:
    """Spell a query value as the daemon reads it (``true``, not ``True``)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return [_text(v) for v in value]
    return value


def _headers(head: h11.Response) -> dict[str, str]:
    """Return an answer's headers by lower-case name (h11 gives them lower-case)."""
    return {name.decode("latin-1"): value.decode("latin-1") for name, value in head.headers}
