"""The ``async`` client: the plans of :mod:`.plans`, run with ``httpx.AsyncClient``.

Blocking work stays off the event loop: stdin is read, and the private daemon
started, in worker threads.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

import httpx

from .core import (
    Block,
    Call,
    Emit,
    Ended,
    JobInfo,
    JobOptions,
    Open,
    Plan,
    Pull,
    ReadStdin,
    Response,
    Run,
    Sleep,
    Streamed,
    Timeout,
    Which,
    progress_of,
    resolve,
)
from .plans import Plans
from .reach import Reach
from .stdin import Stdin

if TYPE_CHECKING:
    from ..progress import Progress

T = TypeVar("T")


class AsyncClient:
    """The ``async`` twin of :class:`Client`: the same methods, arguments and guarantees.

    Args:
        url: ``unix:/path.sock`` or ``http://host:port``.
        token: The bearer token for TCP daemons (default ``ACJOB_TOKEN``).
        retry_for: How many seconds to keep retrying a call whose connection fails
            (default ``ACJOB_RETRY_FOR``, else ``[client] retry_for``, else 60).
        timeout: Seconds to wait for an ordinary answer.
        autostart: Start the private daemon when it is the target and not running.
        on_wait: Called with one sentence (what is waited for, where, for how long)
            when a call starts waiting for an unreachable daemon; once per outage.

    Raises:
        ConfigError: the configuration file or ``url`` is invalid.
    """

    def __init__(self, url: str | None = None, token: str | None = None, *,
                 retry_for: float | None = None, timeout: float = 30.0,
                 autostart: bool = True, on_wait: Callable[[str], None] | None = None) -> None:
        self._target = resolve(url, token, autostart)
        self._plans = Plans(self._target.retry_for if retry_for is None else retry_for)
        self._reach = Reach(self._target.where, on_wait)
        # Plain HTTP only: no certificate store to load (see Client).
        transport = httpx.AsyncHTTPTransport(uds=self._target.transport_uds, verify=False)
        self._http = httpx.AsyncClient(base_url=self._target.base_url, transport=transport,
                                       headers=self._target.headers, timeout=timeout)

    @property
    def retry_for(self) -> float:
        """How many seconds a failing call is retried."""
        return self._plans.retry_for

    @retry_for.setter
    def retry_for(self, seconds: float) -> None:
        self._plans.retry_for = seconds

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connections."""
        await self._http.aclose()

    # -- the driver -----------------------------------------------------------------------

    async def _steps(self, run: Run[Any]) -> AsyncIterator[bytes]:
        """Perform the plan's effects until it returns (into ``run.result``); yield
        what it emits. The open stream, if any, is closed however it ends."""
        streams = contextlib.AsyncExitStack()
        raw: AsyncIterator[bytes] | None = None
        try:
            while (effect := run.next()) is not None:
                if isinstance(effect, Emit):
                    yield effect.data
                    continue
                try:
                    if isinstance(effect, Call):
                        await self._ensure_daemon()
                        response = await self._http.request(
                            effect.method, effect.path, params=effect.params, json=effect.json,
                            content=_body(effect.content),
                            headers=effect.headers,
                            timeout=httpx.USE_CLIENT_DEFAULT if effect.timeout is Timeout.CLIENT
                            else effect.timeout)
                        self._reach.answered()
                        run.send(Response(response.status_code, response.headers,
                                          response.content))
                    elif isinstance(effect, Open):
                        await streams.aclose()
                        await self._ensure_daemon()
                        response = await streams.enter_async_context(self._http.stream(
                            "GET", effect.path, params=effect.params,
                            timeout=httpx.Timeout(effect.timeout, read=None)))
                        raw = response.aiter_raw()
                        self._reach.answered()
                        run.send(Response(response.status_code, response.headers))
                    elif isinstance(effect, Pull):
                        chunk = await anext(raw, b"") if raw is not None else b""
                        if not chunk:
                            await streams.aclose()
                        run.send(chunk)
                    elif isinstance(effect, Ended):
                        run.send(None)  # an HTTP stream does not say: the plan asks
                    elif isinstance(effect, Sleep):
                        await asyncio.sleep(effect.seconds)
                    elif isinstance(effect, ReadStdin):
                        run.send(await asyncio.to_thread(next, effect.chunks, None))
                    elif isinstance(effect, Block):
                        run.send(await asyncio.to_thread(effect.function))
                except Exception as exc:
                    if isinstance(effect, Open | Pull):
                        await streams.aclose()
                    run.throw(self._reach.lost(exc, self.retry_for)
                              if isinstance(exc, httpx.TransportError) else exc)
        finally:
            await streams.aclose()
            run.close()

    async def _run(self, plan: Plan[T]) -> T:
        run = Run(plan)
        # Only stream() emits, and it is iterated, not run: nothing comes out here.
        emitted = [chunk async for chunk in self._steps(run)]
        if emitted:
            raise TypeError("a plan that emits output must be iterated, not run")
        return run.result

    async def _ensure_daemon(self) -> None:
        # Looked at before the first request and after a failed connection (httpx has
        # no hook for the blocking client's way: a start when a connection finds nothing).
        if self._target.autostart is not None and not self._reach.answering:
            from ..private import ensure_private_daemon

            await asyncio.to_thread(ensure_private_daemon, self._target.autostart)

    # -- the API: see Client for what each method guarantees and raises ---------------

    async def submit(
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
    ) -> AsyncJobHandle:
        """Submit a job and upload its stdin (see :meth:`Client.submit`).

        Reading ``stdin`` (a file or pipe) happens in a worker thread.
        """
        options = JobOptions(env, workdir, backend, resources, retry, labels, name, deliveries)
        return AsyncJobHandle(self, await self._run(self._plans.submit(
            command, options, stdin=stdin, idempotency_key=idempotency_key)))

    async def create(
        self,
        command: str | list[str],
        *,
        stdin_upload: bool = False,
        env: Mapping[str, str] | None = None,
        workdir: str | None = None,
        backend: str | None = None,
        resources: Mapping[str, Any] | None = None,
        retry: Mapping[str, Any] | None = None,
        labels: Mapping[str, str] | None = None,
        name: str | None = None,
        deliveries: Iterable[Mapping[str, str]] | None = None,
        idempotency_key: str | None = None,
    ) -> JobInfo:
        """Create a job without sending its stdin (see :meth:`Client.create`)."""
        options = JobOptions(env, workdir, backend, resources, retry, labels, name, deliveries)
        return await self._run(self._plans.create(command, options, stdin_upload=stdin_upload,
                                                  idempotency_key=idempotency_key))

    async def submit_many(self, jobs: Iterable[Mapping[str, Any]], *,
                          idempotency_key: str | None = None) -> list[AsyncJobHandle]:
        """Submit several jobs in one transaction (see :meth:`Client.submit_many`)."""
        ids = await self._run(self._plans.submit_many(jobs, idempotency_key=idempotency_key))
        return [AsyncJobHandle(self, job_id) for job_id in ids]

    async def upload_stdin(self, job_id: str, stdin: Stdin) -> int:
        """Upload and close a job's stdin (see :meth:`Client.upload_stdin`).

        Reading ``stdin`` (a file or pipe) happens in a worker thread.
        """
        return await self._run(self._plans.upload_stdin(job_id, stdin))

    def job(self, job_id: str) -> AsyncJobHandle:
        """Return the handle of an existing job (no request is made)."""
        return AsyncJobHandle(self, job_id)

    async def get(self, job_id: str, *, wait: float = 0, since: int | None = None) -> JobInfo:
        """Return the job; with ``wait``, as soon as it changes (see :meth:`Client.get`)."""
        return await self._run(self._plans.get(job_id, wait=wait, since=since))

    async def cancel(self, job_id: str) -> JobInfo:
        """Cancel the job (idempotent); return it (see :meth:`Client.cancel`)."""
        return await self._run(self._plans.cancel(job_id))

    async def remove_files(self, job_id: str) -> JobInfo:
        """Remove a finished job's files now; return the job (its record stays)."""
        return await self._run(self._plans.remove_files(job_id))

    async def prune(self, older_than: float) -> int:
        """Remove the files of the jobs that ended ``older_than`` seconds ago or more;
        return how many."""
        return await self._run(self._plans.prune(older_than))

    async def shutdown(self) -> None:
        """Ask the daemon to stop (running jobs go on)."""
        await self._run(self._plans.shutdown())

    async def wait(self, job_id: str, timeout: float | None = None,
                   poll: float = 60.0) -> JobInfo:
        """Wait until the job is final (or ``timeout`` seconds passed); return it."""
        return await self._run(self._plans.wait(job_id, timeout, poll))

    def stream(self, job_id: str, which: Which = "stdout", *, offset: int = 0,
               follow: bool = True, attempt: int | None = None) -> AsyncIterator[bytes]:
        """Yield one attempt's output, resuming after broken connections (see
        :meth:`Client.stream`, also for ``Conflict(attempt_retried)``)."""
        return self._steps(Run(self._plans.stream(job_id, which, offset=offset,
                                                  follow=follow, attempt=attempt)))

    async def progress(self, job_id: str) -> AsyncIterator[Progress]:
        """Yield the job's progress each time it changes, until the job is final (see
        :meth:`Client.progress`)."""
        async for emitted in self._steps(Run(self._plans.progress(job_id))):
            progress = progress_of(emitted)
            if progress is not None:
                yield progress

    async def list(self, *, state: Iterable[str] = (), label: Mapping[str, str] | None = None,
                   limit: int = 100, cursor: str | None = None,
                   name_prefix: str | None = None,
                   ) -> tuple[builtins.list[JobInfo], str | None]:
        """Return one page of jobs (newest first) and the cursor of the next page."""
        return await self._run(self._plans.list(state=state, label=label, limit=limit,
                                                cursor=cursor, name_prefix=name_prefix))


