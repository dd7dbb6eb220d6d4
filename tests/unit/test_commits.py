"""Group commit: what a request acknowledges is on disk before any answer, and many
requests share one flush (acjob.store.commits, acjob.store.database)."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest

from acjob.dispatcher import Dispatcher
from acjob.model import Job, JobSpec, new_job_id
from acjob.server.guard import _after_flush
from acjob.spool import Spool
from acjob.store import GroupCommit, Store
from acjob.store.database import grouped


def _create(store: Store) -> str:
    return store.create_job(JobSpec(command="true"), "local", job_id=new_job_id())[0].id


def _create_for_a_request(store: Store) -> str:
    """Create a job as a request does: with its acknowledged commit left to a group."""
    token = grouped.set(True)
    try:
        return _create(store)
    finally:
        grouped.reset(token)


class _Recorder:
    """Records, in order, each commit, each flush's start and end, and each answer."""

    def __init__(self, store: Store) -> None:
        self.events: list[str] = []
        self._lock = threading.Lock()
        database = store.database
        real_sync = database.sync

        def sync() -> None:
            self.note("sync-start")
            real_sync()
            self.note("sync-end")

        database.sync = sync  # type: ignore[method-assign]

    def note(self, event: str) -> None:
        with self._lock:
            self.events.append(event)


def test_a_request_commit_waits_for_the_group_flush(tmp_path: Path) -> None:
    store = Store(tmp_path / "db")
    commits = GroupCommit(store.database)
    statements: list[str] = []
    store._db.set_trace_callback(statements.append)
    _create_for_a_request(store)
    # Committed, not flushed by itself: the flush is left to the barrier.
    assert "COMMIT" in statements and "PRAGMA synchronous=FULL" not in statements
    assert commits.pending
    asyncio.run(commits.barrier())
    assert not commits.pending and commits.flushes == 1
    # Outside a request (the monitor, the janitor) an acknowledged commit is flushed
    # as it is made: what follows it is an act on the world.
    statements.clear()
    _create(store)
    assert "PRAGMA synchronous=FULL" in statements and not commits.pending
    store.close()


def test_no_answer_leaves_before_its_commit_is_flushed_and_requests_share_flushes(
        tmp_path: Path) -> None:
    """Twenty requests at once, each committing a job and then answering through the
    guard's send: every answer comes after a flush that began after its commit, and
    fewer flushes than requests were made."""
    store = Store(tmp_path / "db")
    commits = GroupCommit(store.database)
    recorder = _Recorder(store)

    async def request(k: int) -> None:
        grouped.set(True)  # as the guard sets it, in the request's own task

        async def send(message: object) -> None:
            recorder.note(f"answer-{k}")

        await asyncio.sleep(0)
        _create(store)
        recorder.note(f"commit-{k}")
        await _after_flush(send, commits)({"type": "http.response.start"})

    async def main() -> None:
        await asyncio.gather(*(asyncio.create_task(request(k)) for k in range(20)))

    asyncio.run(main())
    events = recorder.events
    for k in range(20):
        committed, answered = events.index(f"commit-{k}"), events.index(f"answer-{k}")
        flushed = [i for i, e in enumerate(events) if e == "sync-end" and i < answered
                   and "sync-start" in events[committed:i]]
        assert flushed, (k, events)
    assert 1 <= commits.flushes < 20
    assert store.database.synced == store.database.committed == 20
    store.close()


def test_an_answer_with_nothing_to_flush_goes_at_once(tmp_path: Path) -> None:
    store = Store(tmp_path / "db")
    commits = GroupCommit(store.database)
    sent: list[object] = []

    async def send(message: object) -> None:
        sent.append(message)

    asyncio.run(_after_flush(send, commits)({"type": "http.response.start"}))
    assert sent and commits.flushes == 0
    store.close()


def test_a_failed_flush_reaches_every_waiter(tmp_path: Path) -> None:
    store = Store(tmp_path / "db")
    commits = GroupCommit(store.database)

    def broken() -> None:
        raise OSError(5, "Input/output error")

    store.database.sync = broken  # type: ignore[method-assign]
    _create_for_a_request(store)

    async def main() -> list[BaseException | None]:
        return await asyncio.gather(commits.barrier(), commits.barrier(),
                                    return_exceptions=True)

    outcomes = asyncio.run(main())
    assert all(isinstance(o, OSError) for o in outcomes)
    assert commits.pending  # nothing is taken as flushed
    store.close()


@pytest.mark.parametrize("mode", ["normal", "full"])
def test_other_modes_never_group(tmp_path: Path, mode: str) -> None:
    store = Store(tmp_path / "db", synchronous=mode)
    commits = GroupCommit(store.database)
    _create_for_a_request(store)
    assert not commits.pending
    store.close()


class _Recording:
    """A backend that notes, at each submission, whether a commit still waited for its
    flush (the scheduler of a real run: what it is asked to run must not be forgotten)."""

    name = "sched"
    capacity = None
    poll_interval = 1.0
    max_poll_interval = 1.0
    lost_grace = 1.0
    notifies_exits = False
    enforces_time_limits = True
    runs_on_submit = False
    ignored_signals = ()
    refusal_tries = 5

    def __init__(self, commits: GroupCommit) -> None:
        self._commits = commits
        self.unflushed_at_submit: list[bool] = []

    async def submit(self, job: Job, attempt: int, wrapper: Path) -> str:
        self.unflushed_at_submit.append(self._commits.pending)
        return str(len(self.unflushed_at_submit))


def test_an_attempts_intent_is_flushed_before_its_backend_is_asked(tmp_path: Path) -> None:
    """The dispatcher records intents without a flush of their own and waits for the
    group flush before each submission."""
    store = Store(tmp_path / "db")
    commits = GroupCommit(store.database)
    backend = _Recording(commits)
    dispatcher = Dispatcher(store, Spool(tmp_path / "spool"), {"sched": backend},
                            job_umask=0o022, hold=False, submitted=lambda name: None,
                            kick=lambda: None, commits=commits)
    for _ in range(3):
        store.create_job(JobSpec(command="true"), "sched", job_id=new_job_id())
    statements: list[str] = []
    store._db.set_trace_callback(statements.append)
    asyncio.run(dispatcher.dispatch())
    assert backend.unflushed_at_submit == [False, False, False]
    assert store.database.committed == 3 and 1 <= commits.flushes <= 3
    assert "PRAGMA synchronous=FULL" not in statements  # no intent flushed by itself
    store.close()


def test_alone_the_flush_is_made_at_once_without_a_thread(tmp_path: Path) -> None:
    store = Store(tmp_path / "db")
    commits = GroupCommit(store.database)
    commits.crowded = lambda: False
    threads: list[int] = []
    real_sync = store.database.sync

    def sync() -> None:
        threads.append(threading.get_ident())
        real_sync()

    store.database.sync = sync  # type: ignore[method-assign]
    _create_for_a_request(store)
    asyncio.run(commits.barrier())
    assert threads == [threading.get_ident()] and not commits.pending
    store.close()
