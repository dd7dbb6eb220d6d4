"""Retention: finished jobs' files go after the retention time; their records stay."""

from __future__ import annotations

import time
from pathlib import Path

from acjob.janitor import end_abandoned_uploads, sweep
from acjob.lifecycle import conclude_exit
from acjob.model import JobSpec, new_job_id
from acjob.spool import Spool
from acjob.store import Store


def test_sweep_removes_only_expired_final_jobs(tmp_path: Path) -> None:
    store = Store(tmp_path / "db")
    spool = Spool(tmp_path / "spool")
    ids = []
    for _ in range(3):
        job, _ = store.create_job(JobSpec(command="true"), "local", job_id=new_job_id())
        spool.create_job(job.id)
        ids.append(job.id)
    for job_id in ids[:2]:
        attempt = store.start_attempt(job_id)
        store.end_attempt(job_id, attempt.number, lambda job: conclude_exit(job, 0))
    # ids[2] is still queued: never removed, however old.
    assert sweep(store, spool, 3600) == 0
    assert sweep(store, spool, 3600, now=time.time() + 7200) == 2
    assert not spool.job_dir(ids[0]).exists() and not spool.job_dir(ids[1]).exists()
    assert spool.job_dir(ids[2]).exists()
    assert store.get(ids[0]).purged_at is not None
    assert store.get(ids[0]).exit_code == 0
    assert sweep(store, spool, 3600, now=time.time() + 7200) == 0


def test_abandoned_uploads_end_with_the_bytes_they_reached(tmp_path: Path) -> None:
    store = Store(tmp_path / "db")
    spool = Spool(tmp_path / "spool")
    job, _ = store.create_job(JobSpec(command="cat", stdin="upload"), "local",
                              job_id=new_job_id())
    spool.create_job(job.id)
    spool.stdin_path(job.id).write_bytes(b"partial")
    never = lambda job_id: False  # noqa: E731
    assert end_abandoned_uploads(store, spool, never, 60) == []  # a byte came just now
    assert store.get(job.id).state.value == "QUEUED"
    later = time.time() + 120
    # A client still sending (its producer silent) keeps the job waiting.
    assert end_abandoned_uploads(store, spool, lambda job_id: True, 60, now=later) == []
    assert [j.id for j in end_abandoned_uploads(store, spool, never, 60, now=later)] == [job.id]
    ended = store.get(job.id)
    assert ended.state.value == "SYSTEM_ERROR"
    assert "stopped at 7 bytes" in (ended.reason or "")
    assert end_abandoned_uploads(store, spool, never, 60, now=later) == []  # ended once
