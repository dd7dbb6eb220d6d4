"""Jobs, their attempts and events: the store's tables of what was asked and what
happened.

Each public method is one transaction (see :mod:`acjob.store.database`); state changes
are decided by :mod:`acjob.lifecycle` and recorded here as decided, each with its event.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Collection, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from ..errors import Conflict, NotFound
from ..lifecycle import AttemptEnd
from ..model import (
    FINAL_STATES,
    Attempt,
    Event,
    Job,
    JobSpec,
    NewJob,
    State,
    can_transition,
)
from ..progress import Progress
from .database import Database, Listener
from .listing import page
from .outbox import Outbox, enqueue
from .rows import (
    event_from,
    load_job,
    load_job_forms_at,
    load_jobs,
    load_jobs_at,
    load_jobs_where,
)
from .stats import recent_times, state_history

#: Jobs not final, named by their states: read through the index by state and position
#: (``state NOT IN`` the final ones reads every job).
_ACTIVE = "state IN ({})".format(", ".join(
    f"'{state.value}'" for state in State if state not in FINAL_STATES))
_WAITING_FOR_STDIN = "(state = 'QUEUED' AND stdin_closed = 0)"
_ANY_ACTIVE = f"SELECT 1 FROM jobs WHERE {_ACTIVE} AND NOT {_WAITING_FOR_STDIN} LIMIT 1"  # noqa: S608
#: Idempotency keys per query (SQLite allows 32766 variables; a batch has at most 1000).
_KEYS_PER_QUERY = 500


class _Head(NamedTuple):
    """What a state change needs of a job: its id, state and current attempt number."""

    id: str
    state: State
    attempt: int


class Store:
    """The daemon's memory. Not thread-safe: use it from the event loop's thread.

    Attributes:
        outbox: The deliveries of final jobs, over the same database.
        database: The database itself, for its group commit (see :class:`Database`).
    """

    def __init__(self, path: Path, *, synchronous: str = "ACKNOWLEDGED") -> None:
        """Open (and if need be create) the store at ``path`` (see :class:`Database`)."""
        self._database = Database(path, synchronous=synchronous)
        self.database = self._database
        self._db = self._database.conn
        self.path = path
        self.outbox = Outbox(self._database)
        self._progress_listeners: list[Callable[[Job], None]] = []

    def close(self) -> None:
        """Close the database; committed data is safe."""
        self._database.close()

    def subscribe(self, listener: Listener) -> None:
        """Call ``listener(job_id, seq, state)`` after each committed event."""
        self._database.subscribe(listener)

    def subscribe_progress(self, listener: Callable[[Job], None]) -> None:
        """Call ``listener(job)`` after each committed change of a job's progress."""
        self._progress_listeners.append(listener)

    def deliveries_pending(self) -> bool:
        """Tell whether any delivery is still to be made."""
        return self.outbox.pending()

    # -- jobs -------------------------------------------------------------------------

    def create_job(
        self,
        spec: JobSpec,
        backend: str,
        *,
        idempotency_key: str | None = None,
        request_hash: str | None = None,
        job_id: str,
    ) -> tuple[Job, bool]:
        """Record a new job in QUEUED, or return the one made with the same key.

        Returns:
            The job and whether it was created by this call.

        Raises:
            Conflict: ``idempotency_key`` was used before for a different request.
        """
        return self.create_jobs([NewJob(spec, backend, job_id, idempotency_key,
                                        request_hash)])[0]

    def create_jobs(self, new: Sequence[NewJob]) -> list[tuple[Job, bool]]:
        """Record several jobs in one transaction: all are accepted, or none.

        A job whose idempotency key is already in the store is returned as it is now
        (not created again); the others are created in ``QUEUED`` with their first
        event, and returned as recorded.

        Raises:
            Conflict: an idempotency key was used before for a different request.
        """
        now = time.time()
        keys = [item.idempotency_key for item in new if item.idempotency_key is not None]
        with self._database.transaction(durable=True) as db:
            # Read inside the write transaction: no other writer can add a key meanwhile.
            known = self._keys(keys)
            earlier: dict[int, str] = {}  # the position in `new` of a job made before: its id
            for i, item in enumerate(new):
                found = known.get(item.idempotency_key or "")
                if item.idempotency_key is None or found is None:
                    continue
                if item.request_hash is not None and found[1] != item.request_hash:
                    raise Conflict("this Idempotency-Key was already used for a different job",
                                   hint="use a new key for a new job",
                                   code="idempotency_conflict")
                earlier[i] = found[0]
            created = self._insert_queued(
                db, [item for i, item in enumerate(new) if i not in earlier], now)
            old = {job.id: job for job in load_jobs(self._db, list(earlier.values()))}
        return [(old[earlier[i]], False) if i in earlier else (created[item.job_id], True)
                for i, item in enumerate(new)]

    def _keys(self, keys: Sequence[str]) -> dict[str, tuple[str, str | None]]:
        """Return the job id and request hash of each of ``keys`` already used."""
        found: dict[str, tuple[str, str | None]] = {}
        for start in range(0, len(keys), _KEYS_PER_QUERY):
            chunk = keys[start:start + _KEYS_PER_QUERY]
            marks = ",".join("?" * len(chunk))
            found.update((r[0], (r[1], r[2])) for r in self._db.execute(
                # Built from placeholders only.
                f"SELECT idem_key, id, idem_hash FROM jobs WHERE idem_key IN ({marks})",  # noqa: S608
                chunk))
        return found

    def _insert_queued(self, db: sqlite3.Connection, new: Sequence[NewJob],
                       now: float) -> dict[str, Job]:
        """Insert ``new`` as queued jobs with their first event, a statement per table
        (not per job), inside the caller's transaction; return them by id, as stored.

        Their positions and event numbers are given here, after the largest ever
        handed out (the write transaction keeps anyone else from taking one), so no
        job row is updated after its insert and no job is read back.
        """
        if not new:
            return {}
        pos = self._last("jobs", "pos")
        seq = self._last("events", "seq")
        rows: list[tuple[Any, ...]] = []
        events: list[tuple[Any, ...]] = []
        labels: list[tuple[int, str, str]] = []
        jobs: dict[str, Job] = {}
        queued = State.QUEUED.value  # once: an enum member's value is a slow property
        for item in new:
            pos += 1
            seq += 1
            spec = item.spec
            closed = spec.stdin == "none"
            stdin_bytes = 0 if closed else None
            # The spec is kept for the store's reads from the job's first read on
            # (acjob.store.specs), not from here: keeping it here cost a batch call 3 %.
            rows.append((pos, item.job_id, item.spec_json or spec.model_dump_json(), queued,
                         item.backend, now, now, int(closed), stdin_bytes,
                         item.idempotency_key, item.request_hash, spec.name, seq))
            events.append((seq, item.job_id, pos, now, queued, 0, "accepted"))
            labels.extend((pos, k, v) for k, v in spec.labels.items())
            jobs[item.job_id] = Job(id=item.job_id, spec=spec, state=State.QUEUED,
                                    backend=item.backend, created_at=now, updated_at=now,
                                    seq=seq, stdin_bytes=stdin_bytes, stdin_closed=closed)
        db.executemany(
            "INSERT INTO jobs (pos, id, spec, state, backend, created_at, updated_at,"
            " stdin_closed, stdin_bytes, idem_key, idem_hash, name, seq)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
        db.executemany("INSERT INTO events (seq, job_id, job_pos, at, state, attempt, detail)"
                       " VALUES (?, ?, ?, ?, ?, ?, ?)", events)
        # Counted once per batch: this is the only insert of jobs, and a trigger, run
        # for every row, cost a third of the insert (schema 4 dropped it).
        db.execute("INSERT INTO state_counts (state, n) VALUES (?, ?)"
                   " ON CONFLICT (state) DO UPDATE SET n = n + excluded.n",
                   (State.QUEUED.value, len(rows)))
        if labels:
            db.executemany("INSERT INTO labels (job_pos, key, value) VALUES (?, ?, ?)", labels)
        documents = [(item.job_id, *item.document) for item in new if item.document is not None]
        if documents:
            db.executemany("INSERT INTO documents (job_id, kind, body) VALUES (?, ?, ?)",
                           documents)
        for job in jobs.values():
            self._database.announce(job.id, job.seq, State.QUEUED)
        return jobs

    def _last(self, table: str, column: str) -> int:
        """Return the largest ``column`` (an AUTOINCREMENT key) ``table`` ever handed out:
        SQLite's record of it, or the largest in the table if that is higher."""
        row = self._db.execute(
            # Built from the caller's constant names only.
            f"SELECT max(coalesce((SELECT seq FROM sqlite_sequence WHERE name = ?), 0),"  # noqa: S608
            f" coalesce((SELECT max({column}) FROM {table}), 0))", (table,)).fetchone()
        return int(row[0])

    def request_hashes(self, keys: Sequence[str]) -> dict[str, str | None]:
        """Return the request hash of each of ``keys`` already used (unused ones are
        left out)."""
        return {key: found[1] for key, found in self._keys(keys).items()}

    def get(self, job_id: str) -> Job:
        """Return the job with its attempts.

        Raises:
            NotFound: no such job.
        """
        return load_job(self._db, job_id)

    def list_jobs(
        self,
        *,
        states: Sequence[State] = (),
        labels: dict[str, str] | None = None,
        name_prefix: str | None = None,
        backend: str | None = None,
        limit: int = 100,
        cursor: str | None = None,
        document: str | None = None,
        tags: dict[str, str] | None = None,
    ) -> tuple[list[Job], str | None]:
        """Return jobs newest first, and the cursor of the next page (``None`` at the end).

        ``document`` keeps only jobs that have a document of this kind; ``tags``
        keeps those whose document has every tag (an empty value matches any value).

        Raises:
            InvalidRequest: the cursor was not made by this method.
        """
        positions, next_cursor = page(self._db, states=states, labels=labels,
                                      name_prefix=name_prefix, backend=backend, limit=limit,
                                      cursor=cursor, document=document, tags=tags)
        return load_jobs_at(self._db, positions), next_cursor

    def list_jobs_json(
        self,
        *,
        states: Sequence[State] = (),
        labels: dict[str, str] | None = None,
        name_prefix: str | None = None,
        backend: str | None = None,
        limit: int = 100,
        cursor: str | None = None,
    ) -> tuple[list[dict[str, Any]], str | None]:
        """Return the page :meth:`list_jobs` returns, each job in its JSON form (that of
        :func:`acjob.wire.job_json`), made from the rows without the model in between.

        Raises:
            InvalidRequest: the cursor was not made by this method.
        """
        positions, next_cursor = page(self._db, states=states, labels=labels,
                                      name_prefix=name_prefix, backend=backend, limit=limit,
                                      cursor=cursor)
        return load_job_forms_at(self._db, positions), next_cursor

    def document(self, job_id: str, kind: str) -> str | None:
        """Return the job's document of this kind, if it has one."""
        row = self._db.execute("SELECT body FROM documents WHERE job_id = ? AND kind = ?",
                               (job_id, kind)).fetchone()
        return None if row is None else str(row["body"])

    def active_elsewhere(self, backends: Sequence[str]) -> list[str]:
        """Return the ids of jobs not final whose backend is none of ``backends``, oldest
        first (read through the index by state: finished ones are not scanned)."""
        marks = ",".join("?" * len(backends))
        rows = self._db.execute(
            # Built from constants and placeholders only.
            f"SELECT id FROM jobs WHERE {_ACTIVE} AND backend NOT IN ({marks})"  # noqa: S608
            " ORDER BY pos", list(backends))
        return [r["id"] for r in rows]

    def in_flight(self) -> list[Job]:
        """Return the jobs that have an attempt under way (initializing, running, canceling)."""
        # Read at every cycle of the monitor: the jobs' rows come with the query that
        # finds them.
        return load_jobs_where(
            self._db, "state IN ('INITIALIZING', 'RUNNING', 'CANCELING') ORDER BY pos")

    def active_jobs_exist(self) -> bool:
        """Tell whether any job is not final (jobs still waiting for their stdin aside)."""
        row = self._db.execute(_ANY_ACTIVE)
        return row.fetchone() is not None

    def dispatchable(self, limit: int, backend: str | None = None,
                     exclude: Collection[str] = ()) -> list[Job]:
        """Return up to ``limit`` jobs ready to start (queued or awaiting a retry), oldest
        first, but for those in ``exclude`` (held back by the dispatcher).

        A job whose stdin is still arriving is ready too: it reads its stdin as it comes.
        """
        sql = "state IN ('QUEUED', 'PREEMPTED')"
        args: list[Any] = []
        if backend is not None:
            sql += " AND backend = ?"
            args.append(backend)
        if exclude:
            sql += f" AND id NOT IN ({', '.join('?' * len(exclude))})"
            args.extend(exclude)
        sql += " ORDER BY pos LIMIT ?"
        args.append(limit)
        return load_jobs_where(self._db, sql, args)

    def expired(self, ended_before: float, limit: int = 500) -> list[str]:
        """Return ids of final jobs that ended before ``ended_before`` and still have files."""
        rows = self._db.execute(
            "SELECT id FROM jobs WHERE purged_at IS NULL AND ended_at IS NOT NULL"
            " AND ended_at < ? AND NOT EXISTS (SELECT 1 FROM deliveries d"
            " WHERE d.job_id = jobs.id AND d.state = 'pending') ORDER BY ended_at LIMIT ?",
            (ended_before, limit),
        )
        return [r["id"] for r in rows]

    def stale_uploads(self, before: float) -> list[str]:
        """Return ids of jobs not ended whose stdin is still open and whose record has not
        changed since ``before`` (the caller checks the upload's own progress)."""
        rows = self._db.execute(
            "SELECT id FROM jobs WHERE state IN ('QUEUED', 'PREEMPTED', 'INITIALIZING',"
            " 'RUNNING') AND stdin_closed = 0 AND updated_at < ?",
            (before,),
        )
        return [r["id"] for r in rows]

    def mark_purged(self, job_ids: Sequence[str]) -> None:
        """Record that these jobs' spool files were removed."""
        now = time.time()
        with self._database.transaction() as db:
            db.executemany("UPDATE jobs SET purged_at = ? WHERE id = ?",
                           [(now, job_id) for job_id in job_ids])

    def count_started_by_backend(self) -> dict[str, int]:
        """Return, per backend, how many slots (cpus) the jobs under way hold."""
        rows = self._db.execute(
            "SELECT backend, sum(coalesce(json_extract(spec, '$.resources.cpus'), 1)) AS n"
            " FROM jobs"
            " WHERE state IN ('INITIALIZING', 'RUNNING', 'CANCELING') GROUP BY backend"
        )
        return {r["backend"]: r["n"] for r in rows}

    def count_by_state(self) -> dict[str, int]:
        """Return how many jobs are in each state (kept as jobs move: no scan)."""
        rows = self._db.execute("SELECT state, n FROM state_counts WHERE n > 0")
        return {r["state"]: r["n"] for r in rows}

    def stats(self, now: float, window: float, buckets: int, limit: int) -> dict[str, Any]:
        """Return jobs by state over the last ``window`` seconds and the queue wait and
        run time of the jobs that ended in it (see :mod:`acjob.store.stats`)."""
        return {"now": now, "window": window,
                "history": state_history(self._db, now, window, buckets),
                "jobs": recent_times(self._db, now - window, limit)}

    # -- stdin ------------------------------------------------------------------------

    def close_stdin(self, job_id: str, size: int) -> Job:
        """Record that the job's stdin is complete with ``size`` bytes.

        Idempotent for the same size.

        Raises:
            Conflict: stdin was already closed with another size, or the job takes none.
        """
        with self._database.transaction(durable=True) as db:
            job = load_job(self._db, job_id)
            if job.spec.stdin != "upload":
                raise Conflict("this job takes no stdin upload", code="no_stdin")
            if job.stdin_closed:
                if job.stdin_bytes != size:
                    raise Conflict(
                        f"stdin was already closed at {job.stdin_bytes} bytes",
                        code="stdin_closed",
                    )
                return job
            now = time.time()
            db.execute(
                "UPDATE jobs SET stdin_closed = 1, stdin_bytes = ?, updated_at = ? WHERE id = ?",
                (size, now, job_id),
            )
            self._event(job_id, job.state, job.attempt, f"stdin closed at {size} bytes", now)
            return load_job(self._db, job_id)

    # -- life cycle -------------------------------------------------------------------

    def start_attempt(self, job_id: str) -> Attempt:
        """Record the intent to submit the next attempt (before the backend is called)."""
        now = time.time()
        with self._database.transaction(durable=True) as db:
            # Its state and attempt only: the intent needs nothing more of the job.
            job = self._head(job_id)
            number = job.attempt + 1
            self._check(job, State.INITIALIZING)
            db.execute(
                "INSERT INTO attempts (job_id, number, state) VALUES (?, ?, 'submitting')",
                (job_id, number),
            )
            db.execute(
                "UPDATE jobs SET state = ?, attempt = ?, updated_at = ?, exit_code = NULL,"
                " reason = NULL WHERE id = ?",
                (State.INITIALIZING.value, number, now, job_id),
            )
            self._event(job_id, State.INITIALIZING, number, "submitting", now)
            return Attempt(job_id, number)

    def abandon_attempt(self, job_id: str, number: int, reason: str,
                        rule: Callable[[Job], State]) -> Job:
        """Record that an attempt provably never started; ``rule(job)`` (called on the
        job as it is in this transaction) names the job's next state."""
        now = time.time()
        with self._database.transaction() as db:
            job = load_job(self._db, job_id)
            db.execute(
                "UPDATE attempts SET state = 'abandoned', reason = ?, ended_at = ?"
                " WHERE job_id = ? AND number = ?",
                (reason, now, job_id, number),
            )
            self._set_state(job, rule(job), now, reason=reason)
            return load_job(self._db, job_id)

    def attempt_submitted(self, job_id: str, number: int, native_id: str, *,
                          running: bool = False) -> None:
        """Record the backend's id for an attempt; with ``running`` (a backend whose
        submission starts the process), that it runs too, in the same transaction (as
        :meth:`attempt_running`)."""
        with self._database.transaction() as db:
            db.execute(
                "UPDATE attempts SET native_id = ?, state = 'submitted'"
                " WHERE job_id = ? AND number = ?",
                (native_id, job_id, number),
            )
            if running:
                self._running(job_id, number, time.time())

    def attempt_running(self, job_id: str, number: int, started_at: float | None = None) -> None:
        """Record that the attempt runs; the job becomes RUNNING unless it is being canceled."""
        now = time.time()
        with self._database.transaction():
            self._running(job_id, number, now, started_at)

    def _running(self, job_id: str, number: int, now: float,
                 started_at: float | None = None) -> None:
        job = self._head(job_id)
        if job.attempt != number:
            return
        self._db.execute(
            "UPDATE attempts SET state = 'running', started_at = coalesce(started_at, ?)"
            " WHERE job_id = ? AND number = ?",
            (started_at or now, job_id, number),
        )
        if job.state in (State.INITIALIZING, State.QUEUED):
            self._set_state(job, State.RUNNING, now, detail="running")

    def end_attempt(self, job_id: str, number: int,
                    decide: Callable[[Job], AttemptEnd]) -> Job:
        """Record how an attempt ended and move its job on, in one transaction.

        ``decide(job)`` is called inside the transaction with the job as it is then
        (a cancel may have come since the caller looked); what it returns is recorded
        as it is, and flushed to disk before anyone is told (a final state answers
        long-polls and starts deliveries). A report about an attempt that is no longer
        the job's current one, or about a job that already ended, changes nothing.

        Raises:
            Conflict: the decided state is not reachable from the job's (a bug).
        """
        now = time.time()
        with self._database.transaction(durable=True) as db:
            job = load_job(self._db, job_id)
            if job.state.is_final or job.attempt != number:
                return job
            end = decide(job)
            db.execute(
                "UPDATE attempts SET state = 'ended', exit_code = ?, failure = ?, reason = ?,"
                " ended_at = ? WHERE job_id = ? AND number = ?",
                (end.exit_code, end.failure.value if end.failure else None, end.reason, now,
                 job_id, number),
            )
            self._set_state(job, end.state, now, exit_code=end.exit_code, reason=end.reason,
                            clear_exit=end.exit_code is None)
            return load_job(self._db, job_id)

    def change_state(self, job_id: str, rule: Callable[[Job], State | None],
                     reason: str) -> Job:
        """Move a job to the state ``rule(job)`` names, with ``reason``.

        ``rule`` is called inside the transaction with the job as it is then; ``None``
        leaves the job as it is.

        Raises:
            whatever ``rule`` raises (e.g. :class:`Conflict`), with nothing changed.
        """
        now = time.time()
        with self._database.transaction(durable=True):
            job = load_job(self._db, job_id)
            target = rule(job)
            if target is None:
                return job
            self._set_state(job, target, now, reason=reason)
            return load_job(self._db, job_id)

    def record_progress(self, job_id: str, number: int, progress: Progress) -> Job | None:
        """Keep ``progress`` as the latest of the job's attempt ``number`` (replacing the
        one before: only the latest is kept), unless that attempt is no longer the
        job's current one or has ended. Tells the progress listeners once committed.

        Returns:
            The job as it is now, or ``None`` if nothing was recorded.
        """
        with self._database.transaction() as db:
            changed = db.execute(
                "UPDATE attempts SET progress_percent = ?, progress_message = ?,"
                " progress_at = ? WHERE job_id = ? AND number = ?"
                " AND state NOT IN ('ended', 'abandoned')"
                " AND number = (SELECT attempt FROM jobs WHERE id = ?)",
                (progress.percent, progress.message, progress.updated_at, job_id, number,
                 job_id)).rowcount
            job = load_job(self._db, job_id) if changed else None
        if job is not None:
            for listener in self._progress_listeners:
                listener(job)
        return job

    # -- events -----------------------------------------------------------------------

    def events(self, job_id: str, after: int = 0, limit: int = 1000) -> list[Event]:
        """Return the job's events with ``seq > after``, oldest first."""
        rows = self._db.execute(
            "SELECT * FROM events WHERE job_pos = (SELECT pos FROM jobs WHERE id = ?)"
            " AND seq > ? ORDER BY seq LIMIT ?",
            (job_id, after, limit),
        ).fetchall()
        return [event_from(r) for r in rows]

    # -- internals --------------------------------------------------------------------

    def _head(self, job_id: str) -> _Head:
        """Return the job's id, state and current attempt number (read alone: cheaper
        than the whole job, its spec and attempts).

        Raises:
            NotFound: no such job.
        """
        row = self._db.execute("SELECT state, attempt FROM jobs WHERE id = ?",
                               (job_id,)).fetchone()
        if row is None:
            raise NotFound(f"no job {job_id}", hint="check the id; ac jobs lists the jobs")
        return _Head(job_id, State(row[0]), row[1])

    def _check(self, job: Job | _Head, new: State) -> None:
        if not can_transition(job.state, new):
            raise Conflict(
                f"job {job.id} cannot go from {job.state.value} to {new.value}",
                code="invalid_transition",
            )

    def _set_state(
        self,
        job: Job | _Head,
        new: State,
        now: float,
        *,
        exit_code: int | None = None,
        reason: str | None = None,
        detail: str | None = None,
        clear_exit: bool = False,
    ) -> None:
        self._check(job, new)
        ended = now if new in FINAL_STATES else None
        if ended is not None:
            # The outbox: committed with the final state, or not at all (from the
            # whole job, whose spec names the deliveries).
            enqueue(self._db, job if isinstance(job, Job) else load_job(self._db, job.id), now)
        self._db.execute(
            "UPDATE jobs SET state = ?, updated_at = ?, ended_at = ?,"
            " exit_code = CASE WHEN ? THEN NULL ELSE coalesce(?, exit_code) END, reason = ?"
            " WHERE id = ?",
            (new.value, now, ended, clear_exit, exit_code, reason, job.id),
        )

        self._event(job.id, new, job.attempt, detail or reason, now)

    def _event(self, job_id: str, state: State, attempt: int, detail: str | None,
               now: float) -> None:
        cur = self._db.execute(
            "INSERT INTO events (job_id, job_pos, at, state, attempt, detail)"
            " VALUES (?, (SELECT pos FROM jobs WHERE id = ?), ?, ?, ?, ?)",
            (job_id, job_id, now, state.value, attempt, detail),
        )
        seq = int(cur.lastrowid or 0)
        self._db.execute("UPDATE jobs SET seq = ? WHERE id = ?", (seq, job_id))
        self._database.announce(job_id, seq, state)

