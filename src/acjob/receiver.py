"""The job receiver: the one way in for jobs, whatever door they came through.

The native routes (one job, a batch) and the TES routes (a task) accept jobs here, and
both cancel jobs and feed their stdin here, with one order of steps:

1. check every job (idempotency first, so a retry gets its job even if the world
   changed since; then the backend, the deliveries, the working directory);
2. write each new job's own files, if it has any (a TES plan); the spool directory of
   any other job is made when it is needed: its stdin arrives, or it is dispatched;
3. commit all the jobs in one transaction: this is the acknowledgement;
4. wake the monitor.

A crash between 2 and 3 leaves files without a job, never a job without its files;
a commit that fails removes the files it would have owned.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import shutil
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .backends.base import Backend
from .errors import Conflict, Gone, InvalidRequest, PayloadTooLarge
from .ids import new_job_ids
from .lifecycle import after_cancel_request
from .model import Job, JobSpec, NewJob
from .spool import Spool
from .store import Store


@dataclass(frozen=True, slots=True)
class Submission:
    """One job to accept.

    Attributes:
        spec: What to run.
        job_id: Its id, when the caller had to know it first (a TES task's command
            names its own area); a fresh one otherwise.
        document: Kept with the job in the store: ``(kind, JSON text)``.
        files: Written into the job's spool directory before the commit:
            ``(file name, content)``; names are plain names, never paths.
    """

    spec: JobSpec
    job_id: str | None = None
    document: tuple[str, str] | None = None
    files: tuple[tuple[str, bytes], ...] = ()


@dataclass(frozen=True, slots=True)
class StdinState:
    """How much of a job's stdin has arrived, and whether it is complete."""

    bytes: int
    closed: bool


@dataclass(frozen=True, slots=True)
class ReceiverSettings:
    """What the daemon's configuration says about accepting jobs.

    Attributes:
        default_backend: The backend of jobs that name none.
        webhook_signing: Whether callbacks can be signed (a webhook secret is set).
        mail_sending: Whether results can be mailed (a ``[mail]`` table is configured).
        config_file: The daemon's configuration file, which a refusal's hint names
            (``None``: it read none).
        max_stdin_bytes: The largest stdin accepted, or ``None`` for no limit.
    """

    default_backend: str
    webhook_signing: bool = False
    mail_sending: bool = False
    config_file: str | None = None
    max_stdin_bytes: int | None = None


