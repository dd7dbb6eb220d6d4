"""The client's core, free of I/O: effects, the job snapshot, backoff, stdin chunks.

Every client operation is written once, in :mod:`.plans`, as a *plan*: a generator
that yields *effects* (make a request, open a stream, pull its next chunk, hand a
chunk to the caller, sleep, read stdin) and receives each effect's result; a failure
is thrown into it where the effect was yielded. The plans hold the whole protocol
and its policy (retries, backoff, resumption); the drivers in :mod:`.sync` and
:mod:`.aio` only perform effects (with h11 on sockets, and httpx), so the two clients
cannot drift apart.
This is the sans-I/O style of h11 and httpx.
"""

from __future__ import annotations

import enum
import json
import os
import time
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, Literal, NamedTuple, TypeAlias, TypeVar

from ..errors import AcjobError, ConnectionFailed, TransientError, error_from_response
from ..locations import DEFAULT_RETRY_FOR_S, config_path, parse_endpoint, private_socket, retry_for
from ..states import FailureKind, State

if TYPE_CHECKING:
    from ..progress import Progress

Which = Literal["stdout", "stderr"]

_BACKOFF_START = 0.1
_BACKOFF_MAX = 5.0

T = TypeVar("T")


# -- effects ----------------------------------------------------------------------------

# The effects, the answer and the other values internal to the client are named tuples:
# immutable as frozen dataclasses, and made eight times as fast, which every start of
# ``acjob`` pays for. The public snapshot, JobInfo, stays a dataclass.


class Timeout(enum.Enum):
    """Timeouts other than a number of seconds."""

    CLIENT = "client"
    """The ``timeout`` the client was made with."""


class Streamed(NamedTuple):
    """A request body sent as it is produced: ``chunks`` may block (reading stdin), so
    an event loop iterates it in a thread."""

    chunks: Iterator[bytes]


class Call(NamedTuple):
    """Make one request; the answer is its :class:`Response`, body read whole.

    ``timeout`` is in seconds, ``None`` for none, or :attr:`Timeout.CLIENT`.
    """

    method: str
    path: str
    params: Mapping[str, Any] | None = None
    json: Any = None
    content: bytes | Streamed | None = None
    headers: Mapping[str, str] | None = None
    timeout: float | Timeout | None = Timeout.CLIENT


class Open(NamedTuple):
    """Send a GET whose body is then read by :class:`Pull`; the answer is its
    :class:`Response` with an empty body. A stream opened before is closed first.

    ``timeout`` bounds all but the wait for body bytes, which is unbounded: a job may
    be silent for hours.
    """

    path: str
    params: Mapping[str, Any]
    timeout: float = 30.0


class Pull(NamedTuple):
    """Read the next raw chunk of the open stream; the answer is ``b""`` at its end
    (the stream is then closed)."""


class Ended(NamedTuple):
    """Ask what the stream that just ended knew of its job at its end: the job's JSON
    when the stream ended because the job was over (final, or a newer attempt
    started), else ``None`` (an HTTP stream does not say; the plan then asks)."""


class Emit(NamedTuple):
    """Hand ``data`` to the caller (only a streaming operation emits); no answer."""

    data: bytes


class Sleep(NamedTuple):
    """Wait ``seconds``; no answer."""

    seconds: float


class ReadStdin(NamedTuple):
    """Read the next upload chunk, ``next(chunks, None)``: it may block on a file or
    pipe, so an event loop reads it in a thread."""

    chunks: Iterator[tuple[bytes, bool]]


class Block(NamedTuple):
    """Call ``function()``, which may block (the first read of a live stdin): an event
    loop calls it in a thread. The answer is what it returns."""

    function: Callable[[], Any]


Effect: TypeAlias = Call | Open | Pull | Ended | Emit | Sleep | ReadStdin | Block
Plan: TypeAlias = Generator[Effect, Any, T]


class Response(NamedTuple):
    """A daemon's answer: status, headers (looked up by lower-case name) and body."""

    status: int
    headers: Mapping[str, str]
    body: bytes = b""


class TransportError(Exception):
    """The connection failed before a whole answer came (refused, reset, timed out).

    Drivers throw this into a plan in place of their HTTP library's error, which is
    kept as ``__cause__``.
    """


# Failures that the same request may not meet again.
RETRIABLE = (TransportError, TransientError)


def call(effect: Call) -> Generator[Effect, Any, Response]:
    """Yield ``effect`` and return its answer, typed (``yield from call(...)``)."""
    response: Response = yield effect
    return response


def open_stream(effect: Open) -> Generator[Effect, Any, Response]:
    """Yield ``effect`` and return its answer, typed."""
    response: Response = yield effect
    return response


def pull() -> Generator[Effect, Any, bytes]:
    """Yield :class:`Pull` and return the chunk (``b""`` at the end)."""
    chunk: bytes = yield Pull()
    return chunk


