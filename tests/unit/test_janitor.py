"""Retention: finished jobs' files go after the retention time; their records stay."""

from __future__ import annotations

import time
from pathlib import Path

from acjob.janitor import sweep
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


def test_abandoned_uploads_end(tmp_path: Path) -> None:
    store = Store(tmp_path / "db")
    spool = Spool(tmp_path / "spool")
    job, _ = store.create_job(JobSpec(command="cat", stdin="upload"), "local",
                              job_id=new_job_id())
    spool.create_job(job.id)
    spool.stdin_path(job.id).write_bytes(b"partial")
    sweep(store, spool, 3600, stdin_timeout_s=60)
    assert store.get(job.id).state.value == "QUEUED"
    sweep(store, spool, 3600, now=time.time() + 120, stdin_timeout_s=60)
    ended = store.get(job.id)
    assert ended.state.value == "SYSTEM_ERROR" and "stdin" in (ended.reason or "")
