"""The monitor's decisions for a batch scheduler that is slow to explain an end.

The scheduler here is a scripted stand-in (the monitor's rules are pure decisions
over what a backend reports); the same paths run against real Slurm and Grid Engine
in tests/integration/test_schedulers.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Collection, Mapping
from pathlib import Path

import pytest

from acjob.model import (
    Attempt,
    ExitRecord,
    FailureKind,
    Job,
    JobSpec,
    Observation,
    State,
    new_job_id,
)
from acjob.monitor import Monitor
from acjob.spool import Spool
from acjob.store import Store
from acjob.wrapper import EXIT_FILE, PROGRESS_FILE


class SlowAccounting:
    """A batch scheduler whose job ends with SIGUSR2 in its exit file (a deletion)
    and whose accounting tells so only after ``explain_after`` questions."""

    name = "sched"
    capacity = None
    poll_interval = 0.01
    max_poll_interval = 0.01
    notifies_exits = False
    enforces_time_limits = True
    runs_on_submit = False
    ignored_signals = ()

    def __init__(self, spool: Spool, lost_grace: float, explain_after: int,
                 answer: Observation | None) -> None:
        self.lost_grace = lost_grace
        self._spool = spool
        self._after = explain_after
        self._answer = answer
        self.submitted: list[tuple[str, int]] = []
        self.questions = 0
        self.asked = asyncio.Event()

    def validate(self, spec: JobSpec) -> None:
        """Anything goes."""

    async def start(self, wake: Callable[[], None]) -> None:
        """Nothing to start."""

    async def close(self) -> None:
        """Nothing to release."""

    async def submit(self, job: Job, attempt: int, wrapper: Path) -> str:
        """The job runs at once and is deleted: its wrapper notes SIGUSR2."""
        self.submitted.append((job.id, attempt))
        (wrapper.parent / EXIT_FILE).write_text("140 USR2\n")
        return f"{len(self.submitted)}"

    async def poll(self, native_ids: Collection[str]) -> Mapping[str, Observation]:
        """The scheduler no longer lists any of them."""
        return {native_id: Observation("gone") for native_id in native_ids}

    async def find(self, job: Job, attempt: int) -> str | None:
        """Never needed: every submission returns its id."""
        return None

    async def cancel(self, native_id: str) -> None:
        """Nothing left to cancel."""

    async def explain(self, job: Job, attempt: Attempt,
                      record: ExitRecord | None) -> Observation | None:
        """``None`` (the record is not written yet) until enough questions were asked."""
        self.questions += 1
        self.asked.set()
        return self._answer if self.questions > self._after else None


async def _run(tmp_path: Path, backend_of: Callable[[Spool], SlowAccounting],
               max_attempts: int = 3) -> tuple[Job, SlowAccounting]:
    store = Store(tmp_path / "acjob.db")
    spool = Spool(tmp_path / "spool")
    backend = backend_of(spool)
    monitor = Monitor(store, spool, {backend.name: backend})
    job, _ = store.create_job(JobSpec(command="sleep 60", retry={"max_attempts": max_attempts}),
                              backend.name, job_id=new_job_id())
    task = asyncio.create_task(monitor.run())
    try:
        async with asyncio.timeout(30):
            while not store.get(job.id).state.is_final:
                backend.asked.clear()
                await backend.asked.wait()
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    return store.get(job.id), backend


def test_a_deletion_is_awaited_from_the_accounting_not_taken_for_a_loss(
        tmp_path: Path) -> None:
    """A wrapper that noted SIGUSR2 while the accounting record is not yet written: the
    monitor asks again instead of ending the attempt as lost (and running it again)."""
    canceled = Observation("canceled", reason="deleted in the scheduler")
    job, backend = asyncio.run(_run(tmp_path, lambda spool: SlowAccounting(
        spool, lost_grace=3600, explain_after=5, answer=canceled)))
    assert job.state is State.CANCELED
    assert backend.questions == 6
    assert len(backend.submitted) == 1


def test_without_an_explanation_the_grace_ends_it_as_lost(tmp_path: Path) -> None:
    job, backend = asyncio.run(_run(tmp_path, lambda spool: SlowAccounting(
        spool, lost_grace=0.2, explain_after=10**9, answer=None), max_attempts=1))
    assert job.state is State.SYSTEM_ERROR
    assert job.attempts[-1].failure is FailureKind.LOST
    assert job.reason is not None and "SIGUSR2" in job.reason
    assert backend.questions > 1


def test_submissions_to_an_unavailable_backend_back_off() -> None:
    from acjob.dispatcher import MAX_SUBMIT_BACKOFF, SUBMIT_BACKOFF, submit_backoff

    waits = [submit_backoff(n) for n in range(1, 12)]
    assert waits[0] == SUBMIT_BACKOFF
    assert waits == sorted(waits) and waits[1] == 2 * waits[0]
    assert waits[-1] == MAX_SUBMIT_BACKOFF == submit_backoff(10**6)


def test_an_attempt_that_ended_before_its_id_was_recorded_keeps_its_last_progress(
        tmp_path: Path) -> None:
    """The daemon died between "submitting" and the backend's id, the job ran and
    ended meanwhile: its end comes from its exit file, with its last progress report."""
    store = Store(tmp_path / "acjob.db")
    spool = Spool(tmp_path / "spool")
    backend = SlowAccounting(spool, lost_grace=3600, explain_after=0, answer=None)
    monitor = Monitor(store, spool, {backend.name: backend})
    job, _ = store.create_job(JobSpec(command="true"), backend.name, job_id=new_job_id())
    number = store.start_attempt(job.id).number
    spool.create_job(job.id)
    attempt_dir = spool.create_attempt(job.id, number, "#!/bin/sh\n").parent
    (attempt_dir / PROGRESS_FILE).write_text("75 slept\n")
    (attempt_dir / EXIT_FILE).write_text("0\n")
    asyncio.run(monitor.cycle())
    ended = store.get(job.id)
    assert ended.state is State.COMPLETE
    assert ended.progress is not None
    assert (ended.progress.percent, ended.progress.message) == (75.0, "slept")


def test_a_local_job_runs_and_ends_without_a_poll(tmp_path: Path) -> None:
    """The local backend's attempt is recorded running with its process id, and its end
    comes through the process's pidfd: no poll of the backend is needed on the way."""
    from acjob.backends.local import LocalBackend

    async def main() -> tuple[Job, int]:
        store = Store(tmp_path / "acjob.db")
        spool = Spool(tmp_path / "spool")
        backend = LocalBackend(spool, {"slots": 1})
        polls = 0
        poll = backend.poll

        async def counted(native_ids: Collection[str]) -> Mapping[str, Observation]:
            nonlocal polls
            polls += 1
            return await poll(native_ids)

        backend.poll = counted  # type: ignore[method-assign]
        monitor = Monitor(store, spool, {"local": backend})
        job, _ = store.create_job(JobSpec(command="true"), "local", job_id=new_job_id())
        task = asyncio.create_task(monitor.run())
        try:
            async with asyncio.timeout(30):
                while not store.get(job.id).state.is_final:
                    await asyncio.sleep(0.01)
        finally:
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        return store.get(job.id), polls

    job, polls = asyncio.run(main())
    assert job.state is State.COMPLETE and polls == 0
    [attempt] = job.attempts
    assert attempt.native_id is not None and attempt.started_at is not None