def read_stdin(chunks: Iterator[tuple[bytes, bool]]) -> Generator[
    Effect, Any, tuple[bytes, bool] | None
]:
    """Yield :class:`ReadStdin` and return the chunk and whether it is the last."""
    item: tuple[bytes, bool] | None = yield ReadStdin(chunks)
    return item


class Run(Generic[T]):
    """Steps one plan for a driver: hands out its effects, takes back their outcomes.

    A driver loops ``while (effect := run.next()) is not None``, performing each
    effect and reporting it with :meth:`send` or :meth:`throw`; once ``next`` returns
    ``None``, :attr:`result` holds what the plan returned. An error the plan does not
    handle propagates out of :meth:`next`.
    """

    def __init__(self, plan: Plan[T]) -> None:
        self._plan = plan
        self._reply: Any = None
        self._error: Exception | None = None
        self.result: T

    def next(self) -> Effect | None:
        """Resume the plan with the last outcome; return its next effect, or ``None``."""
        reply, error = self._reply, self._error
        self._reply, self._error = None, None
        try:
            if error is not None:
                return self._plan.throw(error)
            return self._plan.send(reply)
        except StopIteration as done:
            self.result = done.value
            return None

    def send(self, reply: Any) -> None:
        """Record the answer to the current effect."""
        self._reply = reply

    def throw(self, error: Exception) -> None:
        """Record that the current effect failed with ``error``."""
        self._error = error

    def close(self) -> None:
        """Abandon the plan (its ``finally`` clauses run)."""
        self._plan.close()


def error_of(response: Response) -> AcjobError:
    """Return the error an answer of status 400 or more stands for."""
    try:
        body = json.loads(response.body)["error"]
        message, hint, code = body["message"], body.get("hint"), body.get("code")
    except (ValueError, KeyError, TypeError):
        message, hint, code = f"HTTP {response.status}", None, None
    return error_from_response(response.status, message, hint, code)


# -- what the plans work with -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class JobInfo:
    """A snapshot of a job, as the daemon described it.

    Attributes:
        id: The job id.
        state: Its state.
        exit_code: The command's exit status once it ran (``None`` before).
        reason: Why it is in this state, for people (``None`` if nothing to say).
        attempt: The current attempt number (0 before the first).
        seq: The sequence number of its latest event.
        data: The whole JSON document.
    """

    id: str
    state: State
    exit_code: int | None
    reason: str | None
    attempt: int
    seq: int
    data: Mapping[str, Any]

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> JobInfo:
        """Build from the API's JSON form."""
        return cls(id=data["id"], state=State(data["state"]), exit_code=data.get("exit_code"),
                   reason=data.get("reason"), attempt=data.get("attempt", 0),
                   seq=data.get("seq", 0), data=data)

    @property
    def is_final(self) -> bool:
        """True once the job will not change any more."""
        return self.state.is_final

    @property
    def progress(self) -> Progress | None:
        """What the job's current attempt last reported of its progress (``None``
        before it reported any, or from a daemon that does not say)."""
        from ..progress import Progress  # loaded by those who ask for progress only

        return Progress.from_json(self.data.get("progress"), self.attempt)

    @property
    def failure(self) -> FailureKind | None:
        """Why a job that ended in ``EXECUTOR_ERROR`` or ``SYSTEM_ERROR`` failed
        (``timeout`` for its time limit); ``None`` otherwise, or from a daemon that does
        not say."""
        value = self.data.get("failure")
        try:
            return FailureKind(value) if isinstance(value, str) else None
        except ValueError:  # a kind this client does not know yet
            return None


class ServerEvent(NamedTuple):
    """One server-sent event: its ``event`` name, ``id`` (``None`` if it has none) and
    ``data`` (the data lines joined)."""

    event: str
    id: str | None
    data: str


class EventParser:
    """Splits a ``text/event-stream`` body into events, whatever its chunks."""

    def __init__(self) -> None:
        self._buffer = b""
        self._event = "message"
        self._id: str | None = None
        self._data: list[str] = []

    def feed(self, chunk: bytes) -> list[ServerEvent]:
        """Take the next bytes of the stream; return the events they complete."""
        self._buffer += chunk
        events: list[ServerEvent] = []
        *lines, self._buffer = self._buffer.split(b"\n")
        for raw in lines:
            line = raw.decode("utf-8", errors="replace").removesuffix("\r")
            if not line:
                if self._data:
                    events.append(ServerEvent(self._event, self._id, "\n".join(self._data)))
                self._event, self._id, self._data = "message", None, []
                continue
            if line.startswith(":"):
                continue  # a comment (keep-alive)
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "event":
                self._event = value
            elif name == "data":
                self._data.append(value)
            elif name == "id":
                self._id = value
        return events


def progress_of(emitted: bytes) -> Progress | None:
    """Return the progress in one item emitted by the ``progress`` plan."""
    from ..progress import Progress

    data = json.loads(emitted)
    attempt = data.get("attempt")
    return Progress.from_json(data.get("progress"),
                              attempt if isinstance(attempt, int) else None)


