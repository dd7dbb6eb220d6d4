"""Rows into the model's records: how the store reads a job, a delivery, an event; and
rows into a job's JSON form, for pages of a list."""

from __future__ import annotations

import sqlite3
from collections import defaultdict
from collections.abc import Iterator, Sequence
from typing import Any, Literal

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
from ..wire import job_form, spec_form, spec_forms_from_json


def load_job(conn: sqlite3.Connection, job_id: str) -> Job:
    """Return the job with its attempts and deliveries.

    Raises:
        NotFound: no such job.
    """
    found = load_jobs(conn, [job_id])
    if not found:
        raise NotFound(f"no job {job_id}", hint="check the id; ac jobs lists the jobs")
    return found[0]


#: Jobs per query (SQLite allows 32766 variables; a page holds at most 1000 jobs).
_PER_QUERY = 500

#: What a job read from the store is made of: its row, its attempts and its deliveries.
_Read = tuple[sqlite3.Row, tuple[Attempt, ...], tuple[DeliveryRecord, ...]]


def load_jobs(conn: sqlite3.Connection, job_ids: Sequence[str]) -> list[Job]:
    """Return the jobs with these ids, in this order (missing ones left out), with three
    queries per few hundred jobs rather than three per job."""
    return [_job(*read) for read in _read(conn, "id", job_ids)]


def load_jobs_at(conn: sqlite3.Connection, positions: Sequence[int]) -> list[Job]:
    """Return the jobs at these positions (``jobs.pos``), in this order (missing ones
    left out), as :func:`load_jobs` does."""
    return [_job(*read) for read in _read(conn, "pos", positions)]


def load_job_forms_at(conn: sqlite3.Connection,
                      positions: Sequence[int]) -> list[dict[str, Any]]:
    """Return the JSON forms (:func:`acjob.wire.job_json`) of the jobs at these positions,
    in this order (missing ones left out), made from their rows without the model in
    between: the specs are read from their stored JSON text (see
    :func:`acjob.wire.spec_forms_from_json`), and through the model only where that
    text is not the model's current form."""
    forms = []
    for start in range(0, len(positions), _PER_QUERY):
        chunk = list(positions[start:start + _PER_QUERY])
        # Plain tuples: a row's columns looked up by name cost as much as the rest of
        # the row's way into its form.
        cursor = conn.cursor()
        cursor.row_factory = None
        found = {r[0]: r for r in cursor.execute(
            # Built from placeholders only.
            f"SELECT {_FORM_COLUMNS} FROM jobs WHERE pos IN ({_marks(chunk)})",  # noqa: S608
            chunk)}
        rows = [found[p] for p in chunk if p in found]
        attempts, deliveries = _attached(conn, [r[1] for r in rows])
        specs = spec_forms_from_json([r[2] for r in rows])
        for (_, job_id, text, state, backend, attempt, exit_code, reason, stdin_closed,
             stdin_bytes, created_at, updated_at, ended_at, purged_at, seq), spec in zip(
                rows, specs, strict=True):
            forms.append(job_form(
                job_id=job_id, state=State(state), backend=backend,
                spec=spec_form(JobSpec.model_validate_json(text)) if spec is None else spec,
                attempt=attempt, exit_code=exit_code, reason=reason,
                stdin_closed=bool(stdin_closed), stdin_bytes=stdin_bytes,
                created_at=created_at, updated_at=updated_at, ended_at=ended_at,
                purged_at=purged_at, seq=seq, attempts=attempts.get(job_id, ()),
                deliveries=deliveries.get(job_id, ()),
            ))
    return forms


#: The columns :func:`load_job_forms_at` reads, in the order it unpacks them.
_FORM_COLUMNS = ("pos, id, spec, state, backend, attempt, exit_code, reason, stdin_closed,"
                 " stdin_bytes, created_at, updated_at, ended_at, purged_at, seq")


def _marks(values: Sequence[object]) -> str:
    return ",".join("?" * len(values))


def _read(conn: sqlite3.Connection, key: Literal["id", "pos"],
          values: Sequence[str] | Sequence[int]) -> Iterator[_Read]:
    """Yield the jobs whose ``key`` is one of ``values``, in that order (missing ones
    left out), with their attempts and deliveries: three queries per few hundred jobs."""
    for start in range(0, len(values), _PER_QUERY):
        chunk = list(values[start:start + _PER_QUERY])
        rows = {r[key]: r for r in conn.execute(
            # Built from a constant column name and placeholders only.
            f"SELECT * FROM jobs WHERE {key} IN ({_marks(chunk)})", chunk)}  # noqa: S608
        attempts, deliveries = _attached(conn, [r["id"] for r in rows.values()])
        for value in chunk:
            row = rows.get(value)
            if row is not None:
                job_id = row["id"]
                yield row, attempts.get(job_id, ()), deliveries.get(job_id, ())


def _attached(conn: sqlite3.Connection, job_ids: Sequence[str]) -> tuple[
        dict[str, tuple[Attempt, ...]], dict[str, tuple[DeliveryRecord, ...]]]:
    """Return the attempts and the deliveries of these jobs, each job's in order."""
    if not job_ids:
        return {}, {}
    attempts: dict[str, list[Attempt]] = defaultdict(list)
    deliveries: dict[str, list[DeliveryRecord]] = defaultdict(list)
    marks = _marks(job_ids)
    for a in conn.execute(f"SELECT * FROM attempts WHERE job_id IN ({marks})"  # noqa: S608
                          " ORDER BY job_id, number", job_ids):
        attempts[a["job_id"]].append(Attempt(
            job_id=a["job_id"], number=a["number"], native_id=a["native_id"],
            state=AttemptState(a["state"]), exit_code=a["exit_code"],
            failure=FailureKind(a["failure"]) if a["failure"] else None,
            reason=a["reason"], started_at=a["started_at"], ended_at=a["ended_at"],
            progress=None if a["progress_at"] is None else Progress(
                a["progress_percent"], a["progress_message"], a["progress_at"],
                a["number"]),
        ))
    for d in conn.execute(f"SELECT * FROM deliveries WHERE job_id IN ({marks})"  # noqa: S608
                          " ORDER BY job_id, position", job_ids):
        deliveries[d["job_id"]].append(delivery_from(d))
    return ({k: tuple(v) for k, v in attempts.items()},
            {k: tuple(v) for k, v in deliveries.items()})


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
