"""TES task documents built from acjob jobs: states, logs and the three views.

Only fields the TES 1.1 schema defines are emitted (strict clients reject others);
what acjob adds goes in a task log's ``metadata``.
"""

from __future__ import annotations

import json
import os
import stat
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
    text = _read_regular(spool.work_dir(job.id) / "logs" / f"attempt-{attempt}.json",
                         MAX_LOG_BYTES, tail=False)
    try:
        data = json.loads(text) if text else None
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


#: The most of a runner's log the daemon reads (the log stays far smaller).
MAX_LOG_BYTES = 16 << 20


def _read_regular(path: Path, limit: int, *, tail: bool) -> str:
    """Return (the start, or with ``tail`` the end, of) a regular file; "" for anything
    else. Never blocks on a FIFO, never follows a symbolic link at ``path``."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW)
    except (OSError, ValueError):
        return ""
    with os.fdopen(fd, "rb") as file:
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                return ""
            if tail:
                file.seek(max(0, file.seek(0, 2) - limit))
            return file.read(limit).decode(errors="replace")
        except OSError:
            return ""


def task_state(job: Job, last_log: dict[str, Any] | None) -> str:
    """Return the TES state: acjob's own names, except that a runner failure (inputs,
    outputs) is a SYSTEM_ERROR although the job's command exited non-zero."""
    if job.state is State.EXECUTOR_ERROR and last_log and last_log.get("system_error"):
        return State.SYSTEM_ERROR.value
    return job.state.value


def _tail(area: Path, name: object) -> str:
    """Return the end of an executor's output file, if it is a regular file inside the
    task's area.

    The path comes from the runner's log, which the task itself could rewrite: it is
    never followed outside the area, and a FIFO or device there is never read.
    """
    if not isinstance(name, str) or "\0" in name:
        return ""
    try:
        path = Path(name).resolve()
    except (OSError, RuntimeError):
        return ""
    if not path.is_relative_to(area.resolve()):
        return ""
    return _read_regular(path, LOG_TAIL_BYTES, tail=True)


def _items(log: dict[str, Any], key: str) -> list[Any]:
    """Return ``log[key]`` if it is a list (the log is the task's to spoil)."""
    value = log.get(key)
    return value if isinstance(value, list) else []


def _text(log: dict[str, Any], key: str) -> str | None:
    value = log.get(key)
    return value if isinstance(value, str) else None


def _executor_logs(area: Path, log: dict[str, Any], full: bool) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = []
    for entry in _items(log, "executors"):
        if not isinstance(entry, dict) or type(entry.get("exit_code")) is not int \
                or not -(1 << 31) <= entry["exit_code"] < 1 << 31:
            continue  # still running (TES requires an exit code), or spoiled
        item: dict[str, Any] = {"exit_code": entry["exit_code"]}
        for key in ("start_time", "end_time"):
            if (value := _text(entry, key)) is not None:
                item[key] = value
        if full:
            item["stdout"] = _tail(area, entry.get("stdout_file"))
            item["stderr"] = _tail(area, entry.get("stderr_file"))
        result.append(item)
    return result


def _output_logs(log: dict[str, Any]) -> list[dict[str, str]]:
    """Return the outputs the runner copied, as TES ``tesOutputFileLog`` objects."""
    result: list[dict[str, str]] = []
    for entry in _items(log, "outputs"):
        if isinstance(entry, dict) and all(isinstance(entry.get(k), str) for k in _OUTPUT_KEYS):
            result.append({k: entry[k] for k in _OUTPUT_KEYS})
    return result


_OUTPUT_KEYS = ("url", "path", "size_bytes")


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
            "outputs": _output_logs(log),
            "metadata": {"acjob_job": job.id, "acjob_attempt": str(attempt.number),
                         "backend": job.backend, "native_id": attempt.native_id or ""},
        }
        start = _text(log, "start_time") or (
            rfc3339(attempt.started_at) if attempt.started_at else None)
        end = _text(log, "end_time") or (
            rfc3339(attempt.ended_at) if attempt.ended_at else None)
        if start:
            entry["start_time"] = start
        if end:
            entry["end_time"] = end
        if full:
            system = [s for s in _items(log, "system_logs") if isinstance(s, str)]
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