class JobOptions(NamedTuple):
    """The optional fields of a job spec, as :meth:`Client.submit` takes them."""

    env: Mapping[str, str] | None = None
    workdir: str | None = None
    backend: str | None = None
    resources: Mapping[str, Any] | None = None
    retry: Mapping[str, Any] | None = None
    labels: Mapping[str, str] | None = None
    name: str | None = None
    deliveries: Iterable[Mapping[str, str]] | None = None

    def body(self, command: str | list[str], has_stdin: bool) -> dict[str, Any]:
        """Return the JSON body of ``POST /v1/jobs``; empty and unset fields are left
        out, so the daemon's defaults apply."""
        fields: dict[str, Any] = {
            "env": dict(self.env) if self.env else None, "workdir": self.workdir,
            "backend": self.backend,
            "resources": dict(self.resources) if self.resources else None,
            "retry": dict(self.retry) if self.retry else None,
            "labels": dict(self.labels) if self.labels else None, "name": self.name,
            "deliveries": [dict(d) for d in self.deliveries] if self.deliveries else None,
        }
        body: dict[str, Any] = {"command": command, "stdin": "upload" if has_stdin else "none"}
        body.update({k: v for k, v in fields.items() if v is not None})
        return body


class Target(NamedTuple):
    """Where a client sends its requests.

    Attributes:
        base_url: The URL requests are relative to.
        transport_uds: The Unix socket to connect to, if any.
        token: The bearer token, if any.
        autostart: The private daemon's socket, when the client starts it on demand.
        where: The daemon's address, for people (``unix:/path`` or ``http://host:port``).
        retry_for: How many seconds a call waits for an unreachable daemon, unless the
            client is told otherwise.
    """

    base_url: str
    transport_uds: str | None
    token: str | None
    autostart: str | None
    where: str = "the acjob daemon"
    retry_for: float = DEFAULT_RETRY_FOR_S

    @property
    def headers(self) -> dict[str, str]:
        """Headers sent with every request."""
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}


def resolve(url: str | None, token: str | None, autostart: bool = True) -> Target:
    """Find the daemon as the command-line tools do: ``url``, ``ACJOB_URL``, the
    configuration file, else the private per-user daemon; and how long to wait for it:
    ``ACJOB_RETRY_FOR``, else ``[client] retry_for``, else a minute.

    Raises:
        ConfigError: the configuration file, the URL or ``ACJOB_RETRY_FOR`` is invalid.
    """
    configured_url = configured_token = None
    configured_wait: float | None = None
    if config_path() is not None:
        # Only with a file to read: its schema is the one heavy import of a client.
        from ..config import load_config

        config = load_config()
        configured_url = config.client.url or config.server.listen
        configured_token = config.client.token or config.server.token
        configured_wait = config.client.retry_for
    text = url or os.environ.get("ACJOB_URL") or configured_url
    token = token or os.environ.get("ACJOB_TOKEN") or configured_token
    wait = retry_for(configured_wait)
    if not text:
        path = private_socket()
        return Target("http://acjob", path, token, path if autostart else None,
                      f"unix:{path}", wait)
    endpoint = parse_endpoint(text)
    if endpoint.unix is not None:
        return Target("http://acjob", endpoint.unix, token, None, endpoint.url, wait)
    return Target(endpoint.url, None, token, None, endpoint.url, wait)


class Backoff:
    """Capped exponential delays between tries, until a deadline.

    Starts at 0.1 s and doubles up to 5 s; gives up once the next delay would end
    past ``retry_for`` seconds from the start (or the last :meth:`reset`).
    """

    def __init__(self, retry_for: float) -> None:
        self.deadline = time.monotonic() + retry_for
        self.delay = _BACKOFF_START
        self.retry_for = retry_for

    def next(self, error: Exception) -> float:
        """Return how long to wait before trying again after ``error``.

        Raises:
            AcjobError: ``error`` itself when it is one and time is up.
            ConnectionFailed: time is up after a transport error.
        """
        if time.monotonic() + self.delay > self.deadline:
            if isinstance(error, AcjobError):
                raise error
            tried = f" (tried for {self.retry_for:g} s)" if self.retry_for > 0 else ""
            raise ConnectionFailed(
                f"cannot reach the acjob daemon at {error}{tried}",
                hint="check that it runs (ac serve) and that ACJOB_URL points at it; "
                     "ACJOB_RETRY_FOR sets how long to wait",
            ) from error
        delay, self.delay = self.delay, min(self.delay * 2, _BACKOFF_MAX)
        return delay

    def reset(self, retry_for: float) -> None:
        """Start over: a full ``retry_for`` from now, the shortest delay first."""
        self.deadline = time.monotonic() + retry_for
        self.delay = _BACKOFF_START
        self.retry_for = retry_for
