"""Rows into the model's records: how the store reads a job, a delivery, an event."""

from __future__ import annotations

import sqlite3
from collections import defaultdict
from collections.abc import Sequence

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
from ..progress import Progress


def load_job(conn: sqlite3.Connection, job_id: str) -> Job:
    """Return the job with its attempts and deliveries.

    Raises:
        NotFound: no such job.
    """
    found = load_jobs(conn, [job_id])
    if not found:
        raise NotFound(f"no job {job_id}", hint="check the id; ac jobs lists the jobs")
    return found[0]


#: Ids per query (SQLite allows 32766 variables; a page holds at most 1000 jobs).
_PER_QUERY = 500


def load_jobs(conn: sqlite3.Connection, job_ids: Sequence[str]) -> list[Job]:
    """Return the jobs with these ids, in this order (missing ones left out), with three
    queries per few hundred jobs rather than three per job."""
    jobs: list[Job] = []
    for start in range(0, len(job_ids), _PER_QUERY):
        chunk = list(job_ids[start:start + _PER_QUERY])
        marks = ",".join("?" * len(chunk))
        # Built from placeholders only.
        rows = {r["id"]: r for r in conn.execute(
            f"SELECT * FROM jobs WHERE id IN ({marks})", chunk)}  # noqa: S608
        attempts: dict[str, list[Attempt]] = defaultdict(list)
        for a in conn.execute(f"SELECT * FROM attempts WHERE job_id IN ({marks})"  # noqa: S608
                              " ORDER BY job_id, number", chunk):
            attempts[a["job_id"]].append(Attempt(
                job_id=a["job_id"], number=a["number"], native_id=a["native_id"],
                state=AttemptState(a["state"]), exit_code=a["exit_code"],
                failure=FailureKind(a["failure"]) if a["failure"] else None,
                reason=a["reason"], started_at=a["started_at"], ended_at=a["ended_at"],
                progress=None if a["progress_at"] is None else Progress(
                    a["progress_percent"], a["progress_message"], a["progress_at"],
                    a["number"]),
            ))
        deliveries: dict[str, list[DeliveryRecord]] = defaultdict(list)
        for d in conn.execute(f"SELECT * FROM deliveries WHERE job_id IN ({marks})"  # noqa: S608
                              " ORDER BY job_id, position", chunk):
            deliveries[d["job_id"]].append(delivery_from(d))
        for job_id in chunk:
            row = rows.get(job_id)
            if row is not None:
                jobs.append(_job(row, tuple(attempts[job_id]), tuple(deliveries[job_id])))
    return jobs


def _job(row: sqlite3.Row, attempts: tuple[Attempt, ...],
         deliveries: tuple[DeliveryRecord, ...]) -> Job:
    return Job(
        id=row["id"],
        spec=JobSpec.model_validate_json(row["spec"]),
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
