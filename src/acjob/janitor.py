"""Housekeeping: retention of finished jobs' files, and uploads nobody will finish.

A job's stdin, output and working directory stay for ``retention_days`` after it
ended (long enough for a month-long round trip by default), then go; the store keeps
the job's record (state, exit status, events). A job is final only after its
deliveries are committed, so nothing still to be delivered is removed.

A job whose stdin upload stopped (its client killed while its producer still wrote)
would wait for bytes nobody can send, forever, and keep a private daemon from ever
stopping. Once ``stdin_timeout`` seconds passed with no byte received and no client
sending, the job ends with a reason that says how many bytes it got; one that already
started on its live stdin is stopped: a job never runs to its end on input silently
cut short. A client that comes back in time resumes the upload as always.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from .lifecycle import after_abandoned_upload
from .model import Job
from .removal import prune
from .spool import Spool
from .states import State
from .store import Store

log = logging.getLogger("acjob.janitor")

#: How often the janitor looks for expired jobs.
SWEEP_INTERVAL = 3600.0
#: How often, at most, it looks for uploads nobody will finish.
UPLOAD_CHECK_INTERVAL = 60.0


def sweep(store: Store, spool: Spool, retention_s: float, *, now: float | None = None) -> int:
    """Remove the files of every job that ended more than ``retention_s`` ago.

    Returns how many jobs' files were removed.
    """
    now = time.time() if now is None else now
    return prune(store, spool, now - retention_s)


def end_abandoned_uploads(store: Store, spool: Spool, uploading: Callable[[str], bool],
                          timeout_s: float, *, now: float | None = None) -> list[Job]:
    """End (or, if they started, stop) the jobs whose stdin upload received no byte for
    ``timeout_s`` seconds while no client was sending it (``uploading(job_id)`` false).

    The last byte's time is the stdin file's own (it survives a restart of the daemon);
    a job that never received one counts from its last change. Returns the jobs ended
    (or being stopped), as they are now.
    """
    now = time.time() if now is None else now
    ended: list[Job] = []
    for job_id in store.stale_uploads(now - timeout_s):
        if uploading(job_id):
            continue
        try:
            stat = spool.stdin_path(job_id).stat()
            received, last_byte = stat.st_size, stat.st_mtime
        except FileNotFoundError:
            received, last_byte = 0, 0.0
        if last_byte >= now - timeout_s:
            continue
        reason = (f"its stdin upload stopped at {received} bytes: no client sent more for "
                  f"{timeout_s:g} s ([server] stdin_timeout)")
        if (job := _abandon(store, job_id, reason)) is not None:
            ended.append(job)
            log.info("job %s: %s", job_id, reason)
    return ended


def _abandon(store: Store, job_id: str, reason: str) -> Job | None:
    """Apply :func:`after_abandoned_upload` to the job; return it if that changed it."""
    changed: list[State] = []

    def rule(job: Job) -> State | None:
        target = after_abandoned_upload(job)
        changed.extend([target] if target is not None else [])
        return target

    job = store.change_state(job_id, rule, reason)
    return job if changed else None


async def run_janitor(store: Store, spool: Spool, retention_s: float) -> None:
    """Sweep now and then every :data:`SWEEP_INTERVAL` seconds, until cancelled; a batch
    at a time, letting requests in between (a long stop may leave very many expired)."""
    while True:
        try:
            while prune(store, spool, time.time() - retention_s, batches=1):
                await asyncio.sleep(0)
        except OSError as exc:
            log.warning("cannot remove expired job files: %s", exc)
        await asyncio.sleep(min(SWEEP_INTERVAL, max(retention_s, 1.0)))


async def watch_uploads(store: Store, spool: Spool, uploading: Callable[[str], bool],
                        timeout_s: float, wake: Callable[[str], None]) -> None:
    """Look for abandoned uploads (see :func:`end_abandoned_uploads`) a few times per
    ``timeout_s``, until cancelled; ``wake(backend)`` has the monitor stop at once the
    jobs that run there."""
    while True:
        await asyncio.sleep(min(UPLOAD_CHECK_INTERVAL, max(timeout_s / 4, 0.1)))
        try:
            for job in end_abandoned_uploads(store, spool, uploading, timeout_s):
                wake(job.backend)
        except OSError as exc:
            log.warning("cannot look at open uploads: %s", exc)
