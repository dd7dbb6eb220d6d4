"""Blocking HTTP/1.1 to the daemon, on the standard library's :mod:`http.client`.

The synchronous client needs plain HTTP over a Unix socket or TCP and nothing more
(TLS belongs to a reverse proxy in front of the daemon). :mod:`http.client` is loaded in
a few milliseconds, where a full HTTP library takes a tenth of a second: a cost every
run of a command-line tool, and every worker of a web service, would pay.

Each thread gets a connection of its own that is kept alive between requests, so one
:class:`Connections` may serve many threads; a stream gets a fresh connection that is
closed with it.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import threading
from collections.abc import Callable, Iterator, Mapping
from typing import Any
from urllib.parse import urlencode, urlsplit

from .core import Response
from .handoff import HandedStream, open_handed

#: What a failing connection raises here: the socket's errors and the protocol's.
CONNECTION_ERRORS = (OSError, http.client.HTTPException)

#: The errors of a kept-alive connection that the daemon closed while it was idle: the
#: request never reached it, so it is sent again at once on a new connection.
_STALE = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError,
          ConnectionAbortedError)

#: A stream's body is read in pieces of at most this size.
READ_SIZE = 1 << 16


class UnixConnection(http.client.HTTPConnection):
    """An HTTP connection over a Unix socket (the ``Host`` header names no machine)."""

    def __init__(self, path: str, timeout: float | None) -> None:
        super().__init__("acjob", timeout=timeout)
        self.socket_path = path

    def connect(self) -> None:
        """Connect to the socket, within the connection's timeout."""
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(self.timeout)
            sock.connect(self.socket_path)
        except BaseException:
            sock.close()
            raise
        self.sock = sock


class Stream:
    """The body of one answer, read as it arrives, on a connection of its own.

    Attributes:
        status: The answer's status.
        headers: Its headers, by lower-case name.
    """

    def __init__(self, response: http.client.HTTPResponse,
                 close: Callable[[], None]) -> None:
        self._response = response
        self._close = close
        self.status = response.status
        self.headers = _headers(response)

    def read(self) -> bytes:
        """Return the next piece of the body as soon as some arrived; ``b""`` at its end.

        The wait for bytes is unbounded: a job may be silent for hours.
        """
        return self._response.read1(READ_SIZE)

    def close(self) -> None:
        """Close the stream and its connection."""
        self._close()


