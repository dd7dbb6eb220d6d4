"""The progress watcher: notices what running attempts write to their progress files.

The monitor tells the watcher which attempts are under way (:meth:`Watcher.track`).
Attempts of a backend that notifies exits (local processes) are looked at every
:data:`PROGRESS_CHECK` seconds by the watcher's own loop; those of a batch scheduler at
each of its polls (:meth:`Watcher.check`, called by the monitor), so a shared file
system is not asked more often than the scheduler is. Every attempt is looked at once
more just before its end is recorded, so the last report before an exit is kept.

A look at a file that did not change costs one ``stat``; a change costs a read of
its tail and, if what it says differs from what the store holds, one small
transaction (not flushed on its own: progress is not worth a disk flush).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable

from .errors import AcjobError
from .model import Attempt, Job
from .progress import Progress
from .spool import Spool, Stamp
from .store import Store

log = logging.getLogger("acjob.monitor")

#: How often the progress of attempts on a backend that notifies exits is looked at.
PROGRESS_CHECK = 1.0

Key = tuple[str, int]


class Watcher:
    """Reads progress files and records what changed; see the module docstring."""

    def __init__(self, store: Store, spool: Spool) -> None:
        self._store = store
        self._spool = spool
        self._stamps: dict[Key, Stamp | None] = {}
        self._values: dict[Key, tuple[float, str | None] | None] = {}
        self._often: set[Key] = set()
        self._some = asyncio.Event()

    def track(self, job: Job, attempt: Attempt, *, often: bool) -> None:
        """Watch an attempt under way (idempotent); ``often``: every
        :data:`PROGRESS_CHECK` seconds, else only when :meth:`check` is called."""
        key = (job.id, attempt.number)
        if key not in self._stamps:
            self._stamps[key] = None
            known = attempt.progress
            self._values[key] = None if known is None else (known.percent, known.message)
        if often:
            self._often.add(key)
            self._some.set()

    def keep_only(self, keys: Iterable[Key]) -> None:
        """Forget every attempt but these (the ones still under way)."""
        keep = set(keys)
        for key in set(self._stamps) - keep:
            self.forget(key)

    def forget(self, key: Key) -> None:
        """Stop watching an attempt."""
        self._stamps.pop(key, None)
        self._values.pop(key, None)
        self._often.discard(key)

    def check(self, keys: Iterable[Key], *, read: bool = False) -> None:
        """Look at these attempts' progress files now; record what changed. With
        ``read``, read them even if they look unchanged (before an attempt's end: a
        file rewritten at the same size within one tick of a coarse clock looks so)."""
        for key in keys:
            if key not in self._stamps:
                continue
            try:
                self._look(key, read)
            except AcjobError as exc:
                log.warning("job %s: progress: %s", key[0], exc)

    def _look(self, key: Key, read: bool) -> None:
        job_id, number = key
        known = None if read else self._stamps[key]
        found = self._spool.read_progress(job_id, number, known)
        self._stamps[key] = found.stamp
        said = found.said
        if said is None or said == self._values.get(key):
            return
        self._values[key] = said
        # When it was written, by the file's clock, but never later than now.
        at = min(found.mtime, time.time())
        self._store.record_progress(job_id, number, Progress(said[0], said[1], at, number))

    async def run(self) -> None:
        """Look at the often-watched attempts every :data:`PROGRESS_CHECK` seconds,
        while there are any; until cancelled."""
        while True:
            if not self._often:
                self._some.clear()
                await self._some.wait()
            try:
                self.check(list(self._often))
            except Exception:
                log.exception("progress check failed; trying again")
            await asyncio.sleep(PROGRESS_CHECK)
