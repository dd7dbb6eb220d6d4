"""Rows into the model's records: how the store reads a job, a delivery, an event; and
rows into a job's JSON form, for pages of a list."""

from __future__ import annotations

import sqlite3
from collections import defaultdict
from collections.abc import Sequence
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
from .specs import spec_of


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

#: The columns of a job's row that make its record, in the order :func:`_job` unpacks
#: them. Read as plain tuples: a row's columns looked up by name cost as much as the
#: rest of the row's way into its record.
_JOB_COLUMNS = ("id, spec, state, backend, created_at, updated_at, seq, attempt, exit_code,"
                " reason, stdin_bytes, stdin_closed, ended_at, purged_at")

#: The columns of an attempt's row, in the order :func:`_attached` unpacks them.
_ATTEMPT_COLUMNS = ("job_id, number, native_id, state, exit_code, failure, reason, started_at,"
                    " ended_at, progress_percent, progress_message, progress_at")


def load_jobs(conn: sqlite3.Connection, job_ids: Sequence[str]) -> list[Job]:
    """Return the jobs with these ids, in this order (missing ones left out), with at
    most three queries per few hundred jobs rather than three per job."""
    return _read(conn, "id", job_ids)


def load_jobs_where(conn: sqlite3.Connection, condition: str,
                    args: Sequence[Any] = ()) -> list[Job]:
    """Return the jobs that meet ``condition``, in the order it says (SQL after
    ``WHERE`` over the jobs table, its ``ORDER BY`` and ``LIMIT`` included, built by the
    caller from constants and placeholders only), with their attempts and deliveries:
    their rows in the query that finds them (not found by id, then read again), and
    at most two queries more per few hundred jobs."""
    cursor = conn.cursor()
    cursor.row_factory = None
    rows = cursor.execute(
        f"SELECT {_JOB_COLUMNS} FROM jobs WHERE {condition}", args).fetchall()  # noqa: S608
    jobs: list[Job] = []
    for start in range(0, len(rows), _PER_QUERY):
        jobs.extend(_jobs(conn, rows[start:start + _PER_QUERY]))
    return jobs


def load_jobs_at(conn: sqlite3.Connection, positions: Sequence[int]) -> list[Job]:
    """Return the jobs at these positions (``jobs.pos``), in this order (missing ones
    left out), as :func:`load_jobs` does."""
    return _read(conn, "pos", positions)


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
          values: Sequence[str] | Sequence[int]) -> list[Job]:
    """Return the jobs whose ``key`` is one of ``values``, in that order (missing ones
    left out), with their attempts and deliveries: at most three queries per few
    hundred jobs."""
    column = 0 if key == "id" else 1
    jobs: list[Job] = []
    for start in range(0, len(values), _PER_QUERY):
        chunk = list(values[start:start + _PER_QUERY])
        cursor = conn.cursor()
        cursor.row_factory = None
        found = {r[column]: r[2:] for r in cursor.execute(
            # Built from a constant column name and placeholders only.
            f"SELECT id, pos, {_JOB_COLUMNS} FROM jobs"  # noqa: S608
            f" WHERE {key} IN ({_marks(chunk)})", chunk)}
        jobs.extend(_jobs(conn, [found[value] for value in chunk if value in found]))
    return jobs


def _jobs(conn: sqlite3.Connection, rows: Sequence[tuple[Any, ...]]) -> list[Job]:
    """Return the jobs of these rows (of :data:`_JOB_COLUMNS`), in their order, with
    their attempts and deliveries (two queries at most)."""
    # Only a job whose spec asks for deliveries has any (the outbox makes them from the
    # spec, which never changes): the others need no query for them.
    delivering = [row[0] for row in rows if spec_of(row[0], row[1]).deliveries]
    attempts, deliveries = _attached(conn, [row[0] for row in rows], delivering)
    return [_job(row, attempts.get(row[0], ()), deliveries.get(row[0], ())) for row in rows]


def _attached(conn: sqlite3.Connection, job_ids: Sequence[str],
              delivering: Sequence[str] | None = None) -> tuple[
        dict[str, tuple[Attempt, ...]], dict[str, tuple[DeliveryRecord, ...]]]:
    """Return the attempts and the deliveries of these jobs, each job's in order; the
    deliveries only of the jobs in ``delivering`` (default: of them all)."""
    if not job_ids:
        return {}, {}
    attempts: dict[str, list[Attempt]] = defaultdict(list)
    deliveries: dict[str, list[DeliveryRecord]] = defaultdict(list)
    cursor = conn.cursor()
    cursor.row_factory = None
    found = cursor.execute(
        # Built from constants and placeholders only.
        f"SELECT {_ATTEMPT_COLUMNS} FROM attempts WHERE job_id IN ({_marks(job_ids)})"  # noqa: S608
        " ORDER BY job_id, number", job_ids)
    for (job_id, number, native_id, state, exit_code, failure, reason, started_at,
         ended_at, percent, message, progress_at) in found:
        attempts[job_id].append(Attempt(
            job_id=job_id, number=number, native_id=native_id, state=AttemptState(state),
            exit_code=exit_code, failure=FailureKind(failure) if failure else None,
            reason=reason, started_at=started_at, ended_at=ended_at,
            progress=None if progress_at is None else Progress(
                percent, message, progress_at, number),
        ))
    delivering = job_ids if delivering is None else delivering
    if delivering:
        for d in conn.execute(
                f"SELECT * FROM deliveries WHERE job_id IN ({_marks(delivering)})"  # noqa: S608
                " ORDER BY job_id, position", delivering):
            deliveries[d["job_id"]].append(delivery_from(d))
    return ({k: tuple(v) for k, v in attempts.items()},
            {k: tuple(v) for k, v in deliveries.items()})


def _job(row: tuple[Any, ...], attempts: tuple[Attempt, ...],
         deliveries: tuple[DeliveryRecord, ...]) -> Job:
    (job_id, spec, state, backend, created_at, updated_at, seq, attempt, exit_code, reason,
     stdin_bytes, stdin_closed, ended_at, purged_at) = row
    return Job(id=job_id, spec=spec_of(job_id, spec), state=State(state), backend=backend,
               created_at=created_at, updated_at=updated_at, seq=seq, attempt=attempt,
               exit_code=exit_code, reason=reason, stdin_bytes=stdin_bytes,
               stdin_closed=bool(stdin_closed), ended_at=ended_at, purged_at=purged_at,
               attempts=attempts, deliveries=deliveries)


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
