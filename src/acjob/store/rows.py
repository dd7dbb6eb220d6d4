"""Rows into the model's records: how the store reads a job, a delivery, an event."""

from __future__ import annotations

import json
import sqlite3

from ..errors import NotFound
from ..model import (
    Attempt,
    AttemptState,
    DeliveryRecord,
    Event,
    FailureKind,
    Job,
    JobSpec,
    State,
)


def load_job(conn: sqlite3.Connection, job_id: str) -> Job:
    """Return the job with its attempts and deliveries.

    Raises:
        NotFound: no such job.
    """
    row = conn.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
    if row is None:
        raise NotFound(f"no job {job_id}", hint="check the id; ac jobs lists the jobs")
    attempts = tuple(
        Attempt(
            job_id=a["job_id"], number=a["number"], native_id=a["native_id"],
            state=AttemptState(a["state"]), exit_code=a["exit_code"],
            failure=FailureKind(a["failure"]) if a["failure"] else None,
            reason=a["reason"], started_at=a["started_at"], ended_at=a["ended_at"],
        )
        for a in conn.execute(
            "SELECT * FROM attempts WHERE job_id = ? ORDER BY number", (job_id,)
        )
    )
    deliveries = tuple(
        delivery_from(d) for d in conn.execute(
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


def delivery_from(row: sqlite3.Row) -> DeliveryRecord:
    """Return a row of the ``deliveries`` table as a record."""
    return DeliveryRecord(
        id=row["id"], job_id=row["job_id"], kind=row["kind"], target=row["target"],
        state=row["state"], attempts=row["attempts"], created_at=row["created_at"],
        next_at=row["next_at"], sent_at=row["sent_at"], last_error=row["last_error"],
    )


def event_from(row: sqlite3.Row) -> Event:
    """Return a row of the ``events`` table as an event."""
    return Event(row["seq"], row["job_id"], row["at"], State(row["state"]), row["attempt"],
                 row["detail"])
