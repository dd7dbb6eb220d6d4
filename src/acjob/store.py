"""The durable store: every SQL statement of acjob lives here.

SQLite in WAL mode with one writer (the daemon). Each public method is one
transaction (``BEGIN IMMEDIATE``), so what a method returns is committed: a job is
acknowledged to a client only after :meth:`Store.create_job` returned. Every state
change appends an event with a monotonic sequence number in the same transaction;
listeners registered with :meth:`Store.subscribe` hear of it after the commit.
"""

from __future__ import annotations

import base64
import json
import secrets
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import ConfigError, Conflict, InvalidRequest, NotFound
from .lifecycle import AttemptEnd
from .model import (
    FINAL_STATES,
    Attempt,
    FailureKind,
    Job,
    JobSpec,
    MailDelivery,
    State,
    can_transition,
)

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS jobs (
    pos INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    spec TEXT NOT NULL,
    state TEXT NOT NULL,
    backend TEXT NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    ended_at REAL,
    attempt INTEGER NOT NULL DEFAULT 0,
    exit_code INTEGER,
    reason TEXT,
    stdin_closed INTEGER NOT NULL,
    stdin_bytes INTEGER,
    idem_key TEXT UNIQUE,
    idem_hash TEXT,
    seq INTEGER NOT NULL DEFAULT 0,
    purged_at REAL
);
CREATE INDEX IF NOT EXISTS jobs_state ON jobs(state);
CREATE INDEX IF NOT EXISTS jobs_unpurged ON jobs(ended_at) WHERE purged_at IS NULL;
CREATE INDEX IF NOT EXISTS jobs_active ON jobs(state, pos)
    WHERE state NOT IN ('COMPLETE', 'EXECUTOR_ERROR', 'SYSTEM_ERROR', 'CANCELED');
CREATE TABLE IF NOT EXISTS documents (
    job_id TEXT PRIMARY KEY REFERENCES jobs(id),
    kind TEXT NOT NULL,
    body TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS attempts (
    job_id TEXT NOT NULL,
    number INTEGER NOT NULL,
    native_id TEXT,
    state TEXT NOT NULL,
    exit_code INTEGER,
    failure TEXT,
    reason TEXT,
    started_at REAL,
    ended_at REAL,
    PRIMARY KEY (job_id, number)
);
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id TEXT NOT NULL,
    at REAL NOT NULL,
    state TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    detail TEXT
);
CREATE INDEX IF NOT EXISTS events_job ON events(job_id, seq);
CREATE TABLE IF NOT EXISTS deliveries (
    id TEXT PRIMARY KEY,
    job_id TEXT NOT NULL,
    position INTEGER NOT NULL,
    kind TEXT NOT NULL,
    target TEXT NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL,
    next_at REAL NOT NULL,
    sent_at REAL,
    last_error TEXT
);
CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries(next_at) WHERE state = 'pending';
CREATE INDEX IF NOT EXISTS deliveries_job ON deliveries(job_id, position);
"""

_ACTIVE = "state NOT IN ('COMPLETE', 'EXECUTOR_ERROR', 'SYSTEM_ERROR', 'CANCELED')"
# Built from constants only.
_SELECT_ACTIVE = "SELECT id FROM jobs WHERE " + _ACTIVE + " ORDER BY pos"  # noqa: S608
_WAITING_FOR_STDIN = "(state = 'QUEUED' AND stdin_closed = 0)"
_ANY_ACTIVE = f"SELECT 1 FROM jobs WHERE {_ACTIVE} AND NOT {_WAITING_FOR_STDIN} LIMIT 1"  # noqa: S608

Listener = Callable[[str, int, State], None]


@dataclass(frozen=True, slots=True)
class NewJob:
    """A job to record (see :meth:`Store.create_jobs`)."""

    spec: JobSpec
    backend: str
    job_id: str
    idempotency_key: str | None = None
    request_hash: str | None = None
    #: A document kept with the job, such as the TES task it came from: (kind, JSON).
    document: tuple[str, str] | None = None


@dataclass(frozen=True, slots=True)
class DeliveryRecord:
    """One delivery of a final job's result (a row of the outbox).

    Attributes:
        id: Stable across retries, so receivers can drop duplicates.
        state: ``pending``, ``sent`` or ``failed``.
    """

    id: str
    job_id: str
    kind: str
    target: str
    state: str
    attempts: int
    created_at: float
    next_at: float
    sent_at: float | None
    last_error: str | None

    def public(self) -> dict[str, Any]:
        """Return the JSON form served by the API."""
        return {"id": self.id, "type": self.kind, "target": self.target, "state": self.state,
                "attempts": self.attempts, "sent_at": self.sent_at,
                "last_error": self.last_error}


@dataclass(frozen=True, slots=True)
class Event:
    """One entry of a job's history."""

    seq: int
    job_id: str
    at: float
    state: State
    attempt: int
    detail: str | None

    def public(self) -> dict[str, Any]:
        """Return the JSON form served by the API."""
        return {"seq": self.seq, "job_id": self.job_id, "at": self.at,
                "state": self.state.value, "attempt": self.attempt, "detail": self.detail}


