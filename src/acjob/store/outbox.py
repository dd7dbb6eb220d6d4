"""The outbox: a final job's deliveries, committed with its final state, and the
sender's view of them (what is due, what was sent, what failed).
"""

from __future__ import annotations

import secrets
import sqlite3
import time

from ..model import DeliveryRecord, Job, MailDelivery
from .database import Database
from .rows import delivery_from


def enqueue(conn: sqlite3.Connection, job: Job, now: float) -> None:
    """Add the job's deliveries to the outbox, inside the caller's transaction (the one
    that records the job's final state: both are committed, or neither)."""
    conn.executemany(
        "INSERT INTO deliveries (id, job_id, position, kind, target, state, created_at,"
        " next_at) VALUES (?, ?, ?, ?, ?, 'pending', ?, ?)",
        [(secrets.token_hex(16), job.id, i, d.type,
          d.to if isinstance(d, MailDelivery) else d.url, now, now)
         for i, d in enumerate(job.spec.deliveries)],
    )


class Outbox:
    """The deliveries still to be made, and their outcomes."""

    def __init__(self, database: Database) -> None:
        self._database = database
        self._conn = database.conn

    def due(self, now: float, limit: int = 100) -> list[DeliveryRecord]:
        """Return pending deliveries whose time has come, oldest first."""
        rows = self._conn.execute(
            "SELECT * FROM deliveries WHERE state = 'pending' AND next_at <= ?"
            " ORDER BY next_at LIMIT ?", (now, limit))
        return [delivery_from(r) for r in rows]


    def next_at(self) -> float | None:
        """Return when the next pending delivery is due (``None``: nothing pending)."""
        row = self._conn.execute(
            "SELECT min(next_at) FROM deliveries WHERE state = 'pending'").fetchone()
        return None if row[0] is None else float(row[0])


    def done(self, delivery_id: str) -> None:
        """Record a successful delivery."""
        now = time.time()
        with self._database.transaction() as db:
            db.execute("UPDATE deliveries SET state = 'sent', attempts = attempts + 1,"
                       " sent_at = ?, last_error = NULL WHERE id = ?", (now, delivery_id))


    def failed(self, delivery_id: str, error: str, retry_at: float | None) -> None:
        """Record a failed try: to be tried again at ``retry_at``, or failed for good."""
        with self._database.transaction() as db:
            if retry_at is None:
                db.execute("UPDATE deliveries SET state = 'failed', attempts = attempts + 1,"
                           " last_error = ? WHERE id = ?", (error[:1000], delivery_id))
            else:
                db.execute("UPDATE deliveries SET attempts = attempts + 1, next_at = ?,"
                           " last_error = ? WHERE id = ?", (retry_at, error[:1000], delivery_id))


    def pending(self) -> bool:
        """Tell whether any delivery is still to be made."""
        row = self._conn.execute("SELECT 1 FROM deliveries WHERE state = 'pending' LIMIT 1")
        return row.fetchone() is not None
