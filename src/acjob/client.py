"""The Python client: submit a job in one call, then ask its handle for the rest.

```python
import acjob

with acjob.Client() as client:
    job = client.submit("sort", stdin=b"b\\na\\n")
    info = job.wait()
    print(info.state, b"".join(job.stdout()))
```

:class:`Client` is synchronous, :class:`AsyncClient` its ``async`` twin. Both find
the daemon as the command-line tools do (``url`` argument, ``ACJOB_URL``, the
configuration file, else the private per-user daemon, started on demand), retry
on lost connections with capped backoff, and resume streams and uploads at the byte
offset they had reached: nothing is lost or repeated.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Literal

import httpx

from .config import load_config, parse_endpoint, private_socket
from .errors import (
    AcjobError,
    Conflict,
    ConnectionFailed,
    Gone,
    InvalidRequest,
    NotFound,
    PayloadTooLarge,
    PermanentError,
    TransientError,
    Unauthorized,
)
from .model import State
from .private import ensure_private_daemon

Stdin = bytes | str | Path | IO[bytes] | Iterable[bytes] | None
Which = Literal["stdout", "stderr"]

UPLOAD_CHUNK = 8 << 20
_BACKOFF_START = 0.1
_BACKOFF_MAX = 5.0

_ERRORS: dict[int, type[AcjobError]] = {
    400: InvalidRequest, 401: Unauthorized, 404: NotFound, 409: Conflict, 410: Gone,
    413: PayloadTooLarge, 422: InvalidRequest,
}


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


@dataclass(frozen=True, slots=True)
class _Target:
    base_url: str
    transport_uds: str | None
    token: str | None
    autostart: Path | None


def _resolve(url: str | None, token: str | None, autostart: bool = True) -> _Target:
    config = load_config()
    text = url or os.environ.get("ACJOB_URL") or config.client.url or config.server.listen
    token = (token or os.environ.get("ACJOB_TOKEN") or config.client.token
             or config.server.token)
    if not text:
        path = private_socket()
        return _Target("http://acjob", str(path), token, path if autostart else None)
    endpoint = parse_endpoint(text)
    if endpoint.unix is not None:
        return _Target("http://acjob", str(endpoint.unix), token, None)
    return _Target(endpoint.url, None, token, None)


def _error_from(response: httpx.Response) -> AcjobError:
    try:
        body = response.json()["error"]
        message, hint, code = body["message"], body.get("hint"), body.get("code")
    except (ValueError, KeyError, TypeError):
        message, hint, code = f"HTTP {response.status_code}", None, None
    if response.status_code >= 500:
        return TransientError(message, hint=hint, code=code)
    kind = _ERRORS.get(response.status_code, PermanentError)
    return kind(message, hint=hint, code=code)


def _job_body(command: str | list[str], has_stdin: bool, options: Mapping[str, Any]) -> dict[
    str, Any
]:
    body: dict[str, Any] = {"command": command, "stdin": "upload" if has_stdin else "none"}
    body.update({k: v for k, v in options.items() if v is not None})
    return body


def _chunks(stdin: Stdin) -> Iterator[bytes]:
    """Yield stdin in upload-sized chunks, whatever form it was given in."""
    if stdin is None:
        return
    if isinstance(stdin, str):
        stdin = stdin.encode()
    if isinstance(stdin, bytes):
        for start in range(0, len(stdin), UPLOAD_CHUNK):
            yield stdin[start:start + UPLOAD_CHUNK]
        return
    if isinstance(stdin, Path):
        with stdin.open("rb") as f:
            yield from _chunks(f)
        return
    if hasattr(stdin, "read"):
        reader: Any = stdin
        while True:
            chunk = reader.read(UPLOAD_CHUNK)
            if not chunk:
                return
            yield chunk
    else:
        yield from stdin


def _with_lookahead(chunks: Iterator[bytes]) -> Iterator[tuple[bytes, bool]]:
    """Pair each chunk with whether it is the last (so the last upload also closes)."""
    previous: bytes | None = None
    for chunk in chunks:
        if not chunk:
            continue
        if previous is not None:
            yield previous, False
        previous = chunk
    yield previous or b"", True


def _resume_at(status: Mapping[str, Any], start: int, length: int) -> int | None:
    """Return where in the current chunk a broken upload resumes (``None``: it completed).

    Raises:
        ConnectionFailed: the daemon holds fewer bytes than were acknowledged before
            (its disk lost them): the upload cannot resume.
    """
    size = int(status["bytes"])
    if status.get("closed"):
        return None
    if not start <= size <= start + length:
        raise ConnectionFailed(
            f"the daemon holds {size} stdin bytes, but {start} were acknowledged",
            hint="submit the job again", code="stdin_lost",
        )
    return size - start


def _check_retry(job_id: str, attempt: int, info: JobInfo, yielded: bool) -> None:
    if yielded:
        raise Conflict(
            f"attempt {attempt} of job {job_id} failed after its output began "
            f"({info.reason}); attempt {info.attempt} starts over",
            hint=f"read the final output once the job has ended: acpoll {job_id}",
            code="attempt_retried",
        )


class _Backoff:
    def __init__(self, retry_for: float) -> None:
        self.deadline = time.monotonic() + retry_for
        self.delay = _BACKOFF_START

    def next(self, error: Exception) -> float:
        """Return how long to wait before trying again, or raise if time is up."""
        if time.monotonic() + self.delay > self.deadline:
            if isinstance(error, AcjobError):
                raise error
            raise ConnectionFailed(
                f"cannot reach the acjob daemon: {error}",
                hint="check that it runs (ac serve) and that ACJOB_URL points at it",
            ) from error
        delay, self.delay = self.delay, min(self.delay * 2, _BACKOFF_MAX)
        return delay

    def reset(self, retry_for: float) -> None:
        self.deadline = time.monotonic() + retry_for
        self.delay = _BACKOFF_START


_RETRIABLE = (httpx.TransportError, TransientError)


class Client:
    """A synchronous connection to an acjob daemon.

    Args:
        url: ``unix:/path.sock`` or ``http://host:port``; default as described in
            the module docstring.
        token: The bearer token for TCP daemons (default ``ACJOB_TOKEN``).
        retry_for: How many seconds to keep retrying a call whose connection fails.
        timeout: Seconds to wait for an ordinary answer.
        autostart: Start the private daemon when it is the target and not running.
    """

    def __init__(self, url: str | None = None, token: str | None = None, *,
                 retry_for: float = 60.0, timeout: float = 30.0,
                 autostart: bool = True) -> None:
        target = _resolve(url, token, autostart)
        self._target = target
        self.retry_for = retry_for
        headers = {"Authorization": f"Bearer {target.token}"} if target.token else {}
        # acjob speaks plain HTTP only (TLS belongs to a reverse proxy), so no
        # certificate store is loaded: that alone would cost a tenth of a second.
        transport = httpx.HTTPTransport(uds=target.transport_uds, verify=False)
        self._http = httpx.Client(base_url=target.base_url, transport=transport,
                                  headers=headers, timeout=timeout)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connections."""
        self._http.close()

    # -- plumbing ---------------------------------------------------------------------

    def _request(self, method: str, path: str, *, retry: bool = True, **kwargs: Any) -> Any:
        backoff = _Backoff(self.retry_for)
        while True:
            try:
                if self._target.autostart is not None:
                    ensure_private_daemon(self._target.autostart)
                response = self._http.request(method, path, **kwargs)
                if response.status_code >= 500 and response.status_code != 501:
                    raise _error_from(response)
            except _RETRIABLE as exc:
                if not retry:
                    raise
                time.sleep(backoff.next(exc))
                continue
            if response.status_code >= 400:
                raise _error_from(response)
            return response.json()

    # -- the API ----------------------------------------------------------------------

    def submit(
        self,
        command: str | list[str],
        *,
        stdin: Stdin = None,
        env: Mapping[str, str] | None = None,
        workdir: str | None = None,
        backend: str | None = None,
        resources: Mapping[str, Any] | None = None,
        retry: Mapping[str, Any] | None = None,
        labels: Mapping[str, str] | None = None,
        name: str | None = None,
        deliveries: Iterable[Mapping[str, str]] | None = None,
        idempotency_key: str | None = None,
    ) -> JobHandle:
        """Submit a job and upload its stdin; return its handle once both are durable.

        ``command`` is a shell string, or an argv list that no shell sees. ``stdin``
        may be bytes, text, a path, a binary file or an iterable of byte chunks.
        ``deliveries`` push the result when the job ends:
        ``{"type": "email", "to": ADDRESS}`` or ``{"type": "webhook", "url": URL}``.
        The submission is retried with one idempotency key, so it never makes two
        jobs.
        """
        body = _job_body(command, stdin is not None, {
            "env": dict(env) if env else None, "workdir": workdir, "backend": backend,
            "resources": dict(resources) if resources else None,
            "retry": dict(retry) if retry else None,
            "labels": dict(labels) if labels else None, "name": name,
            "deliveries": [dict(d) for d in deliveries] if deliveries else None,
        })
        key = idempotency_key or uuid.uuid4().hex
        data = self._request("POST", "/v1/jobs", json=body, headers={"Idempotency-Key": key})
        job_id = data["id"]
        if stdin is not None and not data["stdin"]["closed"]:
            self.upload_stdin(job_id, stdin)
        return JobHandle(self, job_id)

    def submit_many(self, jobs: Iterable[Mapping[str, Any]], *,
                    idempotency_key: str | None = None) -> list[JobHandle]:
        """Submit several jobs in one call and one transaction: all, or none.

        Each item holds the fields of one job (``command``, ``env``, ``resources``,
        …; no stdin). A batch scheduler runs jobs submitted together, with equal
        resources, as one job array.
        """
        key = idempotency_key or uuid.uuid4().hex
        data = self._request("POST", "/v1/jobs/batch", json={"jobs": [dict(j) for j in jobs]},
                             headers={"Idempotency-Key": key})
        return [JobHandle(self, j["id"]) for j in data["jobs"]]

    def upload_stdin(self, job_id: str, stdin: Stdin) -> int:
        """Upload ``stdin`` for a job submitted with ``stdin="upload"`` and close it.

        A chunk whose connection breaks is resumed at the byte the daemon reached.
        Returns the number of bytes uploaded.
        """
        offset = 0
        for chunk, last in _with_lookahead(_chunks(stdin)):
            backoff = _Backoff(self.retry_for)
            done = 0
            while True:
                params = {"offset": offset + done, "final": "true" if last else "false"}
                try:
                    result = self._request("PUT", f"/v1/jobs/{job_id}/stdin", params=params,
                                           content=chunk[done:] if done else chunk, timeout=None,
                                           retry=False)
                    break
                except _RETRIABLE as exc:
                    time.sleep(backoff.next(exc))
                    status = self._request("GET", f"/v1/jobs/{job_id}/stdin")
                    resume = _resume_at(status, offset, len(chunk))
                    if resume is None:
                        result = status
                        break
                    done = resume
            offset = result["bytes"]
        return offset

    def job(self, job_id: str) -> JobHandle:
        """Return the handle of an existing job (no request is made)."""
        return JobHandle(self, job_id)

    def get(self, job_id: str, *, wait: float = 0, since: int | None = None) -> JobInfo:
        """Return the job; with ``wait``, as soon as it changes (at most ``wait`` s)."""
        params: dict[str, Any] = {"wait": wait}
        if since is not None:
            params["since"] = since
        data = self._request("GET", f"/v1/jobs/{job_id}", params=params,
                             timeout=wait + 30.0)
        return JobInfo.from_json(data)

    def list(self, *, state: Iterable[str] = (), label: Mapping[str, str] | None = None,
             limit: int = 100, cursor: str | None = None) -> tuple[list[JobInfo], str | None]:
        """Return one page of jobs (newest first) and the cursor of the next page."""
        params: dict[str, Any] = {"state": list(state), "limit": limit,
                                  "label": [f"{k}={v}" for k, v in (label or {}).items()]}
        if cursor:
            params["cursor"] = cursor
        data = self._request("GET", "/v1/jobs", params=params)
        return [JobInfo.from_json(j) for j in data["jobs"]], data["next_cursor"]

    def cancel(self, job_id: str) -> JobInfo:
        """Cancel the job (idempotent)."""
        return JobInfo.from_json(self._request("POST", f"/v1/jobs/{job_id}/cancel"))

    def shutdown(self) -> None:
        """Ask the daemon to stop (running jobs go on)."""
        self._request("POST", "/v1/shutdown")

    def wait(self, job_id: str, timeout: float | None = None, poll: float = 60.0) -> JobInfo:
        """Block until the job is final (or ``timeout`` seconds passed); return it."""
        deadline = None if timeout is None else time.monotonic() + timeout
        info = self.get(job_id)
        while not info.is_final:
            left = poll if deadline is None else min(poll, deadline - time.monotonic())
            if left <= 0:
                break
            info = self.get(job_id, wait=left, since=info.seq)
        return info

    def stream(self, job_id: str, which: Which = "stdout", *, offset: int = 0,
               follow: bool = True, attempt: int | None = None) -> Iterator[bytes]:
        """Yield one attempt's output from ``offset``, resuming after broken connections.

        Follows the latest attempt unless ``attempt`` is given; with ``follow`` it
        ends once the job is over and every byte was yielded.

        Raises:
            Conflict: (``attempt_retried``) following the latest attempt, the attempt
                whose bytes were already yielded failed and a retry started over:
                its output would not continue what was yielded. Read the output once
                the job is final, or follow attempts one by one.
        """
        pinned, yielded = attempt is not None, False
        backoff = _Backoff(self.retry_for)
        while True:
            params: dict[str, Any] = {"offset": offset, "follow": follow}
            if attempt is not None:
                params["attempt"] = attempt
            try:
                if self._target.autostart is not None:
                    ensure_private_daemon(self._target.autostart)
                with self._http.stream("GET", f"/v1/jobs/{job_id}/{which}", params=params,
                                       timeout=httpx.Timeout(30.0, read=None)) as response:
                    if response.status_code >= 400:
                        response.read()
                        raise _error_from(response)
                    attempt = int(response.headers.get("X-Acjob-Attempt", "0"))
                    for chunk in response.iter_raw():
                        offset += len(chunk)
                        yielded = True
                        backoff.reset(self.retry_for)
                        yield chunk
            except _RETRIABLE as exc:
                time.sleep(backoff.next(exc))
                continue
            if not follow or attempt == 0:
                return
            info = self.get(job_id)
            if (info.attempt == attempt and info.is_final) or pinned:
                return
            if info.attempt != attempt:
                _check_retry(job_id, attempt, info, yielded)
                attempt, offset = info.attempt, 0
            # Otherwise the daemon ended the stream early (it was stopping): resume.


