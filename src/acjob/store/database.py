"""The SQLite database under the store: its schema, its settings and its transactions.

WAL mode with one writer (the daemon). :meth:`Database.transaction` is ``BEGIN
IMMEDIATE`` … ``COMMIT``: what a store method returns is committed. Listeners hear of
a transaction's events only after its commit.

Group commit: while :data:`grouped` is set (the server sets it for the code that
answers a request, the dispatcher while it records intents) and
:attr:`Database.group_commit` is on, an acknowledged commit is not flushed by itself;
it is counted in :attr:`Database.committed`, and every such commit is flushed at once
with :meth:`Database.sync` before anyone acts on it (:mod:`acjob.store.commits`).
Elsewhere (the monitor's record of an end, the janitor) it is flushed as it commits.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path

from ..errors import ConfigError, InvalidRequest
from ..model import State

SCHEMA_VERSION = 5

#: Set where acknowledged commits wait for a group flush, which the code that acts on
#: them awaits first (:mod:`acjob.store.commits`).
grouped: ContextVar[bool] = ContextVar("acjob_grouped", default=False)

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

#: What takes a store of the version before each key to that version, in one
#: transaction. 2: indexes that answer a page of a list without scanning the jobs (by
#: state, label or name), and the count of jobs per state kept as jobs move (a health
#: check or a metrics scrape then reads a dozen rows, however many jobs there are).
#: 3: each attempt's latest progress report (only the latest: not every line).
#: 4: new jobs are counted by the store, once per transaction that inserts them
#: (``Store.create_jobs``), not by a trigger: a trigger runs for every row, and cost
#: a third of the time of inserting a batch of jobs.
#: 5: a job's events are found by the job's position (``events.job_pos``, which grows
#: with each job), not by its id: ids are random, so each new job's first event went
#: into a random page of the index by id, and a batch of 500 jobs rewrote hundreds of
#: that index's pages (more than half of what its commit wrote and flushed). Events
#: of a job deleted before this migration keep a ``job_pos`` of ``NULL``. And the
#: partial index of active jobs goes: the index by state and position (schema 2) finds
#: them as well, asked for the states that are not final (one more index written per
#: new job was a tenth of the time of inserting a batch). The index of jobs whose files
#: are kept holds the ended ones only (the janitor asks for no other): a new job
#: enters it when it ends, not when it is made.
_MIGRATIONS: dict[int, str] = {
    2: """
ALTER TABLE jobs ADD COLUMN name TEXT;
UPDATE jobs SET name = json_extract(spec, '$.name');
CREATE INDEX jobs_name ON jobs(name, pos) WHERE name IS NOT NULL;
DROP INDEX IF EXISTS jobs_state;
CREATE INDEX jobs_state_pos ON jobs(state, pos);
CREATE TABLE labels (
    job_pos INTEGER NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL
);
INSERT INTO labels (job_pos, key, value)
    SELECT jobs.pos, each.key, each.value FROM jobs, json_each(jobs.spec, '$.labels') AS each;
CREATE INDEX labels_key_value ON labels(key, value, job_pos);
CREATE TABLE state_counts (state TEXT PRIMARY KEY, n INTEGER NOT NULL);
INSERT INTO state_counts (state, n) SELECT state, count(*) FROM jobs GROUP BY state;
CREATE TRIGGER jobs_counted AFTER INSERT ON jobs BEGIN
    INSERT INTO state_counts (state, n) VALUES (new.state, 1)
        ON CONFLICT (state) DO UPDATE SET n = n + 1;
END;
CREATE TRIGGER jobs_recounted AFTER UPDATE OF state ON jobs
    WHEN old.state IS NOT new.state BEGIN
    UPDATE state_counts SET n = n - 1 WHERE state = old.state;
    INSERT INTO state_counts (state, n) VALUES (new.state, 1)
        ON CONFLICT (state) DO UPDATE SET n = n + 1;
END;
CREATE TRIGGER jobs_uncounted AFTER DELETE ON jobs BEGIN
    UPDATE state_counts SET n = n - 1 WHERE state = old.state;
END;
""",
    3: """
ALTER TABLE attempts ADD COLUMN progress_percent REAL;
ALTER TABLE attempts ADD COLUMN progress_message TEXT;
ALTER TABLE attempts ADD COLUMN progress_at REAL;
""",
    4: """
DROP TRIGGER IF EXISTS jobs_counted;
""",
    5: """
DROP INDEX IF EXISTS events_job;
ALTER TABLE events ADD COLUMN job_pos INTEGER;
UPDATE events SET job_pos = (SELECT pos FROM jobs WHERE jobs.id = events.job_id);
CREATE INDEX events_job_pos ON events(job_pos, seq);
DROP INDEX IF EXISTS jobs_active;
DROP INDEX IF EXISTS jobs_unpurged;
CREATE INDEX jobs_ended_unpurged ON jobs(ended_at)
    WHERE purged_at IS NULL AND ended_at IS NOT NULL;