@dataclass
class Receiver:
    """Accepts jobs, cancels them and takes their stdin.

    Args:
        store: Where jobs are committed.
        spool: Where their files go.
        backends: The configured backends by name (each validates its jobs).
        settings: See :class:`ReceiverSettings`.
        wake: Asks the monitor to look at a backend (``None``: a cycle for all).
    """

    store: Store
    spool: Spool
    backends: Mapping[str, Backend]
    settings: ReceiverSettings
    wake: Callable[[str | None], None]
    _stdin_locks: dict[str, asyncio.Lock] = field(default_factory=dict, init=False)
    _uploading: Counter[str] = field(default_factory=Counter, init=False)

    def is_uploading(self, job_id: str) -> bool:
        """Tell whether a client is sending the job's stdin right now (a request of
        its upload is in progress, even one that waits for its producer)."""
        return self._uploading[job_id] > 0

    # -- accepting --------------------------------------------------------------------

    def accept(self, submissions: Sequence[Submission],
               key: str | None = None) -> list[tuple[Job, bool]]:
        """Check every job, then commit them all in one transaction (or none).

        With an idempotency key, job ``i`` of the call is known by ``key`` (one job)
        or ``key#i`` (several); a retry gets the jobs it made, even if the world
        changed since (a working directory gone).

        Returns:
            Each job and whether this call created it.

        Raises:
            InvalidRequest: a job cannot run here (its backend, deliveries, working
                directory); nothing was accepted.
            Conflict: the key was used before for a different request.
        """
        keys: list[str | None]
        if key is None:
            keys = [None] * len(submissions)
        elif len(submissions) == 1:
            keys = [key]
        else:
            keys = [f"{key}#{i}" for i in range(len(submissions))]
        new: list[NewJob] = []
        to_write: list[tuple[str, Submission]] = []
        # One query for every key of the call, not one per job.
        used = self.store.request_hashes([k for k in keys if k is not None])
        fresh = iter(new_job_ids(len(submissions)))
        for item, job_key in zip(submissions, keys, strict=True):
            spec_json = item.spec.model_dump_json()
            digest = hashlib.sha256(spec_json.encode()).hexdigest()
            if job_key in used and used[job_key] != digest:
                raise Conflict("this Idempotency-Key was already used for a different job",
                               hint="use a new key for a new job", code="idempotency_conflict")
            job_id = item.job_id or next(fresh)
            if job_key not in used:
                self.check(item.spec)
                if item.files:
                    # Otherwise the job's directory is made when it is needed (its stdin
                    # arrives, or it is dispatched): a queued job costs a row, no more.
                    to_write.append((job_id, item))
            backend = item.spec.backend or self.settings.default_backend
            new.append(NewJob(item.spec, backend, job_id, job_key, digest, item.document,
                              spec_json))
        written: list[Path] = []
        try:
            for job_id, item in to_write:
                written.append(self._write_files(job_id, item))
            accepted = self.store.create_jobs(new)
        except BaseException:
            for directory in written:
                shutil.rmtree(directory, ignore_errors=True)
            raise
        self.wake(None)
        return accepted

    def check(self, spec: JobSpec) -> None:
        """Check that a job can run here.

        Raises:
            InvalidRequest: naming what is wrong (its backend, what the backend refuses,
                a webhook without a secret to sign it, a mail without a mail server to
                send it, a working directory that does not exist).
        """
        backend = spec.backend or self.settings.default_backend
        if backend not in self.backends:
            raise InvalidRequest(
                f"no backend named {backend!r} is configured",
                hint=f"use one of: {', '.join(sorted(self.backends))}; a [backends.{backend}] "
                     f"table in {self._config_file()} makes another available",
                code="unknown_backend",
            )
        self.backends[backend].validate(spec)
        if not self.settings.webhook_signing and any(
                d.type == "webhook" for d in spec.deliveries):
            raise InvalidRequest(
                "this daemon has no webhook secret, so it cannot sign callbacks",
                hint=f"set [webhook] secret in {self._config_file()}",
                code="webhook_unavailable",
            )
        if not self.settings.mail_sending and any(d.type == "email" for d in spec.deliveries):
            # Accepted, the mail would be retried against a server that is not there for
            # days, and keep a private daemon from ever stopping.
            raise InvalidRequest(
                "this daemon has no [mail] configuration, so it cannot mail results",
                hint=f"add a [mail] table (host, sender) to {self._config_file()}, or fetch "
                     "the result with -t poll and acpoll",
                code="mail_unavailable",
            )
        if spec.workdir is not None and not _is_dir(spec.workdir):
            raise InvalidRequest(f"the working directory {spec.workdir[:256]} does not exist",
                                 hint="name a directory that exists where the daemon runs, "
                                      "or none: each job then gets a fresh one",
                                 code="invalid_workdir")

    def _config_file(self) -> str:
        """Name the daemon's configuration file for a hint, and say that a change to it
        takes a restart (the daemon reads it once, when it starts)."""
        where = (self.settings.config_file or
                 "the daemon's configuration file (docs/operations.md says where)")
        return (f"{where}, then restart the daemon (ac shutdown; a private daemon starts "
                "again with the next command)")

    def _write_files(self, job_id: str, item: Submission) -> Path:
        self.spool.create_job(job_id)
        for name, content in item.files:
            self.spool.write_job_file(job_id, name, content)
        return self.spool.job_dir(job_id)

    # -- cancelling -------------------------------------------------------------------

    def cancel(self, job_id: str) -> Job:
        """Cancel a job: at once if it never started, else through ``CANCELING``.

        Raises:
            NotFound: no such job.
            Conflict: the job already ended otherwise.
        """
        job = self.store.change_state(job_id, after_cancel_request, "canceled by request")
        self.wake(job.backend)
        return job

    # -- stdin ------------------------------------------------------------------------

    def stdin_state(self, job_id: str) -> StdinState:
        """Tell how many stdin bytes have arrived (where a broken upload resumes).

        Raises:
            NotFound: no such job.
        """
        job = self.store.get(job_id)
        if job.stdin_closed:
            return StdinState(job.stdin_bytes or 0, True)
        return StdinState(self.spool.stdin_size(job_id), False)

    async def write_stdin(self, job_id: str, offset: int, body: AsyncIterator[bytes], *,
                          final: bool) -> StdinState:
        """Write ``body`` into the job's stdin at ``offset``; ``final`` closes it.

        Bytes after ``offset`` are discarded first, so a resent chunk never duplicates
        anything. The job may already run and read its stdin as it arrives (see
        :mod:`acjob.feeder`); each chunk is in the spool file before the next is read.
        Closing flushes stdin to disk and writes its close mark (the final size), then
        records the size in the store. Closing again at the same size, with no body,
        changes nothing. Uploads to one job are taken one at a time.

        Raises:
            NotFound: no such job.
            Conflict: the job takes no stdin, or its stdin is already closed.
            PayloadTooLarge: the upload passes the configured limit.
            StorageFull: the spool has no room left; what was written is kept.
        """
        with self._upload(job_id):
            return await self._write_stdin(job_id, offset, body, final=final)

    @contextlib.asynccontextmanager
    async def stdin_writer(self, job_id: str) -> AsyncIterator[tuple[int, int]]:
        """Hold the job's stdin for a client on this machine that writes it itself
        (:mod:`acjob.server.handoff`), while the block runs: other uploads to the job
        wait, and the client counts as sending. Yields the stdin file open for writing
        and its size; the client writes on from that size (the kernel cannot move
        bytes from a pipe into a file opened for appending only).

        The client closes stdin afterwards with an empty final upload, which flushes
        it and records its size, as for any upload.

        Raises:
            NotFound: no such job.
            Conflict: the job takes no stdin, its stdin is closed, or it ended.
            Gone: its files were removed.
        """
        with self._upload(job_id):
            lock = self._stdin_locks.setdefault(job_id, asyncio.Lock())
            async with lock:
                job = self.store.get(job_id)
                if (closed_at := self._closed_at(job)) is not None:
                    raise Conflict(f"stdin is closed at {closed_at} bytes", code="stdin_closed")
                self._refuse_final(job)
                self.spool.create_job(job_id)
                fd = os.open(self.spool.stdin_path(job_id),
                             os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
                try:
                    yield fd, os.fstat(fd).st_size
                finally:
                    os.close(fd)

    @contextlib.contextmanager
    def _upload(self, job_id: str) -> Iterator[None]:
        """Count a client as sending the job's stdin while the block runs (see
        :meth:`is_uploading`), once the job was found to take stdin at all."""
        job = self.store.get(job_id)
        if job.spec.stdin != "upload":
            raise Conflict("this job was submitted without stdin upload", code="no_stdin")
        if job.purged_at is not None:
            # Its directory is gone for good: never make it again.
            raise Gone(f"the files of job {job_id} were removed", code="output_expired")
        self._uploading[job_id] += 1
        try:
            yield
        finally:
            self._uploading[job_id] -= 1
            if self._uploading[job_id] <= 0:
                del self._uploading[job_id]

    def _closed_at(self, job: Job) -> int | None:
        """Return the size at which the job's stdin was closed, or ``None`` if it is open.

        The close mark is the truth for the job's feeder: once it is written no byte may
        change, even if a crash kept the store from hearing of it."""
        return job.stdin_bytes if job.stdin_closed else self.spool.closed_stdin_size(job.id)

    def _refuse_final(self, job: Job) -> None:
        """Refuse stdin for a job that ended before its stdin was complete (canceled, or
        its upload given up): bytes sent now would reach nobody."""
        if job.state.is_final:
            self._stdin_locks.pop(job.id, None)
            raise Conflict(f"job {job.id} ended {job.state.value} before its stdin was "
                           f"complete: {job.reason or 'no reason recorded'}",
                           code="job_final")

    async def _write_stdin(self, job_id: str, offset: int, body: AsyncIterator[bytes], *,
                           final: bool) -> StdinState:
        lock = self._stdin_locks.setdefault(job_id, asyncio.Lock())
        async with lock:
            job = self.store.get(job_id)
            closed_at = self._closed_at(job)
            if closed_at is not None:
                if final and offset == closed_at and not await _has_data(body):
                    if not job.stdin_closed:
                        self.store.close_stdin(job_id, closed_at)
                    self._stdin_locks.pop(job_id, None)
                    return StdinState(closed_at, True)
                raise Conflict(f"stdin is closed at {closed_at} bytes", code="stdin_closed")
            self._refuse_final(job)
            self.spool.create_job(job_id)
            size = await self.spool.write_stdin(job_id, offset, body,
                                                self.settings.max_stdin_bytes)
            limit = self.settings.max_stdin_bytes
            if final and limit is not None and size > limit:
                # Written by a client of its own (see stdin_writer), past the limit.
                raise PayloadTooLarge(f"stdin is larger than the limit of {limit} bytes")
            if final:
                size = self.spool.close_stdin(job_id)
                self.store.close_stdin(job_id, size)
                self._stdin_locks.pop(job_id, None)
                self.wake(None)
            return StdinState(size, final)


async def _has_data(body: AsyncIterator[bytes]) -> bool:
    async for chunk in body:
        if chunk:
            return True
    return False


def _is_dir(path: str) -> bool:
    try:
        return Path(path).is_dir()
    except OSError:  # a name too long, a directory we may not search, …
        return False
