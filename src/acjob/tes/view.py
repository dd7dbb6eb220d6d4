"""TES task documents built from acjob jobs: states, logs and the three views.

Only fields the TES 1.1 schema defines are emitted (strict clients reject others);
what acjob adds goes in a task log's ``metadata``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..model import Job, State
from ..spool import Spool
from .model import View
from .runner import LOG_TAIL_BYTES, rfc3339

#: The kind of the store document that holds a job's TES task.
DOCUMENT = "tes"


def runner_log(spool: Spool, job: Job, attempt: int) -> dict[str, Any] | None:
    """Return what the runner recorded of one attempt, if it recorded anything."""
    path = spool.work_dir(job.id) / "logs" / f"attempt-{attempt}.json"
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def task_state(job: Job, last_log: dict[str, Any] | None) -> str:
    """Return the TES state: acjob's own names, except that a runner failure (inputs,
    outputs) is a SYSTEM_ERROR although the job's command exited non-zero."""
    if job.state is State.EXECUTOR_ERROR and last_log and last_log.get("system_error"):
        return State.SYSTEM_ERROR.value
    return job.state.value


def _tail(area: Path, name: object) -> str:
    """Return the end of an executor's output file, if it lies inside the task's area.

    The path comes from the runner's log, which the task itself could rewrite: it is
    never followed outside the area.
    """
    if not isinstance(name, str):
        return ""
    try:
        path = Path(name).resolve()
        if not path.is_relative_to(area.resolve()):
            return ""
        with path.open("rb") as file:
            size = file.seek(0, 2)
            file.seek(max(0, size - LOG_TAIL_BYTES))
            return file.read().decode(errors="replace")
    except OSError:
        return ""


def _executor_logs(area: Path, log: dict[str, Any], full: bool) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = []
    for entry in log.get("executors", []):
        if not isinstance(entry, dict) or not isinstance(entry.get("exit_code"), int):
            continue  # still running: TES requires an exit code
        item: dict[str, Any] = {"exit_code": entry["exit_code"]}
        for key in ("start_time", "end_time"):
            if isinstance(entry.get(key), str):
                item[key] = entry[key]
        if full:
            item["stdout"] = _tail(area, entry.get("stdout_file"))
            item["stderr"] = _tail(area, entry.get("stderr_file"))
        result.append(item)
    return result


def task_logs(spool: Spool, job: Job, full: bool) -> list[dict[str, Any]]:
    """Return one TES task log per attempt that started."""
    area = spool.work_dir(job.id)
    logs: list[dict[str, Any]] = []
    for attempt in job.attempts:
        if attempt.started_at is None and attempt.state != "ended":
            continue
        log = runner_log(spool, job, attempt.number) or {}
        entry: dict[str, Any] = {
            "logs": _executor_logs(area, log, full),
            "outputs": [o for o in log.get("outputs", []) if isinstance(o, dict)],
            "metadata": {"acjob_job": job.id, "acjob_attempt": str(attempt.number),
                         "backend": job.backend, "native_id": attempt.native_id or ""},
        }
        start = log.get("start_time") or (
            rfc3339(attempt.started_at) if attempt.started_at else None)
        end = log.get("end_time") or (rfc3339(attempt.ended_at) if attempt.ended_at else None)
        if start:
            entry["start_time"] = start
        if end:
            entry["end_time"] = end
        if full:
            system = [s for s in log.get("system_logs", []) if isinstance(s, str)]
            if attempt.reason:
                system.append(attempt.reason)
            entry["system_logs"] = system
        logs.append(entry)
    return logs


def task_document(job: Job, task: dict[str, Any], spool: Spool, view: View) -> dict[str, Any]:
    """Return the TES task document of a job in the given view."""
    last = runner_log(spool, job, job.attempt) if job.attempt else None
    minimal = {"id": job.id, "state": task_state(job, last)}
    if view == "MINIMAL":
        return minimal
    document = {**minimal, **task, "creation_time": rfc3339(job.created_at)}
    full = view == "FULL"
    if not full:
        document["inputs"] = [{k: v for k, v in i.items() if k != "content"}
                              for i in document.get("inputs", [])]
    document["logs"] = task_logs(spool, job, full)
    return document