class JobHandle:
    """One job, seen through a :class:`Client`."""

    def __init__(self, client: Client, job_id: str) -> None:
        self.client = client
        self.id = job_id

    def __repr__(self) -> str:
        return f"<JobHandle {self.id}>"

    def status(self) -> JobInfo:
        """Return the job's current state."""
        return self.client.get(self.id)

    def wait(self, timeout: float | None = None) -> JobInfo:
        """Block until the job is final (or ``timeout``); return its state."""
        return self.client.wait(self.id, timeout)

    def stdout(self, *, offset: int = 0, follow: bool = True) -> Iterator[bytes]:
        """Yield the job's stdout (the latest attempt's), live while it runs."""
        return self.client.stream(self.id, "stdout", offset=offset, follow=follow)

    def stderr(self, *, offset: int = 0, follow: bool = True) -> Iterator[bytes]:
        """Yield the job's stderr (the latest attempt's), live while it runs."""
        return self.client.stream(self.id, "stderr", offset=offset, follow=follow)

    def cancel(self) -> JobInfo:
        """Cancel the job."""
        return self.client.cancel(self.id)


class AsyncClient:
    """The ``async`` twin of :class:`Client`: same arguments, same guarantees."""

    def __init__(self, url: str | None = None, token: str | None = None, *,
                 retry_for: float = 60.0, timeout: float = 30.0,
                 autostart: bool = True) -> None:
        target = _resolve(url, token, autostart)
        self._target = target
        self.retry_for = retry_for
        headers = {"Authorization": f"Bearer {target.token}"} if target.token else {}
        transport = httpx.AsyncHTTPTransport(uds=target.transport_uds, verify=False)
        self._http = httpx.AsyncClient(base_url=target.base_url, transport=transport,
                                       headers=headers, timeout=timeout)

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connections."""
        await self._http.aclose()

    async def _ensure_daemon(self) -> None:
        if self._target.autostart is not None:
            await asyncio.to_thread(ensure_private_daemon, self._target.autostart)

    async def _request(self, method: str, path: str, *, retry: bool = True,
                       **kwargs: Any) -> Any:
        backoff = _Backoff(self.retry_for)
        while True:
            try:
                await self._ensure_daemon()
                response = await self._http.request(method, path, **kwargs)
                if response.status_code >= 500 and response.status_code != 501:
                    raise _error_from(response)
            except _RETRIABLE as exc:
                if not retry:
                    raise
                await asyncio.sleep(backoff.next(exc))
                continue
            if response.status_code >= 400:
                raise _error_from(response)
            return response.json()

    async def submit(
        self,
        command: str | list[str],
        *,
        stdin: Stdin = None,
        idempotency_key: str | None = None,
        **options: Any,
    ) -> AsyncJobHandle:
        """Submit a job (see :meth:`Client.submit` for the options)."""
        info = await self.create(command, stdin_upload=stdin is not None,
                                 idempotency_key=idempotency_key, **options)
        if stdin is not None and not info.data["stdin"]["closed"]:
            await self.upload_stdin(info.id, stdin)
        return AsyncJobHandle(self, info.id)

    async def create(
        self,
        command: str | list[str],
        *,
        stdin_upload: bool = False,
        idempotency_key: str | None = None,
        **options: Any,
    ) -> JobInfo:
        """Create a job without sending its stdin: the first half of :meth:`submit`.

        With ``stdin_upload`` the job waits until :meth:`upload_stdin` closes its
        stdin (or it is canceled). Retried with one idempotency key.
        """
        body = _job_body(command, stdin_upload, options)
        key = idempotency_key or uuid.uuid4().hex
        data = await self._request("POST", "/v1/jobs", json=body,
                                   headers={"Idempotency-Key": key})
        return JobInfo.from_json(data)


    async def submit_many(self, jobs: Iterable[Mapping[str, Any]], *,
                          idempotency_key: str | None = None) -> list[AsyncJobHandle]:
        """Submit several jobs in one call (see :meth:`Client.submit_many`)."""
        key = idempotency_key or uuid.uuid4().hex
        data = await self._request("POST", "/v1/jobs/batch",
                                   json={"jobs": [dict(j) for j in jobs]},
                                   headers={"Idempotency-Key": key})
        return [AsyncJobHandle(self, j["id"]) for j in data["jobs"]]

    async def upload_stdin(self, job_id: str, stdin: Stdin) -> int:
        """Upload and close a job's stdin (see :meth:`Client.upload_stdin`).

        Reading ``stdin`` (a file or pipe) happens in a worker thread.
        """
        chunks = _with_lookahead(_chunks(stdin))
        offset = 0
        while True:
            item = await asyncio.to_thread(next, chunks, None)
            if item is None:
                return offset
            chunk, last = item
            backoff = _Backoff(self.retry_for)
            done = 0
            while True:
                params = {"offset": offset + done, "final": "true" if last else "false"}
                try:
                    result = await self._request(
                        "PUT", f"/v1/jobs/{job_id}/stdin", params=params,
                        content=chunk[done:] if done else chunk, timeout=None,
                        retry=False)
                    break
                except _RETRIABLE as exc:
                    await asyncio.sleep(backoff.next(exc))
                    status = await self._request("GET", f"/v1/jobs/{job_id}/stdin")
                    resume = _resume_at(status, offset, len(chunk))
                    if resume is None:
                        result = status
                        break
                    done = resume
            offset = result["bytes"]

    def job(self, job_id: str) -> AsyncJobHandle:
        """Return the handle of an existing job."""
        return AsyncJobHandle(self, job_id)

    async def get(self, job_id: str, *, wait: float = 0, since: int | None = None) -> JobInfo:
        """Return the job; with ``wait``, as soon as it changes."""
        params: dict[str, Any] = {"wait": wait}
        if since is not None:
            params["since"] = since
        data = await self._request("GET", f"/v1/jobs/{job_id}", params=params,
                                   timeout=wait + 30.0)
        return JobInfo.from_json(data)

    async def cancel(self, job_id: str) -> JobInfo:
        """Cancel the job (idempotent)."""
        return JobInfo.from_json(await self._request("POST", f"/v1/jobs/{job_id}/cancel"))

    async def wait(self, job_id: str, timeout: float | None = None,
                   poll: float = 60.0) -> JobInfo:
        """Wait until the job is final (or ``timeout``); return it."""
        deadline = None if timeout is None else time.monotonic() + timeout
        info = await self.get(job_id)
        while not info.is_final:
            left = poll if deadline is None else min(poll, deadline - time.monotonic())
            if left <= 0:
                break
            info = await self.get(job_id, wait=left, since=info.seq)
        return info

    async def stream(self, job_id: str, which: Which = "stdout", *, offset: int = 0,
                     follow: bool = True, attempt: int | None = None) -> AsyncIterator[bytes]:
        """Yield one attempt's output (see :meth:`Client.stream`)."""
        pinned, yielded = attempt is not None, False
        backoff = _Backoff(self.retry_for)
        while True:
            params: dict[str, Any] = {"offset": offset, "follow": follow}
            if attempt is not None:
                params["attempt"] = attempt
            try:
                await self._ensure_daemon()
                async with self._http.stream(
                    "GET", f"/v1/jobs/{job_id}/{which}", params=params,
                    timeout=httpx.Timeout(30.0, read=None),
                ) as response:
                    if response.status_code >= 400:
                        await response.aread()
                        raise _error_from(response)
                    attempt = int(response.headers.get("X-Acjob-Attempt", "0"))
                    async for chunk in response.aiter_raw():
                        offset += len(chunk)
                        yielded = True
                        backoff.reset(self.retry_for)
                        yield chunk
            except _RETRIABLE as exc:
                await asyncio.sleep(backoff.next(exc))
                continue
            if not follow or attempt == 0:
                return
            info = await self.get(job_id)
            if (info.attempt == attempt and info.is_final) or pinned:
                return
            if info.attempt != attempt:
                _check_retry(job_id, attempt, info, yielded)
                attempt, offset = info.attempt, 0


class AsyncJobHandle:
    """One job, seen through an :class:`AsyncClient`."""

    def __init__(self, client: AsyncClient, job_id: str) -> None:
        self.client = client
        self.id = job_id

    def __repr__(self) -> str:
        return f"<AsyncJobHandle {self.id}>"

    async def status(self) -> JobInfo:
        """Return the job's current state."""
        return await self.client.get(self.id)

    async def wait(self, timeout: float | None = None) -> JobInfo:
        """Wait until the job is final (or ``timeout``)."""
        return await self.client.wait(self.id, timeout)

    def stdout(self, *, offset: int = 0, follow: bool = True) -> AsyncIterator[bytes]:
        """Yield the job's stdout."""
        return self.client.stream(self.id, "stdout", offset=offset, follow=follow)

    def stderr(self, *, offset: int = 0, follow: bool = True) -> AsyncIterator[bytes]:
        """Yield the job's stderr."""
        return self.client.stream(self.id, "stderr", offset=offset, follow=follow)

    async def cancel(self) -> JobInfo:
        """Cancel the job."""
        return await self.client.cancel(self.id)