class AsyncJobHandle:
    """One job, seen through an :class:`AsyncClient`.

    Attributes:
        client: The client it was made by.
        id: The job id.
    """

    def __init__(self, client: AsyncClient, job_id: str) -> None:
        self.client = client
        self.id = job_id

    def __repr__(self) -> str:
        return f"<AsyncJobHandle {self.id}>"

    async def status(self) -> JobInfo:
        """Return the job's current state."""
        return await self.client.get(self.id)

    async def wait(self, timeout: float | None = None, poll: float = 60.0) -> JobInfo:
        """Wait until the job is final (or ``timeout`` seconds passed); return it."""
        return await self.client.wait(self.id, timeout, poll)

    def stdout(self, *, offset: int = 0, follow: bool = True) -> AsyncIterator[bytes]:
        """Yield the job's stdout (the latest attempt's), live while it runs."""
        return self.client.stream(self.id, "stdout", offset=offset, follow=follow)

    def stderr(self, *, offset: int = 0, follow: bool = True) -> AsyncIterator[bytes]:
        """Yield the job's stderr (the latest attempt's), live while it runs."""
        return self.client.stream(self.id, "stderr", offset=offset, follow=follow)

    def progress(self) -> AsyncIterator[Progress]:
        """Yield the job's progress each time it changes, until it is final."""
        return self.client.progress(self.id)

    async def cancel(self) -> JobInfo:
        """Cancel the job."""
        return await self.client.cancel(self.id)


async def _in_thread(chunks: Iterator[bytes]) -> AsyncIterator[bytes]:
    """Iterate a blocking iterator (a request body read from stdin) without blocking the
    event loop: each step runs in a worker thread."""
    while (chunk := await asyncio.to_thread(next, chunks, None)) is not None:
        yield chunk


def _body(content: bytes | Streamed | None) -> AsyncIterator[bytes] | bytes | None:
    """Hand httpx a body it will not keep (see ``sync._body``): a stream read in a
    worker thread, or large bytes through a one-shot iterator."""
    if isinstance(content, Streamed):
        return _in_thread(content.chunks)
    if content is None or len(content) < 1 << 16:
        return content
    return _once(content)


async def _once(data: bytes) -> AsyncIterator[bytes]:
    """Yield ``data`` once; once exhausted, this holds no reference to it."""
    yield data
