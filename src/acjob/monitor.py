"""The job monitor: starts queued jobs, watches running ones, heals after crashes.

One asyncio task runs :meth:`Monitor.run`: a loop of *cycles*, each woken by an
event (a new job, a closed stdin, a process exit, a cancel request) or by the next
due poll of a backend. A cycle

1. reads the exit file of every submitted attempt (the ground truth of an end);
2. polls each backend once for all its remaining attempts;
3. moves jobs on: running, ended, lost (after the backend's grace), retried;
4. heals attempts whose submission a crash interrupted (find by tag, else fence);
5. sends pending cancellations; and
6. starts queued jobs while the backends have room (:mod:`acjob.dispatcher`).

Beside the cycles, the progress watcher (:mod:`acjob.watcher`) reads what the
attempts under way report of their progress.

What an attempt's end means is decided by :mod:`acjob.lifecycle`; the monitor does
the I/O around those decisions.

Every decision is committed to the store before anything else depends on it, and
the loop holds no state that a restart cannot rebuild from the store and spool.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Mapping

from . import lifecycle
from .backends.base import Backend
from .dispatcher import Dispatcher
from .errors import AcjobError, TransientError
from .model import Attempt, AttemptState, FailureKind, Job, Observation, State
from .spool import Spool
from .store import GroupCommit, Store
from .watcher import Watcher

log = logging.getLogger("acjob.monitor")

#: How soon to look again at an attempt whose state is not yet known.
RECHECK = 1.0
#: Jobs looked at in one stretch before the loop lets requests in: a daemon restarted
#: over ten thousand attempts answers at once, while it reconciles them.
_YIELD_EVERY = 100
#: How often exit files are looked for when a backend does not notify exits.
EXIT_CHECK = 1.0
#: ... and how often while the backend's newest attempt is young (a tenth of its age,
#: between the two): a short job's end is noticed within a tenth of a second.
FIRST_EXIT_CHECK = 0.1
#: How soon after a local submission the loop looks at the new attempt (its progress,
#: its time limit): a short job's end, which wakes the loop by itself, comes first.
FIRST_LOOK = 0.05
#: Below this many free bytes the spool counts as full.
SPOOL_FULL_BYTES = 1 << 20


class Monitor:
    """Drives every job from QUEUED to a final state; see the module docstring.

    ``commits``, when given, flushes the intents of attempts in groups (see
    :class:`~acjob.dispatcher.Dispatcher`).
    """

    def __init__(self, store: Store, spool: Spool, backends: Mapping[str, Backend], *,
                 job_umask: int = 0o022, hold: bool = False,
                 commits: GroupCommit | None = None) -> None:
        self._store = store
        self._spool = spool
        self._backends = dict(backends)
        self._kick = asyncio.Event()
        self._woken: set[str] = set(self._backends)
        self._next_poll: dict[str, float] = {}
        self._gone_since: dict[tuple[str, int], float] = {}
        self._cancel_sent: set[tuple[str, int]] = set()
        self._last_submit: dict[str, float] = {}
        self._polling: dict[str, asyncio.Task[None]] = {}
        self._timed_out: set[tuple[str, int]] = set()
        self._asked: set[tuple[str, int]] = set()
        self._wake_at: float | None = None
        self._watcher = Watcher(store, spool)
        self._dispatcher = Dispatcher(store, spool, self._backends, job_umask=job_umask,
                                      hold=hold, submitted=self._submitted, kick=self.kick,
                                      commits=commits)

    def kick(self) -> None:
        """Ask for a cycle soon (safe to call often: cycles coalesce)."""
        self._kick.set()

    def wake(self, backend: str | None = None) -> None:
        """Ask for a poll of ``backend`` (and so its pending cancellations) soon; with
        no backend, for a cycle soon (a new job, a closed stdin)."""
        if backend is None:
            self.kick()
        else:
            self._wake_backend(backend)

    def _wake_backend(self, name: str) -> None:
        self._woken.add(name)
        self._kick.set()

    async def run(self) -> None:
        """Run until cancelled. Errors in one cycle are logged, never fatal."""
        for name, backend in self._backends.items():
            await backend.start(lambda name=name: self._wake_backend(name))  # type: ignore[misc]
        for job_id in self._store.active_elsewhere(list(self._backends)):
            job = self._store.get(job_id)
            self._fail(job.id, f"the backend {job.backend!r} is not configured")
        counts = self._store.count_by_state()
        active = sum(n for state, n in counts.items() if not State(state).is_final)
        if active:
            # What a start after a stop (or a crash) takes over, for whoever reads the log;
            # counted, not loaded: a store may hold a great many queued jobs.
            under_way = sum(counts.get(s.value, 0) for s in
                            (State.INITIALIZING, State.RUNNING, State.CANCELING))
            log.info("picking up %d unfinished job(s); re-attaching %d attempt(s) under way",
                     active, under_way)
        watching = asyncio.create_task(self._watcher.run(), name="acjob-progress")
        try:
            while True:
                try:
                    await self.cycle()
                except AcjobError as exc:
                    log.warning("monitor cycle: %s", exc)
                except Exception:
                    log.exception("monitor cycle failed; trying again")
                    await asyncio.sleep(RECHECK)
                await self._sleep()
        finally:
            watching.cancel()
            for task in self._polling.values():
                task.cancel()
            for backend in self._backends.values():
                await backend.close()

    async def _sleep(self) -> None:
        now = time.monotonic()
        times = [t for name, t in self._next_poll.items() if name not in self._polling]
        if (resume := self._dispatcher.resumes_at()) is not None:
            times.append(resume)
        if self._wake_at is not None:
            times.append(self._wake_at)
        timeout = max(0.0, min(times) - now) if times else 3600.0
        # asyncio.timeout, not wait_for: no task of its own, so a kick resumes the loop
        # at the loop's next turn.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._kick.wait()
        self._kick.clear()

    async def cycle(self) -> None:
        """Do one round of checks, polls, healing, cancellation and dispatch."""
        now = time.monotonic()
        to_poll: dict[str, list[tuple[Job, Attempt]]] = {}
        self._wake_at = None
        under_way: list[tuple[str, int]] = []
        for count, job in enumerate(self._store.in_flight(), 1):
            if count % _YIELD_EVERY == 0:
                await asyncio.sleep(0)  # requests are answered between two stretches
            backend = self._backends.get(job.backend)
            if backend is None or not job.attempts:
                continue
            if not backend.notifies_exits:
                self._soon(self._exit_check(backend))
            attempt = job.attempts[-1]
            if attempt.state in (AttemptState.ENDED, AttemptState.ABANDONED):
                continue
            if attempt.native_id is not None:
                self._watcher.track(job, attempt, often=backend.notifies_exits)
                under_way.append((job.id, attempt.number))
            try:
                record = self._spool.read_exit(job.id, attempt.number)
                if record is not None and record.signal is None \
                        and not self._ask_first(backend, job, attempt, record.code):
                    self._finish_exit(job, attempt, record.code)
                    # Whoever waits for the end (a long-poll) is answered now, before
                    # the rest of the cycle and the dispatch of the next jobs.
                    await asyncio.sleep(0)
                elif attempt.native_id is None:
                    await self._heal(job, attempt, backend)
                else:
                    if not backend.enforces_time_limits:
                        await self._enforce_time_limit(backend, job, attempt)
                    to_poll.setdefault(job.backend, []).append((job, attempt))
            except AcjobError as exc:
                # One job's trouble must never stall the others.
                log.warning("job %s: %s", job.id, exc)
                self._soon(RECHECK)
        self._watcher.keep_only(under_way)
        for name, items in to_poll.items():
            backend = self._backends[name]
            due = name in self._woken or now >= self._next_poll.get(name, 0.0)
            if due and name not in self._polling:
                # Polls run beside the loop: a scheduler that takes its time to answer
                # (or to time out) never delays exit files, dispatch or other backends.
                self._woken.discard(name)
                self._next_poll[name] = now + self._interval(backend, items)
                task = asyncio.create_task(self._poll(backend, items), name=f"poll-{name}")
                self._polling[name] = task
                task.add_done_callback(functools.partial(self._poll_done, name))
            elif name not in self._next_poll:
                self._next_poll[name] = now + self._interval(backend, items)
        for name in set(self._backends) - set(to_poll):
            self._next_poll.pop(name, None)
            self._woken.discard(name)
        await self._dispatcher.dispatch()

    def _exit_check(self, backend: Backend) -> float:
        """How soon to look for exit files again, for a backend that does not notify."""
        last = self._last_submit.get(backend.name)
        if last is None:
            return EXIT_CHECK
        return min(EXIT_CHECK, max(FIRST_EXIT_CHECK, (time.monotonic() - last) / 10))

    def _soon(self, delay: float) -> None:
        """Make sure a cycle runs within ``delay`` seconds."""
        at = time.monotonic() + delay
        self._wake_at = at if self._wake_at is None else min(self._wake_at, at)

    def _poll_done(self, name: str, task: asyncio.Task[None]) -> None:
        self._polling.pop(name, None)
        if not task.cancelled() and task.exception() is not None:
            log.error("polling %s failed", name, exc_info=task.exception())
        self.kick()

    # -- observing --------------------------------------------------------------------

    def _interval(self, backend: Backend, items: list[tuple[Job, Attempt]] = ()) -> float:  # type: ignore[assignment]
        """Poll often while the backend's newest attempt is young, rarely once all are old."""
        last = self._last_submit.get(backend.name)
        if last is not None:
            age = time.monotonic() - last
        elif items:  # since a restart: judge by the jobs themselves
            age = time.time() - max(job.created_at for job, _ in items)
        else:
            age = 0.0
        return min(backend.max_poll_interval, max(backend.poll_interval, age / 10))

    async def _poll(self, backend: Backend, items: list[tuple[Job, Attempt]]) -> None:
        """Observe the backend's attempts, then send its pending cancellations.

        The job snapshots may be stale by the time the answer comes; the store's
        methods ignore reports about attempts that already ended.
        """
        ids = [a.native_id for _, a in items if a.native_id]
        # Progress at each poll (its files are in the spool, whatever the scheduler says).
        self._watcher.check((job.id, attempt.number) for job, attempt in items)
        try:
            seen = await backend.poll(ids)
        except TransientError as exc:
            # Unknown is never final: look again at the next poll.
            log.warning("cannot poll the %s backend: %s", backend.name, exc)
        else:
            for count, (job, attempt) in enumerate(items, 1):
                if count % _YIELD_EVERY == 0:
                    await asyncio.sleep(0)
                observed = seen.get(attempt.native_id or "", Observation("gone"))
                try:
                    if observed.state == "gone":
                        observed = await self._explain(backend, job, attempt) or observed
                    self._observe(backend, job, attempt, observed)
                except AcjobError as exc:
                    log.warning("job %s: %s", job.id, exc)
        await self._send_cancels(backend, items)

    async def _explain(self, backend: Backend, job: Job,
                       attempt: Attempt) -> Observation | None:
        """Ask the backend how a gone attempt without a clean exit status ended."""
        record = self._spool.read_exit(job.id, attempt.number)
        if record is not None and record.signal is None:
            return None  # its own exit status says it all
        try:
            explained = await backend.explain(job, attempt, record)
        except TransientError as exc:
            log.warning("cannot ask %s about job %s: %s", backend.name, job.id, exc)
            return None
        if explained is not None and explained.if_never_started \
                and not self._spool.fence(job.id, attempt.number):
            return None  # it did start: its own exit file will tell
        return explained

    def _observe(self, backend: Backend, job: Job, attempt: Attempt, seen: Observation) -> None:
        key = (job.id, attempt.number)
        now = time.monotonic()
        verdict = lifecycle.judge(
            job, attempt, seen, self._spool.read_exit(job.id, attempt.number),
            timed_out=key in self._timed_out, gone_since=self._gone_since.get(key), now=now,
            lost_grace=backend.lost_grace)
        if isinstance(verdict, lifecycle.Alive):
            self._gone_since.pop(key, None)
            if verdict.running and attempt.state is not AttemptState.RUNNING:
                self._store.attempt_running(job.id, attempt.number)
        elif isinstance(verdict, lifecycle.Waiting):
            self._gone_since[key] = verdict.since
            self._next_poll[backend.name] = min(
                self._next_poll.get(backend.name, float("inf")), verdict.until)
        elif isinstance(verdict, lifecycle.Exited):
            self._finish_exit(job, attempt, verdict.code)
        else:
            if isinstance(verdict, lifecycle.Canceled) and verdict.outside:
                # Recorded as a cancel first, so the job's history says who stopped it.
                self._store.change_state(job.id, lifecycle.after_cancel_request,
                                         "canceled by request")
            self._end(job, attempt, verdict)

    def _ask_first(self, backend: Backend, job: Job, attempt: Attempt, code: int) -> bool:
        """Whether to hear the scheduler before taking an exit status as the job's own
        (see :func:`acjob.lifecycle.awaits_verdict`); the first time, poll it soon."""
        if not lifecycle.awaits_verdict(code, attempt, notifies_exits=backend.notifies_exits):
            return False
        key = (job.id, attempt.number)
        if key not in self._asked:
            self._asked.add(key)
            self._woken.add(backend.name)
        return True

    def _finish_exit(self, job: Job, attempt: Attempt, code: int) -> None:
        full = self._spool_full() if code != 0 else None
        self._last_look(job, attempt)
        self._forget(job, attempt)
        ended = self._store.end_attempt(
            job.id, attempt.number, lambda current: lifecycle.conclude_exit(current, code, full))
        if ended.state is State.PREEMPTED:
            self.kick()

    def _end(self, job: Job, attempt: Attempt,
             verdict: lifecycle.Failed | lifecycle.Canceled) -> None:
        """End an attempt that left no exit status of its own."""
        lost = isinstance(verdict, lifecycle.Failed) and verdict.failure is FailureKind.LOST
        full = self._spool_full() if lost else None
        self._last_look(job, attempt)
        self._forget(job, attempt)
        ended = self._store.end_attempt(
            job.id, attempt.number, lambda current: lifecycle.conclude(current, verdict, full))
        if ended.state is State.PREEMPTED:
            self.kick()

    def _fail(self, job_id: str, reason: str) -> None:
        """End a job that cannot go on (``SYSTEM_ERROR``, or ``CANCELED`` if canceling)."""
        self._store.change_state(job_id, lifecycle.after_failure, reason)

    def _spool_full(self) -> str | None:
        """Say why, if the spool's file system has (almost) no room left."""
        free = self._spool.free_bytes()
        if free is not None and free < SPOOL_FULL_BYTES:
            return (f"the spool's file system is full ({free} bytes free): the job's output "
                    "could not be written")
        return None

    def _last_look(self, job: Job, attempt: Attempt) -> None:
        """Read the attempt's progress file once more before its end is recorded (an
        attempt that ended before its backend's id was recorded included: it ran)."""
        self._watcher.track(job, attempt, often=False)
        self._watcher.check([(job.id, attempt.number)], read=True)

    def _forget(self, job: Job, attempt: Attempt) -> None:
        key = (job.id, attempt.number)
        self._watcher.forget(key)
        self._gone_since.pop(key, None)
        self._cancel_sent.discard(key)
        self._timed_out.discard(key)
        self._asked.discard(key)

    def _submitted(self, backend: str) -> None:
        """Poll a backend that was just given attempts soon, and often for a while (but
        for one whose attempts were recorded running and whose exits wake the loop: a
        poll would tell nothing new)."""
        now = self._last_submit[backend] = time.monotonic()
        found = self._backends[backend]
        if found.runs_on_submit and found.notifies_exits:
            # Its first poll, a mere safety net, comes after the usual interval; the
            # cycle that starts watching the attempt (its progress, its time limit) in
            # a moment, unless its end (which wakes the loop) came first.
            self._next_poll.setdefault(backend, now + self._interval(found))
            self._soon(FIRST_LOOK)
        else:
            self._woken.add(backend)
            self.kick()

    # -- healing and cancelling -------------------------------------------------------

    async def _heal(self, job: Job, attempt: Attempt, backend: Backend) -> None:
        """Settle an attempt whose submission was interrupted before its id was recorded."""
        try:
            native_id = await backend.find(job, attempt.number)
        except TransientError as exc:
            log.warning("cannot look for job %s on %s: %s", job.id, backend.name, exc)
            self._soon(RECHECK)
            return
        if native_id is not None:
            log.info("re-attached job %s attempt %d as %s", job.id, attempt.number, native_id)
            self._store.attempt_submitted(job.id, attempt.number, native_id)
            self._woken.add(backend.name)
            # Look again at once: it may have ended already, and nothing else would wake
            # the loop for it (a re-attached process is not the daemon's child).
            self.kick()
            return
        if self._spool.fence(job.id, attempt.number):
            self._store.abandon_attempt(job.id, attempt.number,
                                        "submission interrupted; the attempt never ran",
                                        lifecycle.after_abandon)
            self.kick()
            return
        # The wrapper claimed the attempt but has not recorded its pid.
        key = (job.id, attempt.number)
        verdict = lifecycle.judge_claim(self._gone_since.get(key), time.monotonic(),
                                        backend.lost_grace)
        if isinstance(verdict, lifecycle.Waiting):
            self._gone_since[key] = verdict.since
            self._soon(RECHECK)
        else:
            self._end(job, attempt, verdict)

    async def _enforce_time_limit(self, backend: Backend, job: Job, attempt: Attempt) -> None:
        """Stop an attempt that ran past the job's time limit (for backends that do not)."""
        key = (job.id, attempt.number)
        left = lifecycle.time_left(job, attempt, time.time())
        if left is None or key in self._timed_out:
            return
        if left > 0:
            self._soon(left)
            return
        log.info("job %s ran past its time limit of %s s: stopping it", job.id,
                 job.spec.resources.time_limit_s)
        self._timed_out.add(key)
        if attempt.native_id:
            await backend.cancel(attempt.native_id)
        self._woken.add(backend.name)

    async def _send_cancels(self, backend: Backend, items: list[tuple[Job, Attempt]]) -> None:
        for job, attempt in items:
            key = (job.id, attempt.number)
            if job.state is State.CANCELING and attempt.native_id and key not in self._cancel_sent:
                try:
                    await backend.cancel(attempt.native_id)
                except TransientError as exc:
                    log.warning("cannot cancel job %s yet: %s", job.id, exc)
                    continue
                self._cancel_sent.add(key)
                self._woken.add(backend.name)
                self.kick()

