"""Group commit: what a request acknowledges is on disk before any answer, and many
requests share one flush (acjob.server.commits, acjob.store.database)."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest

from acjob.model import JobSpec, new_job_id
from acjob.server.commits import GroupCommit
from acjob.server.guard import _after_flush
from acjob.store import Store
from acjob.store.database import answering


def _create(store: Store) -> str:
    return store.create_job(JobSpec(command="true"), "local", job_id=new_job_id())[0].id


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
    token = answering.set(True)
    try:
        _create(store)
    finally:
        answering.reset(token)
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
        answering.set(True)  # as the guard sets it, in the request's own task

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
    token = answering.set(True)
    try:
        _create(store)
    finally:
        answering.reset(token)

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
    token = answering.set(True)
    try:
        _create(store)
    finally:
        answering.reset(token)
    assert not commits.pending
    store.close()
