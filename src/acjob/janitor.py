"""Retention: the spool files of finished jobs are removed after a configured time.

A job's stdin, output and working directory stay for ``retention_days`` after it
ended (long enough for a month-long round trip by default), then go; the store keeps
the job's record (state, exit status, events). A job is final only after its
deliveries are committed, so nothing still to be delivered is removed.
"""

from __future__ import annotations

import asyncio
import logging
import time

from .lifecycle import after_abandoned_upload
from .removal import prune
from .spool import Spool
from .store import Store

log = logging.getLogger("acjob.janitor")

#: How often the janitor looks for expired jobs.
SWEEP_INTERVAL = 3600.0


def sweep(store: Store, spool: Spool, retention_s: float, *, now: float | None = None,
          stdin_timeout_s: float = 86400.0) -> int:
    """Remove the files of every job that ended more than ``retention_s`` ago, after
    ending (or, if they started, stopping) jobs whose stdin upload was abandoned
    ``stdin_timeout_s`` ago.

    Returns how many jobs' files were removed.
    """
    now = time.time() if now is None else now
    for job_id in store.stale_uploads(now - stdin_timeout_s):
        try:
            moved = spool.stdin_path(job_id).stat().st_mtime
        except FileNotFoundError:
            moved = 0.0
        if moved < now - stdin_timeout_s:
            store.change_state(job_id, after_abandoned_upload,
                               "its stdin upload never completed")
    return prune(store, spool, now - retention_s)


async def run_janitor(store: Store, spool: Spool, retention_s: float) -> None:
    """Sweep now and then every :data:`SWEEP_INTERVAL` seconds, until cancelled."""
    while True:
        try:
            sweep(store, spool, retention_s)
        except OSError as exc:
            log.warning("cannot remove expired job files: %s", exc)
        await asyncio.sleep(min(SWEEP_INTERVAL, max(retention_s, 1.0)))
