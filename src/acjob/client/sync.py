"""The synchronous client: the plans of :mod:`.plans`, run over :mod:`.connection`."""

from __future__ import annotations

import builtins
import io
import time
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from .connection import CONNECTION_ERRORS, Connections, Stream
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
from .handoff import HandedStream, append_stdin
from .plans import Plans
from .reach import Reach
from .stdin import Stdin

if TYPE_CHECKING:
    from ..progress import Progress

T = TypeVar("T")


class Client:
    """A synchronous connection to an acjob daemon.

    Finds the daemon as the command-line tools do (``url``, ``ACJOB_URL``, the
    configuration file, else the private per-user daemon, started when nothing listens
    on its socket), retries on lost connections and transient errors with capped
    backoff, and resumes uploads and streams at the byte they had reached: nothing is
    lost or repeated.

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
        self._http = Connections(self._target.base_url, self._target.transport_uds,
                                 self._target.headers, timeout,
                                 start=self._start_daemon if self._target.autostart else None)

    @property
    def retry_for(self) -> float:
        """How many seconds a failing call is retried."""
        return self._plans.retry_for

    @retry_for.setter
    def retry_for(self, seconds: float) -> None:
        self._plans.retry_for = seconds

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connections."""
        self._http.close()

    # -- the driver -----------------------------------------------------------------------

    def _steps(self, run: Run[Any]) -> Generator[bytes, None, None]:
        """Perform the plan's effects until it returns (into ``run.result``); yield
        what it emits. The open stream, if any, is closed however it ends."""
        stream: Stream | HandedStream | None = None
        ended: Mapping[str, Any] | None = None  # what the last stream knew at its end
        try:
            while (effect := run.next()) is not None:
                if isinstance(effect, Emit):
                    yield effect.data
                    continue
                try:
                    if isinstance(effect, Call):
                        run.send(self._http.request(
                            effect.method, effect.path, params=effect.params,
                            json_body=effect.json, content=_body(effect.content),
                            headers=effect.headers,
                            timeout=self._http.timeout if effect.timeout is Timeout.CLIENT
                            else effect.timeout))
                        self._reach.answered()
                    elif isinstance(effect, Open):
                        if stream is not None:
                            stream.close()
                            stream = None
                        stream = self._http.stream(effect.path, effect.params, effect.timeout)
                        self._reach.answered()
                        run.send(Response(stream.status, stream.headers))
                    elif isinstance(effect, Pull):
                        chunk = stream.read() if stream is not None else b""
                        if not chunk and stream is not None:
                            ended = stream.ended_with \
                                if isinstance(stream, HandedStream) else None
                            stream.close()
                            stream = None
                        run.send(chunk)
                    elif isinstance(effect, Ended):
                        run.send(ended)
                    elif isinstance(effect, Sleep):
                        time.sleep(effect.seconds)
                    elif isinstance(effect, ReadStdin):
                        run.send(next(effect.chunks, None))
                    elif isinstance(effect, Block):
                        run.send(effect.function())
                except _SourceFailed as exc:
                    run.throw(exc.error)  # the body's own source failed, not the daemon
                except Exception as exc:
                    if isinstance(effect, Open | Pull) and stream is not None:
                        stream.close()
                        stream = None
                    lost = isinstance(exc, CONNECTION_ERRORS) and isinstance(
                        effect, Call | Open | Pull)
                    run.throw(self._reach.lost(exc, self.retry_for) if lost else exc)
        finally:
            if stream is not None:
                stream.close()
            run.close()

    def _run(self, plan: Plan[T]) -> T:
        run = Run(plan)
        # Only stream() emits, and it is iterated, not run: nothing comes out here.
        emitted = list(self._steps(run))
        if emitted:
            raise TypeError("a plan that emits output must be iterated, not run")
        return run.result

    def _start_daemon(self) -> None:
        # Called when nothing listens on the private daemon's socket.
        from ..private import ensure_private_daemon  # loads subprocess: seldom needed

        if self._target.autostart is not None:
            ensure_private_daemon(self._target.autostart)

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
        jobs; a broken upload resumes where the daemon's copy ends.

        Raises:
            InvalidRequest: the daemon refused the spec (e.g. an unknown backend).
            ConnectionFailed: the daemon stayed unreachable for ``retry_for`` seconds.
        """
        options = JobOptions(env, workdir, backend, resources, retry, labels, name, deliveries)
        return JobHandle(self, self._run(self._plans.submit(
            command, options, stdin=stdin, idempotency_key=idempotency_key)))

    def create(
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
        """Create a job without sending its stdin: the first half of :meth:`submit`.

        With ``stdin_upload`` the job waits until :meth:`upload_stdin` closes its
        stdin (or it is canceled). Retried with one idempotency key; raises as
        :meth:`submit` does.
        """
        options = JobOptions(env, workdir, backend, resources, retry, labels, name, deliveries)
        return self._run(self._plans.create(command, options, stdin_upload=stdin_upload,
                                            idempotency_key=idempotency_key))

    def submit_many(self, jobs: Iterable[Mapping[str, Any]], *,
                    idempotency_key: str | None = None) -> list[JobHandle]:
        """Submit several jobs in one call and one transaction: all, or none.

        Each item holds the fields of one job (``command``, ``env``, ``resources``,
        …; no stdin). A batch scheduler runs jobs submitted together, with equal
        resources, as one job array.
        """
        ids = self._run(self._plans.submit_many(jobs, idempotency_key=idempotency_key))
        return [JobHandle(self, job_id) for job_id in ids]

    def upload_stdin(self, job_id: str, stdin: Stdin) -> int:
        """Upload ``stdin`` for a job created with ``stdin_upload`` and close it.

        A chunk whose connection breaks is resumed at the byte the daemon reached.
        Returns the number of bytes uploaded. A pipe given unbuffered (``open(fd, "rb",
        buffering=0)``, as ``acjob`` gives its stdin) to a daemon on this machine is
        moved by the kernel into the job's stdin file, which the daemon hands over; the
        daemon acknowledges the whole as it does an upload, once it is on disk.

        Raises:
            ConnectionFailed: the daemon stayed unreachable, or lost bytes it had
                acknowledged (``stdin_lost``: submit again).
            Conflict: the job's stdin was closed already, or it takes none, or
                (``job_final``) the job ended before its stdin was complete.
            PayloadTooLarge: the stdin passed the daemon's ``max_stdin_bytes``.
        """
        offset = 0
        handed = self._append_stdin(job_id, stdin)
        if handed is not None:
            offset, ended = handed
            if ended:
                return self._run(self._plans.close_stdin(job_id, offset))
        return self._run(self._plans.upload_stdin(job_id, stdin, offset))

    def _append_stdin(self, job_id: str, stdin: Stdin) -> tuple[int, bool] | None:
        """Write a pipe given unbuffered (a raw file, ``buffering=0``) into the job's
        stdin file directly, on the daemon's machine (:func:`~.handoff.append_stdin`)."""
        uds = self._http.uds
        if uds is None or not self._http.handoff or not isinstance(stdin, io.FileIO):
            return None
        return append_stdin(uds, job_id, stdin.fileno())

    def job(self, job_id: str) -> JobHandle:
        """Return the handle of an existing job (no request is made)."""
        return JobHandle(self, job_id)

    def get(self, job_id: str, *, wait: float = 0, since: int | None = None) -> JobInfo:
        """Return the job; with ``wait``, as soon as it changes (at most ``wait`` s).

        Raises:
            NotFound: no such job.
        """
        return self._run(self._plans.get(job_id, wait=wait, since=since))

    def cancel(self, job_id: str) -> JobInfo:
        """Cancel the job (idempotent); return it.

        Raises:
            Conflict: (``job_final``) it ended otherwise before.
        """
        return self._run(self._plans.cancel(job_id))

    def remove_files(self, job_id: str) -> JobInfo:
        """Remove a finished job's files now (stdin, output, its default working
        directory), as retention would later; return the job (its record stays).

        Raises:
            Conflict: the job has not ended, or a delivery of its result still needs
                them.
        """
        return self._run(self._plans.remove_files(job_id))

    def prune(self, older_than: float) -> int:
        """Remove the files of every job that ended ``older_than`` seconds ago or more
        (by the daemon's clock), but for those a pending delivery needs; return how many
        jobs' files were removed."""
        return self._run(self._plans.prune(older_than))

    def shutdown(self) -> None:
        """Ask the daemon to stop (running jobs go on)."""
        self._run(self._plans.shutdown())

    def wait(self, job_id: str, timeout: float | None = None, poll: float = 60.0) -> JobInfo:
        """Block until the job is final (or ``timeout`` seconds passed); return it.

        Each long-poll lasts at most ``poll`` seconds.
        """
        return self._run(self._plans.wait(job_id, timeout, poll))

    def stream(self, job_id: str, which: Which = "stdout", *, offset: int = 0,
               follow: bool = True, attempt: int | None = None) -> Iterator[bytes]:
        """Yield one attempt's output from ``offset``, resuming after broken connections.

        Follows the latest attempt unless ``attempt`` is given; with ``follow`` it
        ends once the job is over and every byte was yielded. Nothing is requested
        before the first chunk is asked for.

        Raises:
            Conflict: (``attempt_retried``) following the latest attempt, the attempt
                whose bytes were already yielded failed and a retry started over:
                its output would not continue what was yielded. Read the output once
                the job is final, or follow attempts one by one.
            Gone: (``output_expired``) the job's output was removed.
        """
        return self._steps(Run(self._plans.stream(job_id, which, offset=offset,
                                                  follow=follow, attempt=attempt)))

    def progress(self, job_id: str) -> Iterator[Progress]:
        """Yield the job's progress each time it changes, until the job is final.

        The current progress comes first, if the job reported any. A retried job's
        new attempt starts from none: its first report may be lower than the last
        one yielded (``Progress.attempt`` tells them apart). Follows the job's event
        stream, resuming after broken connections; nothing is requested before the
        first item is asked for.

        Raises:
            NotFound: no such job.
            ConnectionFailed: the daemon stayed unreachable for ``retry_for`` seconds.
        """
        for emitted in self._steps(Run(self._plans.progress(job_id))):
            progress = progress_of(emitted)
            if progress is not None:
                yield progress

    def list(self, *, state: Iterable[str] = (), label: Mapping[str, str] | None = None,
             limit: int = 100, cursor: str | None = None, name_prefix: str | None = None,
             ) -> tuple[builtins.list[JobInfo], str | None]:
        """Return one page of jobs (newest first) and the cursor of the next page.

        ``state``, ``label`` (every pair must match) and ``name_prefix`` (the start of
        the job's name) filter; the cursor (``None`` on the last page) asks for the next.
        """
        return self._run(self._plans.list(state=state, label=label, limit=limit,
                                          cursor=cursor, name_prefix=name_prefix))


