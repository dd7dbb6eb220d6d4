"""Group commit: the store's acknowledged commits flushed together, before anyone acts
on them.

A commit that a client is told of must be on disk before the client is told (a power
cut must not take back an acknowledged job), and an attempt's intent before its backend
is called. Flushing each such commit as it is made costs one ``fsync`` each, on the
event loop. Instead, where :data:`acjob.store.database.grouped` is set (the server while
it answers a request, the dispatcher while it records intents), the store commits
without flushing, and whoever acts on such a commit first waits for
:meth:`GroupCommit.barrier`: every message the daemon sends a client, every submission
to a backend. One ``fsync`` in a worker thread covers every commit made before it
began, so many requests and intents share one flush, and the event loop serves others
meanwhile. A barrier with nothing to flush returns at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from .database import Database


class GroupCommit:
    """Flushes the store's grouped commits, one flush at a time, for all who wait.

    Args:
        database: The store's database; its group commit is turned on here.

    Attributes:
        flushes: How many flushes were made (each may cover many commits).
        crowded: Tells whether other requests are being answered: only then is a
            flush made in a worker thread, for others to join while the event loop
            serves them; alone, it is made at once, without the thread's hand-off
            (default: always crowded).
    """

    def __init__(self, database: Database) -> None:
        self._database = database
        self._flushing: asyncio.Future[None] | None = None
        self.flushes = 0
        self.crowded: Callable[[], bool] = lambda: True
        database.group_commit = True

    @property
    def pending(self) -> bool:
        """True while a grouped commit is not yet on disk."""
        return self._database.synced < self._database.committed

    async def barrier(self) -> None:
        """Return once every grouped commit made before the call is on disk.

        Joins the flush under way if it covers them, else the next one.

        Raises:
            OSError: the disk refused to flush (nothing may be acknowledged then).
        """
        target = self._database.committed
        if self._flushing is None and self._database.synced < target and not self.crowded():
            # Nobody to share the flush with: a thread would only add its hand-off.
            self._database.sync()
            self._database.synced = target
            self.flushes += 1
            return
        while self._database.synced < target:
            if self._flushing is None:
                self._flushing = asyncio.ensure_future(self._flush())
            # Shielded: a waiter that is cancelled (its client left) leaves the
            # flush to the others.
            await asyncio.shield(self._flushing)

    async def _flush(self) -> None:
        try:
            covered = self._database.committed
            await asyncio.to_thread(self._database.sync)
            self._database.synced = max(self._database.synced, covered)
            self.flushes += 1
        finally:
            self._flushing = None
