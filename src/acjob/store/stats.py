"""What the dashboard charts: jobs by state over time, queue wait and run time.

Computed from what the store keeps anyway (the count of jobs per state, each job's
events, its attempts' start and end times): no table of its own, nothing sampled.
Reads are bounded, so a store of a million jobs answers as fast as a small one.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from ..model import State

#: At most this many events are walked back to rebuild the counts of a window.
MAX_EVENTS = 20_000
#: At most this many recent finished jobs are returned with their times.
MAX_JOBS = 500


def state_history(conn: sqlite3.Connection, now: float, window: float,
                  buckets: int) -> dict[str, Any]:
    """Return the number of jobs in each state at ``buckets + 1`` instants evenly spaced
    over the last ``window`` seconds (the last one is ``now``).

    The counts are walked back from today's (kept as jobs move) through the events of
    the window, newest first: an event that put a job into state S took it out of the
    state of the job's event before it (or, for its first event, brought it into being).
    An event that changed no state (the same state again) changes no count. Only the
    :data:`MAX_EVENTS` newest events are read: instants before the oldest of them are
    left out (``truncated`` says so).
    """
    start = now - window
    step = window / buckets
    times = [start + step * i for i in range(buckets + 1)]
    counts: dict[str, int] = {
        r["state"]: r["n"] for r in conn.execute("SELECT state, n FROM state_counts")
    }
    # Only events that name a job state count (any other kind of event a job may have
    # is no transition), and the one before is the job's previous such event.
    known = ",".join("?" * len(State))
    names = [s.value for s in State]
    rows = conn.execute(
        "SELECT e.at AS at, e.state AS state,"  # noqa: S608 (constant fragments only)
        " (SELECT p.state FROM events AS p WHERE p.job_pos = e.job_pos AND p.seq < e.seq"
        f"  AND p.state IN ({known}) ORDER BY p.seq DESC LIMIT 1) AS prev"
        f" FROM events AS e WHERE e.state IN ({known}) ORDER BY e.seq DESC LIMIT ?",
        (*names, *names, MAX_EVENTS + 1))
    samples: list[dict[str, int]] = [{} for _ in times]
    index = len(times) - 1
    oldest = now
    truncated = False
    for read, row in enumerate(rows, 1):
        if read > MAX_EVENTS:
            truncated = True
            break
        at = row["at"]
        while index >= 0 and at <= times[index]:
            samples[index] = {k: v for k, v in counts.items() if v > 0}
            index -= 1
        if index < 0:
            break
        oldest = at
        counts[row["state"]] = counts.get(row["state"], 0) - 1
        if row["prev"] is not None:
            counts[row["prev"]] = counts.get(row["prev"], 0) + 1
    else:
        oldest = start
    while index >= 0:
        samples[index] = {k: v for k, v in counts.items() if v > 0} if not truncated else {}
        index -= 1
    if truncated:
        # Instants older than the oldest event read are unknown: leave them out.
        keep = [i for i, t in enumerate(times) if t >= oldest]
        times = [times[i] for i in keep]
        samples = [samples[i] for i in keep]
    states = sorted({s for sample in samples for s in sample})
    return {
        "times": times,
        "states": {s: [sample.get(s, 0) for sample in samples] for s in states},
        "truncated": truncated,
    }


def recent_times(conn: sqlite3.Connection, since: float, limit: int) -> list[dict[str, Any]]:
    """Return the jobs that ended since ``since`` (newest first, at most ``limit``), each
    with its queue wait (created until its first attempt started) and its run time (its
    last attempt's start until the job's end); ``None`` where a job never started.

    An attempt's start is when it was seen running, or, for one that ended before it
    was (a job of a few milliseconds), when it was handed to its backend.
    """
    started = ("coalesce((SELECT {agg}(started_at) FROM attempts WHERE attempts.job_id = jobs.id),"
               " (SELECT {agg}(at) FROM events WHERE events.job_pos = jobs.pos"
               "  AND events.state IN ('INITIALIZING', 'RUNNING')))")
    # Built from constant fragments only; every value is a bound parameter.
    rows = conn.execute(
        "SELECT jobs.id AS id, jobs.state AS state, jobs.created_at AS created_at,"  # noqa: S608
        " jobs.ended_at AS ended_at,"
        f" {started.format(agg='min')} AS first, {started.format(agg='max')} AS last"
        " FROM jobs WHERE jobs.ended_at >= ? ORDER BY jobs.ended_at DESC LIMIT ?",
        (since, min(limit, MAX_JOBS)))
    return [{
        "id": r["id"], "state": r["state"], "ended_at": r["ended_at"],
        "wait_s": None if r["first"] is None else max(0.0, r["first"] - r["created_at"]),
        "run_s": None if r["last"] is None else max(0.0, r["ended_at"] - r["last"]),
    } for r in rows]
