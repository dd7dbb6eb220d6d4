"""In-process notification of job changes, for long-polls and streams.

The store calls :meth:`Hub.publish` after each committed event, and :meth:`Hub.wake`
after each change of a job's progress; request handlers wait on :meth:`Hub.wait`.
Nothing here is durable: a waiter that misses a notification (the daemon restarted)
simply asks the store again.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict

from .model import State


class Hub:
    """Wakes whoever waits for a job's next event."""

    def __init__(self) -> None:
        self._waiters: defaultdict[str, set[asyncio.Future[int | None]]] = defaultdict(set)
        # The waiters (among the above) that wait for the job's final state only.
        self._final_only: set[asyncio.Future[int | None]] = set()

    def publish(self, job_id: str, seq: int, state: State) -> None:
        """Wake every waiter of ``job_id`` with the new event's sequence number (those
        that wait for the final state only if it is final)."""
        self._wake(job_id, seq, state.is_final)

    def wake(self, job_id: str) -> None:
        """Wake every waiter of ``job_id`` for a change that is not an event (its
        progress); they are handed 0. Those waiting for the final state wait on."""
        self._wake(job_id, 0, False)

    def _wake(self, job_id: str, value: int, final: bool) -> None:
        waiters = self._waiters.get(job_id)
        if not waiters:
            return
        if final or not self._final_only:
            woken = waiters
            del self._waiters[job_id]
        else:
            woken = waiters - self._final_only
            waiters &= self._final_only
            if not waiters:
                del self._waiters[job_id]
        for future in woken:
            if not future.done():
                future.set_result(value)

    async def wait(self, job_id: str, timeout: float, *, final: bool = False) -> int | None:
        """Wait up to ``timeout`` seconds for the job's next event (with ``final``, for
        an event of a final state: a long-poll for the job's end is not woken by each
        state on its way).

        Check the store *before* calling this, with no ``await`` in between, so no
        event can slip through. Returns the event's sequence number (0 for a change of
        progress), or ``None`` on time-out.
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[int | None] = loop.create_future()
        self._waiters[job_id].add(future)
        if final:
            self._final_only.add(future)
        # The future is awaited itself (not through ``asyncio.wait_for``, which adds a
        # future and a turn of the loop): a publish wakes the waiter at the loop's next
        # turn, ahead of whatever the publisher does after its own next ``await``.
        timer = loop.call_later(timeout, _expire, future)
        try:
            return await future
        finally:
            timer.cancel()
            self._final_only.discard(future)
            waiters = self._waiters.get(job_id)
            if waiters is not None:
                waiters.discard(future)
                if not waiters:
                    with contextlib.suppress(KeyError):
                        del self._waiters[job_id]

    @property
    def waiting(self) -> int:
        """How many waiters there are now."""
        return sum(len(w) for w in self._waiters.values())


def _expire(future: asyncio.Future[int | None]) -> None:
    """End a wait that timed out (``None``), unless an event came first."""
    if not future.done():
        future.set_result(None)
