"""Starting jobs: queued jobs become attempts on backends that have room.

The dispatcher records each attempt's intent before it calls the backend (a crash in
between is healed by the monitor: found by its tag, or fenced), hands jobs that share
their resources to a scheduler as one job array, and holds a backend back, with a
growing wait, while it cannot take submissions.
"""

from __future__ import annotations

import functools
import logging
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from . import feeder, lifecycle
from .backends.base import ArrayBackend, Backend
from .errors import AcjobError, JobRefused, TransientError
from .model import Job, State
from .spool import Spool
from .store import GroupCommit, Store
from .store.database import grouped
from .wrapper import render_wrapper

log = logging.getLogger("acjob.monitor")

#: How long to wait before submitting again to a backend that was unavailable; the
#: wait doubles with each failure in a row, up to MAX_SUBMIT_BACKOFF.
SUBMIT_BACKOFF = 5.0
#: The longest wait between two submissions to an unavailable backend. Each try
#: abandons one fenced attempt, so a day's outage costs a job a few hundred of them,
#: not tens of thousands.
MAX_SUBMIT_BACKOFF = 300.0

_DISPATCH_BATCH = 200


class Dispatcher:
    """Submits the next attempts of dispatchable jobs; one per monitor."""

    def __init__(self, store: Store, spool: Spool, backends: Mapping[str, Backend], *,
                 job_umask: int, hold: bool, submitted: Callable[[str], None],
                 kick: Callable[[], None], commits: GroupCommit | None = None) -> None:
        """Wire the dispatcher to the monitor that owns it.

        Args:
            store: Where intents and native ids are recorded.
            spool: Where wrappers are written and attempts fenced.
            backends: The configured backends by name.
            job_umask: The umask jobs run with.
            hold: Start nothing (maintenance, or fuzzing the API): jobs are accepted
                and wait.
            submitted: Called with a backend's name after it took attempts.
            kick: Asks the monitor for another cycle soon.
            commits: The store's group commit: the intents recorded in one dispatch
                share one flush, awaited before any of them is submitted (``None``:
                each intent is flushed as it is recorded).
        """
        self._store = store
        self._spool = spool
        self._backends = backends
        self._job_umask = job_umask
        self._hold = hold
        self._on_submitted = submitted
        self._kick = kick
        self._commits = commits
        self._hold_until: dict[str, float] = {}
        self._submit_failures: dict[str, int] = {}
        # Jobs refused in words not known (JobRefused), held back alone: job id ->
        # (refusals so far, when it may be tried again). Submitted singly from then on,
        # so that one job's trouble never sinks an array of others.
        self._job_holds: dict[str, tuple[int, float]] = {}

    def resumes_at(self) -> float | None:
        """Return when the earliest backend or job held back after failures may be tried
        again."""
        times = [*self._hold_until.values(), *(t for _, t in self._job_holds.values())]
        return min(times, default=None)

    async def dispatch(self) -> None:
        """Start queued jobs while the backends have room (none while held)."""
        if self._hold:
            return
        now = time.monotonic()
        counts = self._store.count_started_by_backend()
        for name, backend in self._backends.items():
            if now < self._hold_until.get(name, 0.0):
                continue
            self._hold_until.pop(name, None)
            room = _DISPATCH_BATCH
            if backend.capacity is not None:
                room = min(room, backend.capacity - counts.get(name, 0))
            if room <= 0:
                continue
            held = {job_id for job_id, (_, until) in self._job_holds.items() if now < until}
            jobs = self._store.dispatchable(room, backend=name, exclude=held)
            # (isinstance of a runtime-checkable protocol looks at every member: last.)
            if len(jobs) > 1 and isinstance(backend, ArrayBackend) \
                    and not any(job.id in self._job_holds for job in jobs):
                if not await self._submit_arrays(jobs, backend):
                    continue
                if len(jobs) == room:
                    self._kick()
                continue
            for job in jobs:
                if backend.capacity is not None:
                    # A slot per cpu; first come, first served (no overtaking).
                    need = job.spec.resources.cpus or 1
                    if need > backend.capacity:
                        self._store.change_state(
                            job.id, lifecycle.after_failure,
                            f"the job asks for {need} cpus; the {name} backend has "
                            f"{backend.capacity} slots")
                        continue
                    if need > room:
                        break
                    room -= need
                if not await self._submit(job, backend):
                    break
            if len(jobs) == room and backend.capacity is None:
                self._kick()

    def _prepare(self, job: Job, backend: Backend) -> tuple[int, Path] | None:
        """Record the intent to submit the job's next attempt and write its wrapper.

        Returns the attempt number and the wrapper, or ``None`` if the spool failed
        (the attempt is then ended as a submission failure).
        """
        grouping = grouped.set(self._commits is not None)
        try:
            number = self._store.start_attempt(job.id).number
        finally:
            grouped.reset(grouping)
        try:
            # The job's directories are made with the attempt's (create_attempt).
            workdir = self._spool.work_dir(job.id)
            if job.spec.workdir is not None:
                workdir = Path(job.spec.workdir)
            stdin = self._spool.stdin_path(job.id) if job.spec.stdin == "upload" else None
            feed = None
            if stdin is not None and not job.stdin_closed \
                    and self._spool.closed_stdin_size(job.id) is None:
                # Still arriving: the command reads it through the feeder, as it comes.
                # (A stdin closed by a version without close marks is whole in its file.)
                feed = [sys.executable, "-I", "-S", feeder.__file__, str(stdin),
                        str(self._spool.stdin_mark_path(job.id))]
            script = render_wrapper(
                job_id=job.id, attempt=number,
                attempt_dir=self._spool.attempt_dir(job.id, number), workdir=workdir,
                command=job.spec.command, stdin=stdin, env=job.spec.env,
                umask=self._job_umask, ignore=backend.ignored_signals, feed=feed,
            )
            return number, self._spool.create_attempt(job.id, number, script)
        except OSError as exc:
            reason = f"cannot prepare the job's files in the spool: {exc.strerror or exc}"
            self._store.end_attempt(job.id, number,
                                    lambda current: lifecycle.conclude_unprepared(current, reason))
            return None

    async def _submit(self, job: Job, backend: Backend) -> bool:
        """Submit the job's next attempt; return False if the backend should be left alone."""
        prepared = self._prepare(job, backend)
        if prepared is None:
            return True
        number, wrapper = prepared
        await self._intents_flushed()
        try:
            native_id = await backend.submit(job, number, wrapper)
        except AcjobError as exc:
            return self._submit_failed(backend, [(job, number)], exc)
        self._submitted(backend, [(job, number, native_id)])
        return True

    async def _submit_arrays(self, jobs: list[Job], backend: ArrayBackend) -> bool:
        """Submit jobs that share their resources as job arrays, one array per kind."""
        groups: dict[str, list[Job]] = {}
        for job in jobs:
            groups.setdefault(job.spec.resources.model_dump_json(), []).append(job)
        for group in groups.values():
            items = [(job, *p) for job in group if (p := self._prepare(job, backend)) is not None]
            if not items:
                continue
            await self._intents_flushed()
            try:
                if len(items) == 1:
                    ids = [await backend.submit(*items[0])]
                else:
                    ids = await backend.submit_array(items)
            except AcjobError as exc:
                if not self._submit_failed(backend, [(j, n) for j, n, _ in items], exc):
                    return False
                continue
            self._submitted(backend, [(j, n, i) for (j, n, _), i in zip(items, ids, strict=True)])
        return True

    async def _intents_flushed(self) -> None:
        """Return once every intent recorded so far is on disk: a backend is never
        asked to run an attempt that a power cut could make the store forget."""
        if self._commits is not None and self._commits.pending:
            await self._commits.barrier()

    def _submitted(self, backend: Backend, done: list[tuple[Job, int, str]]) -> None:
        for job, number, native_id in done:
            self._store.attempt_submitted(job.id, number, native_id,
                                          running=backend.runs_on_submit)
            self._job_holds.pop(job.id, None)
        self._submit_failures.pop(backend.name, None)
        self._on_submitted(backend.name)

    def _submit_failed(self, backend: Backend, attempts: list[tuple[Job, int]],
                       exc: AcjobError) -> bool:
        """Settle attempts whose submission failed; return False to leave the backend be."""
        if isinstance(exc, JobRefused):
            self._refused(backend, attempts, exc)
            return True  # the backend's other jobs go on
        if isinstance(exc, TransientError):
            log.warning("cannot submit to %s now: %s", backend.name, exc)
            for job, number in attempts:
                # The scheduler may have queued it after all: the fence makes it a no-op.
                if self._spool.fence(job.id, number):
                    self._store.abandon_attempt(job.id, number, f"backend unavailable: {exc}",
                                                lifecycle.after_abandon)
            failures = self._submit_failures.get(backend.name, 0) + 1
            self._submit_failures[backend.name] = failures
            self._hold_until[backend.name] = time.monotonic() + submit_backoff(failures)
            return False
        for job, number in attempts:
            ended = self._store.end_attempt(
                job.id, number, lambda current: lifecycle.conclude_refusal(current, str(exc)))
            if ended.state is State.PREEMPTED:
                self._kick()
        return True


    def _refused(self, backend: Backend, attempts: list[tuple[Job, int]],
                 exc: JobRefused) -> None:
        """Hold each refused job back alone, with a growing pause; end it with the
        scheduler's words once it was refused ``backend.refusal_tries`` times."""
        for job, number in attempts:
            refusals = self._job_holds.get(job.id, (0, 0.0))[0] + 1
            if refusals >= backend.refusal_tries:
                self._job_holds.pop(job.id, None)
                ended = self._store.end_attempt(job.id, number, functools.partial(
                    _conclude_refusal,
                    f"{exc} (refused {refusals} time{'s' if refusals > 1 else ''})"))
                if ended.state is State.PREEMPTED:
                    self._kick()
                continue
            log.warning("job %s: %s; trying it again alone (refused %d of %d times)",
                        job.id, exc, refusals, backend.refusal_tries)
            # The scheduler refused it; should it have queued it all the same, the fence
            # makes that a no-op.
            if self._spool.fence(job.id, number):
                self._store.abandon_attempt(job.id, number, f"refused for now: {exc}",
                                            lifecycle.after_abandon)
            self._job_holds[job.id] = (refusals, time.monotonic() + submit_backoff(refusals))


def _conclude_refusal(reason: str, job: Job) -> lifecycle.AttemptEnd:
    return lifecycle.conclude_refusal(job, reason)


def submit_backoff(failures: int) -> float:
    """Return the wait before the next submission after ``failures`` transient ones in a
    row: 5 s, 10 s, 20 s… up to :data:`MAX_SUBMIT_BACKOFF`."""
    return min(MAX_SUBMIT_BACKOFF, SUBMIT_BACKOFF * 2.0 ** min(failures - 1, 32))