""",
}

Listener = Callable[[str, int, State], None]


class Database:
    """One connection to the store's file. Not thread-safe: use it from one thread."""

    def __init__(self, path: Path, *, synchronous: str = "ACKNOWLEDGED") -> None:
        """Open (and if need be create) the database at ``path``.

        Args:
            path: The SQLite file; its directory must exist.
            synchronous: ``ACKNOWLEDGED`` (the default): a transaction that answers a
                client (``durable=True``) is flushed to disk before it returns, so what
                a client was told survives a power cut; the others survive any crash of
                the process, and are flushed with the next acknowledged one. Or one of
                SQLite's own settings for every commit: ``NORMAL`` (no flush: a crash of
                the process, not a power cut), ``FULL`` or ``EXTRA`` (a flush each).

        Raises:
            InvalidRequest: an unknown ``synchronous`` mode.
            ConfigError: the file is not a usable store, or a newer acjob wrote it.
        """
        mode = synchronous.upper()
        if mode not in {"ACKNOWLEDGED", "NORMAL", "FULL", "EXTRA"}:
            raise InvalidRequest(f"unknown synchronous mode {synchronous!r}")
        # In WAL mode a flushed commit makes every commit before it durable too.
        self._flush_acknowledged = mode == "ACKNOWLEDGED"
        synchronous = "NORMAL" if self._flush_acknowledged else mode
        self.path = path
        #: Acknowledged commits made for requests and left to a group flush (see the
        #: module's doc); off until whoever answers the requests flushes them.
        self.group_commit = False
        #: How many such commits were made, and how many of them are flushed.
        self.committed = 0
        self.synced = 0
        self._wal_fd: int | None = None
        self._listeners: list[Listener] = []
        self._pending: list[tuple[str, int, State]] = []
        try:
            self.conn = self._open(path, synchronous)
        except sqlite3.Error as exc:
            raise ConfigError(
                f"cannot open the store {path}: {exc}",
                hint="if it was written by a pre-release acjob, move it (and the spool) aside",
                code="store_unusable",
            ) from exc

    def _open(self, path: Path, synchronous: str) -> sqlite3.Connection:
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={synchronous.upper()}")
        conn.execute("PRAGMA foreign_keys=ON")
        conn.execute("PRAGMA busy_timeout=5000")
        conn.executescript(_SCHEMA)
        self.conn = conn
        with self.transaction() as db:
            # A store made now starts at version 1 and is migrated like an old one.
            db.execute("INSERT OR IGNORE INTO meta VALUES ('schema', '1')")
            row = db.execute("SELECT value FROM meta WHERE key='schema'").fetchone()
        version = int(row[0])
        if version > SCHEMA_VERSION:
            raise ConfigError(
                f"the store at {path} was written by a newer acjob (schema {row[0]})",
                hint="upgrade acjob, or point the daemon at another state directory",
            )
        for target in range(version + 1, SCHEMA_VERSION + 1):
            # One transaction per step: a crash leaves the store at the step before.
            try:
                conn.executescript(f"BEGIN IMMEDIATE;\n{_MIGRATIONS[target]}\n"
                                   f"UPDATE meta SET value = '{target}' WHERE key = 'schema';\n"
                                   "COMMIT;")
            except sqlite3.Error:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        return conn

    def close(self) -> None:
        """Close the database; committed data is safe."""
        self.conn.close()
        if self._wal_fd is not None:
            os.close(self._wal_fd)
            self._wal_fd = None

    def sync(self) -> None:
        """Flush the write-ahead log to disk: every commit made before the call is
        durable when it returns (SQLite's own ``synchronous=FULL`` does the same at
        each commit). Callable from another thread; it touches no SQLite state.

        Raises:
            OSError: the disk refused to flush.
        """
        if self._wal_fd is None:
            try:
                fd = os.open(f"{self.path}-wal", os.O_RDONLY | os.O_CLOEXEC)
            except FileNotFoundError:
                return  # no log yet: nothing was committed to it
            # The log's name in its directory must survive a power cut too.
            directory = os.open(self.path.parent, os.O_RDONLY | os.O_CLOEXEC)
            try:
                os.fsync(directory)
            finally:
                os.close(directory)
            self._wal_fd = fd
        # The log's data and size, as SQLite's own flush of it (fdatasync).
        os.fdatasync(self._wal_fd)

    def subscribe(self, listener: Listener) -> None:
        """Call ``listener(job_id, seq, state)`` after each committed event."""
        self._listeners.append(listener)

    def announce(self, job_id: str, seq: int, state: State) -> None:
        """Queue an event for the listeners, told once the transaction commits."""
        self._pending.append((job_id, seq, state))

    @contextmanager
    def transaction(self, *, durable: bool = False) -> Iterator[sqlite3.Connection]:
        """Run the block in one ``BEGIN IMMEDIATE`` transaction: committed if it
        returns, rolled back (events unannounced) if it raises. A ``durable``
        transaction (one whose commit a client is told of) is on disk when the block's
        ``with`` ends, under the default ``ACKNOWLEDGED`` mode; with group commit, one
        made where :data:`grouped` is set is on disk at the next :meth:`sync`."""
        in_group = durable and self._flush_acknowledged and self.group_commit \
            and grouped.get()
        flush = durable and self._flush_acknowledged and not in_group
        if flush:
            # Set before the transaction (SQLite refuses inside one): this commit is
            # flushed before the caller can answer anybody.
            self.conn.execute("PRAGMA synchronous=FULL")
        try:
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                yield self.conn
            except BaseException:
                self.conn.execute("ROLLBACK")
                self._pending.clear()
                raise
            self.conn.execute("COMMIT")
            if in_group:
                self.committed += 1
        finally:
            if flush:
                self.conn.execute("PRAGMA synchronous=NORMAL")
        pending, self._pending = self._pending, []
        for job_id, seq, state in pending:
            for listener in self._listeners:
                listener(job_id, seq, state)
