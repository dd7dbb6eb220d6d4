"""Removing finished jobs' files before retention would: one job (``ac rm``), or all
that ended before a time (``ac prune``).

The janitor removes a job's files ``retention_days`` after it ended (30 by default,
long enough for a month-long round trip); an operator whose disk fills sooner removes
them now. The same rules hold: only a job that ended, never while a delivery of its
result still needs them, and the record stays (state, exit status, events) while its
output answers ``410 output_expired``.
"""

from __future__ import annotations

import logging

from .errors import Conflict
from .model import Job
from .spool import Spool
from .store import Store

log = logging.getLogger("acjob.removal")


def remove_files(store: Store, spool: Spool, job_id: str) -> Job:
    """Remove a finished job's files now; return the job. Removing them again changes
    nothing.

    Raises:
        NotFound: no such job.
        Conflict: the job has not ended (``job_active``), or a delivery of its result is
            still to be made, which needs them (``delivery_pending``).
    """
    job = store.get(job_id)
    if job.purged_at is not None:
        return job
    if not job.state.is_final:
        raise Conflict(f"job {job_id} has not ended ({job.state.value}): its files are in use",
                       hint="cancel it first, or wait for it to end", code="job_active")
    if any(d.state == "pending" for d in job.deliveries):
        raise Conflict(f"a delivery of job {job_id}'s result is still pending and needs its "
                       "files", hint="try again once it was sent (or given up)",
                       code="delivery_pending")
    spool.remove(job_id)
    store.mark_purged([job_id])
    log.info("removed the files of job %s on request", job_id)
    return store.get(job_id)


def prune(store: Store, spool: Spool, ended_before: float, *,
          batches: int | None = None) -> int:
    """Remove the files of every job that ended before ``ended_before`` (a time), but for
    those with a delivery still pending; return how many jobs' files were removed. Both
    ``ac prune`` and the janitor's retention sweep come here; the janitor goes
    ``batches`` at a time (a few hundred jobs each), to let requests in between."""
    removed = 0
    done = 0
    while (batches is None or done < batches) and (batch := store.expired(ended_before)):
        for job_id in batch:
            spool.remove(job_id)
        store.mark_purged(batch)
        removed += len(batch)
        done += 1
    if removed:
        log.info("removed the files of %d finished job(s)", removed)
    return removed