class Connections:
    """Requests to one daemon, on kept-alive connections (one per thread).

    Args:
        base_url: ``http://host:port`` of a TCP daemon (or any URL when ``uds`` is set).
        uds: The Unix socket to connect to, if any.
        headers: Sent with every request (the token).
        timeout: Seconds for an answer unless a request says otherwise.

    Attributes:
        uds: The Unix socket, if any.
        handoff: Over a Unix socket, read a job's output from the file the daemon hands
            over rather than from an HTTP stream, and let :class:`~.sync.Client` write
            a piped stdin into the job's file likewise (True; the bytes are the same).
    """

    def __init__(self, base_url: str, uds: str | None, headers: Mapping[str, str],
                 timeout: float | None) -> None:
        url = urlsplit(base_url)
        self._host, self._port = url.hostname or "localhost", url.port
        self._prefix = url.path.rstrip("/")
        self.uds = uds
        self._headers = dict(headers)
        self.timeout = timeout
        self._local = threading.local()
        self._lock = threading.Lock()
        self._open: set[http.client.HTTPConnection] = set()
        self.handoff = True

    def _connect(self, timeout: float | None) -> http.client.HTTPConnection:
        connection: http.client.HTTPConnection = (
            UnixConnection(self.uds, timeout) if self.uds is not None
            else http.client.HTTPConnection(self._host, self._port, timeout=timeout))
        with self._lock:
            self._open.add(connection)
        return connection

    def _forget(self, connection: http.client.HTTPConnection) -> None:
        connection.close()
        with self._lock:
            self._open.discard(connection)

    def request(self, method: str, path: str, *, params: Mapping[str, Any] | None = None,
                json_body: Any = None, content: bytes | Iterator[bytes] | None = None,
                headers: Mapping[str, str] | None = None,
                timeout: float | None = None) -> Response:
        """Make a request and read its whole answer.

        ``content`` may be an iterator of chunks, sent with chunked encoding as it is
        produced. A kept-alive connection found closed by the daemon is replaced, and
        the request (when its body can be sent again) sent once more at once.

        Raises:
            OSError, http.client.HTTPException: the connection failed.
        """
        target = self._target(path, params)
        body, sent_headers = self._body(json_body, content, headers)
        connection: http.client.HTTPConnection | None = getattr(self._local, "connection", None)
        reused = connection is not None
        while True:
            if connection is None:
                connection = self._connect(timeout)
                self._local.connection = connection
            else:
                connection.timeout = timeout
                if connection.sock is not None:
                    connection.sock.settimeout(timeout)
            try:
                connection.request(method, target, body=body, headers=sent_headers)
                answer = connection.getresponse()
                data = answer.read()
            except _STALE:
                self._forget(connection)
                self._local.connection = connection = None
                if reused and not isinstance(body, Iterator):
                    reused = False
                    continue
                raise
            except BaseException:
                self._forget(connection)
                self._local.connection = None
                raise
            if answer.will_close:
                self._forget(connection)
                self._local.connection = None
            return Response(answer.status, _headers(answer), data)

    def stream(self, path: str, params: Mapping[str, Any],
               timeout: float | None) -> Stream | HandedStream:
        """Send a GET on a new connection and return its answer, body unread.

        ``timeout`` bounds the connection and the wait for the answer's head; the body
        is then awaited without limit. Over a Unix socket, a job's output is read from
        the file the daemon hands over, where it can (:mod:`acjob.client.handoff`).

        Raises:
            OSError, http.client.HTTPException: the connection failed.
        """
        if self.uds is not None and self.handoff:
            handed = open_handed(self.uds, path, params, self.request)
            if handed is not None:
                return handed
        connection = self._connect(timeout)
        try:
            connection.request("GET", self._target(path, params), headers=self._headers)
            answer = connection.getresponse()
            if connection.sock is not None:
                connection.sock.settimeout(None)
        except BaseException:
            self._forget(connection)
            raise
        return Stream(answer, lambda: self._forget(connection))

    def close(self) -> None:
        """Close every connection, kept-alive and streaming, of every thread.

        A thread blocked reading one of them is woken (it reads the end of the stream)
        rather than left holding it: the socket is shut down before it is closed.
        """
        with self._lock:
            connections, self._open = self._open, set()
        for connection in connections:
            if connection.sock is not None:
                with contextlib.suppress(OSError):
                    connection.sock.shutdown(socket.SHUT_RDWR)
            connection.close()

    def _target(self, path: str, params: Mapping[str, Any] | None) -> str:
        target = self._prefix + path
        if params:
            target += "?" + urlencode({k: _text(v) for k, v in params.items() if v is not None},
                                      doseq=True)
        return target

    def _body(self, json_body: Any, content: bytes | Iterator[bytes] | None,
              headers: Mapping[str, str] | None,
              ) -> tuple[bytes | Iterator[bytes] | None, dict[str, str]]:
        sent = dict(self._headers)
        if headers:
            sent.update(headers)
        if json_body is not None:
            sent["Content-Type"] = "application/json"
            return json.dumps(json_body, separators=(",", ":")).encode(), sent
        # http.client sends an iterator with chunked encoding, bytes with their length.
        return (b"" if content is None else content), sent


def _text(value: Any) -> Any:
    """Spell a query value as the daemon reads it (``true``, not ``True``)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return [_text(v) for v in value]
    return value


def _headers(answer: http.client.HTTPResponse) -> dict[str, str]:
    """Return an answer's headers by lower-case name."""
    return {name.lower(): value for name, value in answer.getheaders()}
