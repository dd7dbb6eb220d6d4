"""Progress callbacks: a job's progress posted to the webhooks that asked for it.

A webhook delivery with ``progress_interval`` N asks for the job's progress while it
runs. The notifier hears each change of a job's progress from the store and posts
the job's *latest* progress to that webhook at most once per N seconds (the first
at once, a change within the interval when it ends: see
:func:`acjob.progress.next_callback_at`). It is best effort and holds its state in
memory only:

- each callback is tried once; one that fails (no answer, not 2xx) is dropped, and
  the next change of progress is posted in its time;
- nothing is posted once the job is final: waiting callbacks are dropped and
  callbacks under way are cancelled when its final state is committed;
- the result itself is the outbox's (:mod:`acjob.sender`), over connections of its
  own: a progress callback never delays it nor takes its place.

After a restart of the daemon the first change of a job's progress is posted at once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Protocol

from .errors import AcjobError
from .model import Job, State, WebhookDelivery
from .progress import next_callback_at
from .store import Store

log = logging.getLogger("acjob.sender")


class ProgressChannel(Protocol):
    """Posts one progress callback (:class:`acjob.delivery.webhook.WebhookChannel`)."""

    async def send_progress(self, url: str, job: Job) -> None:
        """POST the job's current progress to ``url``, once.

        Raises:
            AcjobError: it failed (the notifier drops it).
        """
        ...


class Notifier:
    """Posts progress callbacks; see the module docstring."""

    def __init__(self, store: Store, channel: ProgressChannel) -> None:
        self._store = store
        self._channel = channel
        # Per job: per position of the delivery in the spec, the last post's time...
        self._last: dict[str, dict[int, float]] = {}
        # ...the post waiting for its time, and the posts under way.
        self._timers: dict[str, dict[int, asyncio.TimerHandle]] = {}
        self._tasks: dict[str, set[asyncio.Task[None]]] = {}
        store.subscribe_progress(self._on_progress)
        store.subscribe(self._on_event)

    def _on_progress(self, job: Job) -> None:
        if job.state.is_final:
            return
        for position, delivery in enumerate(job.spec.deliveries):
            if isinstance(delivery, WebhookDelivery) and delivery.progress_interval:
                self._schedule(job.id, position, delivery.url, delivery.progress_interval)

    def _schedule(self, job_id: str, position: int, url: str, interval: float) -> None:
        timers = self._timers.setdefault(job_id, {})
        if position in timers:
            return  # the waiting post sends the latest progress when its time comes
        now = time.monotonic()
        at = next_callback_at(self._last.get(job_id, {}).get(position), interval, now)
        if at <= now:
            self._post(job_id, position, url)
        else:
            loop = asyncio.get_running_loop()
            timers[position] = loop.call_at(loop.time() + (at - now), self._due, job_id,
                                            position, url)

    def _due(self, job_id: str, position: int, url: str) -> None:
        self._timers.get(job_id, {}).pop(position, None)
        self._post(job_id, position, url)

    def _post(self, job_id: str, position: int, url: str) -> None:
        self._last.setdefault(job_id, {})[position] = time.monotonic()
        task = asyncio.create_task(self._send(job_id, url), name=f"progress-{job_id}")
        tasks = self._tasks.setdefault(job_id, set())
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    async def _send(self, job_id: str, url: str) -> None:
        try:
            job = self._store.get(job_id)  # the latest progress, as it is now
            if job.state.is_final or job.progress is None:
                return
            await self._channel.send_progress(url, job)
        except AcjobError as exc:
            log.info("progress callback of job %s dropped: %s", job_id, exc)
        except Exception:  # a bug must not stop the daemon; nothing is owed
            log.exception("progress callback of job %s failed", job_id)

    def _on_event(self, job_id: str, seq: int, state: State) -> None:
        if state.is_final:
            self.drop(job_id)

    def drop(self, job_id: str) -> None:
        """Post nothing more for this job: drop what waits, cancel what is under way."""
        self._last.pop(job_id, None)
        for timer in self._timers.pop(job_id, {}).values():
            timer.cancel()
        for task in self._tasks.pop(job_id, set()):
            task.cancel()

    def close(self) -> None:
        """Drop everything (the daemon stops)."""
        for job_id in {*self._timers, *self._tasks, *self._last}:
            self.drop(job_id)