class Store:
    """The daemon's memory. Not thread-safe: use it from the event loop's thread."""

    def __init__(self, path: Path, *, synchronous: str = "NORMAL") -> None:
        """Open (and if need be create) the database at ``path``.

        Args:
            path: The SQLite file; its directory must exist.
            synchronous: SQLite's ``synchronous`` setting. ``NORMAL`` survives any
                crash of the process; ``FULL`` also a power cut, at the cost of an
                fsync per commit.
        """
        if synchronous.upper() not in {"NORMAL", "FULL", "EXTRA"}:
            raise InvalidRequest(f"unknown synchronous mode {synchronous!r}")
        self.path = path
        self._listeners: list[Listener] = []
        self._pending: list[tuple[str, int, State]] = []
        try:
            self._open(path, synchronous)
        except sqlite3.Error as exc:
            raise ConfigError(
                f"cannot open the store {path}: {exc}",
                hint="if it was written by a pre-release acjob, move it (and the spool) aside",
                code="store_unusable",
            ) from exc

    def _open(self, path: Path, synchronous: str) -> None:
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(f"PRAGMA synchronous={synchronous.upper()}")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.execute("PRAGMA busy_timeout=5000")
        self._db.executescript(_SCHEMA)
        with self._tx() as db:
            db.execute("INSERT OR IGNORE INTO meta VALUES ('schema', ?)", (str(SCHEMA_VERSION),))
            row = db.execute("SELECT value FROM meta WHERE key='schema'").fetchone()
        if int(row[0]) > SCHEMA_VERSION:
            raise ConfigError(
                f"the store at {path} was written by a newer acjob (schema {row[0]})",
                hint="upgrade acjob, or point the daemon at another state directory",
            )

    def close(self) -> None:
        """Close the database; committed data is safe."""
        self._db.close()

    def subscribe(self, listener: Listener) -> None:
        """Call ``listener(job_id, seq, state)`` after each committed event."""
        self._listeners.append(listener)

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            self._pending.clear()
            raise
        self._db.execute("COMMIT")
        pending, self._pending = self._pending, []
        for job_id, seq, state in pending:
            for listener in self._listeners:
                listener(job_id, seq, state)

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

        Raises:
            Conflict: an idempotency key was used before for a different request.
        """
        now = time.time()
        result: list[tuple[Job, bool]] = []
        with self._tx() as db:
            for item in new:
                if item.idempotency_key is not None:
                    row = db.execute("SELECT id, idem_hash FROM jobs WHERE idem_key = ?",
                                     (item.idempotency_key,)).fetchone()
                    if row is not None:
                        if item.request_hash is not None and row["idem_hash"] != item.request_hash:
                            raise Conflict(
                                "this Idempotency-Key was already used for a different job",
                                hint="use a new key for a new job",
                                code="idempotency_conflict",
                            )
                        result.append((self._load(row["id"]), False))
                        continue
                closed = item.spec.stdin == "none"
                db.execute(
                    "INSERT INTO jobs (id, spec, state, backend, created_at, updated_at,"
                    " stdin_closed, stdin_bytes, idem_key, idem_hash)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (item.job_id, item.spec.model_dump_json(), State.QUEUED.value, item.backend,
                     now, now, int(closed), 0 if closed else None, item.idempotency_key,
                     item.request_hash),
                )
                if item.document is not None:
                    db.execute("INSERT INTO documents (job_id, kind, body) VALUES (?, ?, ?)",
                               (item.job_id, *item.document))
                self._event(item.job_id, State.QUEUED, 0, "accepted", now)
                result.append((self._load(item.job_id), True))
        return result

    def job_for_key(self, idempotency_key: str) -> tuple[Job, str | None] | None:
        """Return the job made with this idempotency key and its request hash, if any."""
        row = self._db.execute(
            "SELECT id, idem_hash FROM jobs WHERE idem_key = ?", (idempotency_key,)
        ).fetchone()
        return None if row is None else (self._load(row["id"]), row["idem_hash"])

    def get(self, job_id: str) -> Job:
        """Return the job with its attempts.

        Raises:
            NotFound: no such job.
        """
        return self._load(job_id)

    def list_jobs(
        self,
        *,
        states: Sequence[State] = (),
        labels: dict[str, str] | None = None,
        name_prefix: str | None = None,
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
        where: list[str] = []
        args: list[Any] = []
        if cursor:
            where.append("pos < ?")
            args.append(_decode_cursor(cursor))
        if states:
            where.append(f"state IN ({','.join('?' * len(states))})")
            args.extend(s.value for s in states)
        if name_prefix:
            # Case-sensitive, unlike LIKE; substr counts characters, as len() does.
            where.append("substr(json_extract(spec, '$.name'), 1, ?) = ?")
            args.extend((len(name_prefix), name_prefix))
        for key, value in (labels or {}).items():
            where.append("json_extract(spec, '$.labels.' || json_quote(?)) = ?")
            args.extend((key, value))
        if document is not None:
            where.append("id IN (SELECT job_id FROM documents WHERE kind = ?)")
            args.append(document)
        for key, value in (tags or {}).items():
            # json_each compares keys as they are: a JSON path could not name every key
            # (one with a double quote, say).
            tagged = ("id IN (SELECT job_id FROM documents, json_each(documents.body, '$.tags')"
                      " WHERE json_each.key = ?")
            if value == "":  # any value
                where.append(tagged + ")")
                args.append(key)
            else:
                where.append(tagged + " AND json_each.value = ?)")
                args.extend((key, value))
        sql = "SELECT id, pos FROM jobs"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY pos DESC LIMIT ?"
        args.append(limit + 1)
        rows = self._db.execute(sql, args).fetchall()
        more = len(rows) > limit
        rows = rows[:limit]
        jobs = [self._load(r["id"]) for r in rows]
        next_cursor = _encode_cursor(rows[-1]["pos"]) if more and rows else None
        return jobs, next_cursor

    def document(self, job_id: str, kind: str) -> str | None:
        """Return the job's document of this kind, if it has one."""
        row = self._db.execute("SELECT body FROM documents WHERE job_id = ? AND kind = ?",
                               (job_id, kind)).fetchone()
        return None if row is None else str(row["body"])

    def active_jobs(self) -> list[Job]:
        """Return every job that is not final, oldest first."""
        rows = self._db.execute(_SELECT_ACTIVE).fetchall()
        return [self._load(r["id"]) for r in rows]

    def in_flight(self) -> list[Job]:
        """Return the jobs that have an attempt under way (initializing, running, canceling)."""
        rows = self._db.execute(
            "SELECT id FROM jobs WHERE state IN ('INITIALIZING', 'RUNNING', 'CANCELING')"
            " ORDER BY pos"
        ).fetchall()
        return [self._load(r["id"]) for r in rows]

    def active_jobs_exist(self) -> bool:
        """Tell whether any job is not final (jobs still waiting for their stdin aside)."""
        row = self._db.execute(_ANY_ACTIVE)
        return row.fetchone() is not None

    def dispatchable(self, limit: int, backend: str | None = None) -> list[Job]:
        """Return up to ``limit`` jobs ready to start (queued or awaiting a retry), oldest first."""
        sql = ("SELECT id FROM jobs WHERE state IN ('QUEUED', 'PREEMPTED') AND stdin_closed = 1")
        args: list[Any] = []
        if backend is not None:
            sql += " AND backend = ?"
            args.append(backend)
        sql += " ORDER BY pos LIMIT ?"
        args.append(limit)
        return [self._load(r["id"]) for r in self._db.execute(sql, args).fetchall()]

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
        """Return ids of queued jobs whose stdin upload has not moved since ``before``."""
        rows = self._db.execute(
            "SELECT id FROM jobs WHERE state = 'QUEUED' AND stdin_closed = 0 AND updated_at < ?",
            (before,),
        )
        return [r["id"] for r in rows]

    def mark_purged(self, job_ids: Sequence[str]) -> None:
        """Record that these jobs' spool files were removed."""
        now = time.time()
        with self._tx() as db:
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
        """Return how many jobs are in each state."""
        rows = self._db.execute("SELECT state, count(*) AS n FROM jobs GROUP BY state")
        return {r["state"]: r["n"] for r in rows}

    # -- stdin ------------------------------------------------------------------------

    def close_stdin(self, job_id: str, size: int) -> Job:
        """Record that the job's stdin is complete with ``size`` bytes.

        Idempotent for the same size.

        Raises:
            Conflict: stdin was already closed with another size, or the job takes none.
        """
        with self._tx() as db:
            job = self._load(job_id)
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
            return self._load(job_id)

    # -- life cycle -------------------------------------------------------------------

    def start_attempt(self, job_id: str) -> Attempt:
        """Record the intent to submit the next attempt (before the backend is called)."""
        now = time.time()
        with self._tx() as db:
            job = self._load(job_id)
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
        with self._tx() as db:
            job = self._load(job_id)
            db.execute(
                "UPDATE attempts SET state = 'abandoned', reason = ?, ended_at = ?"
                " WHERE job_id = ? AND number = ?",
                (reason, now, job_id, number),
            )
            self._set_state(job, rule(job), now, reason=reason)
            return self._load(job_id)

    def attempt_submitted(self, job_id: str, number: int, native_id: str) -> None:
        """Record the backend's id for an attempt."""
        with self._tx() as db:
            db.execute(
                "UPDATE attempts SET native_id = ?, state = 'submitted'"
                " WHERE job_id = ? AND number = ?",
                (native_id, job_id, number),
            )

    def attempt_running(self, job_id: str, number: int, started_at: float | None = None) -> None:
        """Record that the attempt runs; the job becomes RUNNING unless it is being canceled."""
        now = time.time()
        with self._tx() as db:
            job = self._load(job_id)
            if job.attempt != number:
                return
            db.execute(
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
        as it is. A report about an attempt that is no longer the job's current one,
        or about a job that already ended, changes nothing.

        Raises:
            Conflict: the decided state is not reachable from the job's (a bug).
        """
        now = time.time()
        with self._tx() as db:
            job = self._load(job_id)
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
            return self._load(job_id)

    def change_state(self, job_id: str, rule: Callable[[Job], State | None],
                     reason: str) -> Job:
        """Move a job to the state ``rule(job)`` names, with ``reason``.

        ``rule`` is called inside the transaction with the job as it is then; ``None``
        leaves the job as it is.

        Raises:
            whatever ``rule`` raises (e.g. :class:`Conflict`), with nothing changed.
        """
        now = time.time()
        with self._tx():
            job = self._load(job_id)
            target = rule(job)
            if target is None:
                return job
            self._set_state(job, target, now, reason=reason)
            return self._load(job_id)

    # -- the outbox -------------------------------------------------------------------

    def due_deliveries(self, now: float, limit: int = 100) -> list[DeliveryRecord]:
        """Return pending deliveries whose time has come, oldest first."""
        rows = self._db.execute(
            "SELECT * FROM deliveries WHERE state = 'pending' AND next_at <= ?"
            " ORDER BY next_at LIMIT ?", (now, limit))
        return [_delivery(r) for r in rows]

    def next_delivery_at(self) -> float | None:
        """Return when the next pending delivery is due (``None``: nothing pending)."""
        row = self._db.execute(
            "SELECT min(next_at) FROM deliveries WHERE state = 'pending'").fetchone()
        return None if row[0] is None else float(row[0])

    def delivery_done(self, delivery_id: str) -> None:
        """Record a successful delivery."""
        now = time.time()
        with self._tx() as db:
            db.execute("UPDATE deliveries SET state = 'sent', attempts = attempts + 1,"
                       " sent_at = ?, last_error = NULL WHERE id = ?", (now, delivery_id))

    def delivery_failed(self, delivery_id: str, error: str, retry_at: float | None) -> None:
        """Record a failed try: to be tried again at ``retry_at``, or failed for good."""
        with self._tx() as db:
            if retry_at is None:
                db.execute("UPDATE deliveries SET state = 'failed', attempts = attempts + 1,"
                           " last_error = ? WHERE id = ?", (error[:1000], delivery_id))
            else:
                db.execute("UPDATE deliveries SET attempts = attempts + 1, next_at = ?,"
                           " last_error = ? WHERE id = ?", (retry_at, error[:1000], delivery_id))

    def deliveries_pending(self) -> bool:
        """Tell whether any delivery is still to be made."""
        row = self._db.execute("SELECT 1 FROM deliveries WHERE state = 'pending' LIMIT 1")
        return row.fetchone() is not None

    # -- events -----------------------------------------------------------------------

    def events(self, job_id: str, after: int = 0, limit: int = 1000) -> list[Event]:
        """Return the job's events with ``seq > after``, oldest first."""
        rows = self._db.execute(
            "SELECT * FROM events WHERE job_id = ? AND seq > ? ORDER BY seq LIMIT ?",
            (job_id, after, limit),
        ).fetchall()
        return [Event(r["seq"], r["job_id"], r["at"], State(r["state"]), r["attempt"],
                      r["detail"]) for r in rows]

    # -- internals --------------------------------------------------------------------

    def _check(self, job: Job, new: State) -> None:
        if not can_transition(job.state, new):
            raise Conflict(
                f"job {job.id} cannot go from {job.state.value} to {new.value}",
                code="invalid_transition",
            )

    def _set_state(
        self,
        job: Job,
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
            # The outbox: committed with the final state, or not at all.
            self._db.executemany(
                "INSERT INTO deliveries (id, job_id, position, kind, target, state, created_at,"
                " next_at) VALUES (?, ?, ?, ?, ?, 'pending', ?, ?)",
                [(secrets.token_hex(16), job.id, i, d.type,
                  d.to if isinstance(d, MailDelivery) else d.url, now, now)
                 for i, d in enumerate(job.spec.deliveries)],
            )
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
            "INSERT INTO events (job_id, at, state, attempt, detail) VALUES (?, ?, ?, ?, ?)",
            (job_id, now, state.value, attempt, detail),
        )
        seq = int(cur.lastrowid or 0)
        self._db.execute("UPDATE jobs SET seq = ? WHERE id = ?", (seq, job_id))
        self._pending.append((job_id, seq, state))

    def _load(self, job_id: str) -> Job:
        row = self._db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        if row is None:
            raise NotFound(f"no job {job_id}", hint="check the id; ac jobs lists the jobs")
        attempts = tuple(
            Attempt(
                job_id=a["job_id"], number=a["number"], native_id=a["native_id"],
                state=a["state"], exit_code=a["exit_code"],
                failure=FailureKind(a["failure"]) if a["failure"] else None,
                reason=a["reason"], started_at=a["started_at"], ended_at=a["ended_at"],
            )
            for a in self._db.execute(
                "SELECT * FROM attempts WHERE job_id = ? ORDER BY number", (job_id,)
            )
        )
        deliveries = tuple(
            _delivery(d).public() for d in self._db.execute(
                "SELECT * FROM deliveries WHERE job_id = ? ORDER BY position", (job_id,))
        )
        return Job(
            id=row["id"],
            spec=JobSpec.model_validate(json.loads(row["spec"])),
            state=State(row["state"]),
            backend=row["backend"],
            created_at=row["created_at"],
            updated_at=row["updated_at"],
            seq=row["seq"],
            attempt=row["attempt"],
            exit_code=row["exit_code"],
            reason=row["reason"],
            stdin_bytes=row["stdin_bytes"],
            stdin_closed=bool(row["stdin_closed"]),
            ended_at=row["ended_at"],
            purged_at=row["purged_at"],
            attempts=attempts,
            deliveries=deliveries,
        )


def _delivery(row: sqlite3.Row) -> DeliveryRecord:
    return DeliveryRecord(
        id=row["id"], job_id=row["job_id"], kind=row["kind"], target=row["target"],
        state=row["state"], attempts=row["attempts"], created_at=row["created_at"],
        next_at=row["next_at"], sent_at=row["sent_at"], last_error=row["last_error"],
    )


def _encode_cursor(pos: int) -> str:
    return base64.urlsafe_b64encode(f"p{pos}".encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> int:
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        if not text.startswith("p") or not text[1:].isdigit() or len(text) > 19:
            raise ValueError(text)
        return int(text[1:])
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidRequest("the cursor is not valid", code="invalid_cursor") from exc