class JobHandle:
    """One job, seen through a :class:`Client`.

    Attributes:
        client: The client it was made by.
        id: The job id.
    """

    def __init__(self, client: Client, job_id: str) -> None:
        self.client = client
        self.id = job_id

    def __repr__(self) -> str:
        return f"<JobHandle {self.id}>"

    def status(self) -> JobInfo:
        """Return the job's current state."""
        return self.client.get(self.id)

    def wait(self, timeout: float | None = None, poll: float = 60.0) -> JobInfo:
        """Block until the job is final (or ``timeout`` seconds passed); return it."""
        return self.client.wait(self.id, timeout, poll)

    def stdout(self, *, offset: int = 0, follow: bool = True) -> Iterator[bytes]:
        """Yield the job's stdout (the latest attempt's), live while it runs."""
        return self.client.stream(self.id, "stdout", offset=offset, follow=follow)

    def stderr(self, *, offset: int = 0, follow: bool = True) -> Iterator[bytes]:
        """Yield the job's stderr (the latest attempt's), live while it runs."""
        return self.client.stream(self.id, "stderr", offset=offset, follow=follow)

    def progress(self) -> Iterator[Progress]:
        """Yield the job's progress each time it changes, until it is final."""
        return self.client.progress(self.id)

    def cancel(self) -> JobInfo:
        """Cancel the job."""
        return self.client.cancel(self.id)


def _body(content: bytes | Streamed | None) -> Iterator[bytes] | bytes | None:
    """Return a request body as :mod:`.connection` sends it: chunks as they come."""
    return _own_errors(content.chunks) if isinstance(content, Streamed) else content


class _SourceFailed(Exception):
    """A streamed body's source (stdin, a file) failed: its error, not the connection's."""

    def __init__(self, error: Exception) -> None:
        super().__init__(str(error))
        self.error = error


def _own_errors(chunks: Iterator[bytes]) -> Iterator[bytes]:
    """Yield ``chunks``; an error of theirs is raised as :class:`_SourceFailed`, so that
    reading stdin badly is never taken for a lost connection and retried."""
    while True:
        try:
            chunk = next(chunks)
        except StopIteration:
            return
        except Exception as exc:
            raise _SourceFailed(exc) from exc
        yield chunk
