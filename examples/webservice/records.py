"""The web service's own memory: the ids of the jobs it submitted, and what callbacks
told it. acjob holds everything else (the input, the output, the state), so this file
is all a restart needs.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    created REAL NOT NULL,
    state TEXT,            -- the final state, once a callback (or a poll) told it
    exit_code INTEGER,
    learned_by TEXT        -- 'callback' or 'poll'
);
CREATE TABLE IF NOT EXISTS callbacks (
    delivery_id TEXT PRIMARY KEY,   -- acjob's delivery id: a repeated delivery is dropped
    job_id TEXT NOT NULL,
    received REAL NOT NULL
);
"""


@dataclass(frozen=True)
class Record:
    id: str
    kind: str
    created: float
    state: str | None
    exit_code: int | None
    learned_by: str | None


class Records:
    """A small SQLite file; one short transaction per call, safe from any thread."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        with self._db() as db:
            db.executescript(_SCHEMA)

    @contextlib.contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.path, timeout=30)
        try:
            with db:
                yield db
        finally:
            db.close()

    def add(self, job_id: str, kind: str) -> None:
        """Remember a submitted job (again: no harm)."""
        with self._db() as db:
            db.execute("INSERT OR IGNORE INTO jobs (id, kind, created) VALUES (?, ?, ?)",
                       (job_id, kind, time.time()))

    def get(self, job_id: str) -> Record | None:
        with self._db() as db:
            row = db.execute("SELECT id, kind, created, state, exit_code, learned_by "
                             "FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return Record(*row) if row else None

    def finish(self, job_id: str, state: str, exit_code: int | None, learned_by: str) -> None:
        """Record a job's final state, the first time it is learned."""
        with self._db() as db:
            db.execute("UPDATE jobs SET state = ?, exit_code = ?, learned_by = ? "
                       "WHERE id = ? AND state IS NULL", (state, exit_code, learned_by, job_id))

    def callback(self, delivery_id: str, job_id: str, state: str,
                 exit_code: int | None) -> bool:
        """Count a result's callback and record the final state it brings, in one
        transaction; False if this delivery was counted before (a retry)."""
        with self._db() as db:
            cursor = db.execute("INSERT OR IGNORE INTO callbacks VALUES (?, ?, ?)",
                                (delivery_id, job_id, time.time()))
            db.execute("UPDATE jobs SET state = ?, exit_code = ?, learned_by = 'callback' "
                       "WHERE id = ? AND state IS NULL", (state, exit_code, job_id))
            return cursor.rowcount == 1

    def counts(self) -> dict[str, int]:
        with self._db() as db:
            jobs = db.execute("SELECT count(*) FROM jobs").fetchone()[0]
            callbacks = db.execute("SELECT count(*) FROM callbacks").fetchone()[0]
        return {"jobs": jobs, "callbacks": callbacks}

    def callbacks_for(self, job_id: str) -> int:
        with self._db() as db:
            return int(db.execute("SELECT count(*) FROM callbacks WHERE job_id = ?",
                                  (job_id,)).fetchone()[0])
