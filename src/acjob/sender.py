"""The sender: works through the outbox of deliveries, retrying until each is done.

Deliveries are rows in the store, inserted in the same transaction as their job's
final state, so a result is never final without its deliveries. The sender tries
every due delivery, records each try, and retries transient failures with capped
exponential backoff (``[delivery] first_retry`` doubling up to ``max_retry``) until
``deadline_hours`` after the job ended; a permanent failure ends a delivery at once.
It holds nothing in memory that the store does not: after a restart it simply goes
on (at least once: a delivery made just before a crash may be made again, with the
same delivery id).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping

from .config import DeliveryConfig
from .delivery.base import Channel
from .errors import AcjobError, TransientError
from .model import DeliveryRecord, State
from .store import GroupCommit, Store

log = logging.getLogger("acjob.sender")

_BATCH = 32


class Sender:
    """Delivers results; see the module docstring."""

    def __init__(self, store: Store, channels: Mapping[str, Channel],
                 config: DeliveryConfig, commits: GroupCommit | None = None) -> None:
        self._store = store
        self._commits = commits
        self._channels = dict(channels)
        self._config = config
        self._kick = asyncio.Event()
        store.subscribe(self._on_event)

    def _on_event(self, job_id: str, seq: int, state: State) -> None:
        if state.is_final:
            self._kick.set()

    def kick(self) -> None:
        """Look at the outbox soon."""
        self._kick.set()

    async def run(self) -> None:
        """Deliver until cancelled."""
        while True:
            try:
                due = self._store.outbox.due(time.time(), _BATCH)
                if due and self._commits is not None and self._commits.pending:
                    # A result is told of only once its final state is on disk (a
                    # request's cancel commits in a group).
                    await self._commits.barrier()
                await asyncio.gather(*(self._try(d) for d in due))
            except Exception:
                log.exception("sender round failed; trying again")
                due = []
            if len(due) == _BATCH:
                continue
            nxt = self._store.outbox.next_at()
            timeout = 3600.0 if nxt is None else max(0.0, nxt - time.time())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._kick.wait(), timeout)
            self._kick.clear()

    async def _try(self, delivery: DeliveryRecord) -> None:
        channel = self._channels.get(delivery.kind)
        if channel is None:
            self._store.outbox.failed(delivery.id, f"no {delivery.kind} channel", None)
            return
        job = self._store.get(delivery.job_id)
        try:
            await channel.send(delivery, job)
        except TransientError as exc:
            self._retry_later(delivery, str(exc))
        except AcjobError as exc:
            log.warning("delivery %s to %s failed for good: %s", delivery.id, delivery.kind, exc)
            self._store.outbox.failed(delivery.id, str(exc), None)
        except Exception as exc:  # a bug in a channel must not stop the others
            log.exception("delivery %s failed unexpectedly", delivery.id)
            self._retry_later(delivery, f"internal error: {type(exc).__name__}")
        else:
            log.info("delivered job %s by %s", job.id, delivery.kind)
            self._store.outbox.done(delivery.id)

    def _retry_later(self, delivery: DeliveryRecord, error: str) -> None:
        cfg = self._config
        delay = min(cfg.max_retry, cfg.first_retry * 2 ** delivery.attempts)
        retry_at = time.time() + delay
        if retry_at > delivery.created_at + cfg.deadline_hours * 3600:
            log.warning("delivery %s gave up after %d tries: %s", delivery.id,
                        delivery.attempts + 1, error)
            self._store.outbox.failed(
                delivery.id, f"gave up after {delivery.attempts + 1} tries: {error}", None)
        else:
            log.info("delivery %s failed (%s); next try in %.0f s", delivery.id, error, delay)
            self._store.outbox.failed(delivery.id, error, retry_at)
