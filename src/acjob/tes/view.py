"""TES task documents built from acjob jobs: states, logs and the three views.

Only fields the TES 1.1 schema defines are emitted (strict clients reject others);
what acjob adds goes in a task log's ``metadata``.

The runner's records lie in the task's area, which the task can write: an executor (or
a process it leaves behind) may rewrite them after the runner exits. Nothing in them is
trusted for sizes or counts. A task log holds at most as many executor logs as the
stored task has executors, every field is type-checked and length-bounded, and the
open-ended text (executor stdout and stderr, outputs, system logs) is charged to a
:class:`Budget` per task and one per list response, so that no response grows with
what a task wrote.
"""

from __future__ import annotations

import json
import os
import re
import stat
from pathlib import Path
from typing import Any

from ..model import Attempt, Job, State
from ..spool import Spool
from .model import View
from .runner import LOG_TAIL_BYTES, rfc3339

#: The kind of the store document that holds a job's TES task.
DOCUMENT = "tes"
#: The most of a runner's log the daemon reads (the log stays far smaller).
MAX_LOG_BYTES = 16 << 20
#: The most JSON values (roughly: commas and brackets) a log may hold to be parsed. Parsed,
#: small values cost far more memory than their text (16 MiB of ``{},`` is 390 MB of
#: dicts); the runner's own log stays well below (it lists at most
#: :data:`~acjob.tes.runner.MAX_LISTED_OUTPUTS` outputs).
MAX_LOG_VALUES = 1 << 17
#: The most text, JSON-encoded, that one task document carries from the runner's records.
TASK_BUDGET = 4 << 20
#: The most such text one list response carries, whatever its page size and view.
LIST_BUDGET = 16 << 20
#: The longest string kept from a log field (a path, a URL, a system log line).
MAX_FIELD_CHARS = 8192

_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?(Z|[+-]\d\d:\d\d)")
_OUTPUT_KEYS = ("url", "path", "size_bytes")


def _encoded_size(text: str) -> int:
    """Return the bytes ``text`` takes in a response (FastAPI's JSON, quotes included)."""
    return len(json.dumps(text, ensure_ascii=False).encode())


class Budget:
    """How many more bytes of the runner's records a response may carry.

    Text is counted as it is sent (JSON-encoded, so an escaped control character counts
    six bytes). A task's budget may draw on a response's (``parent``): what the task
    spends, the response spends, and the task never gets more than the response has left.
    """

    def __init__(self, limit: int, parent: Budget | None = None) -> None:
        self._left = limit
        self._parent = parent

    @property
    def left(self) -> int:
        """Bytes that may still be spent (never negative)."""
        own = max(self._left, 0)
        return own if self._parent is None else min(own, self._parent.left)

    def _spend(self, size: int) -> None:
        self._left -= size
        if self._parent is not None:
            self._parent._spend(size)

    def take(self, *texts: str) -> bool:
        """Spend the size of ``texts`` if they all fit; return whether they did."""
        size = sum(_encoded_size(t) for t in texts)
        if size > self.left:
            return False
        self._spend(size)
        return True

    def tail(self, text: str) -> str:
        """Return the longest end of ``text`` found to fit (maybe ``""``), and spend it.

        TES allows an executor's stdout and stderr to be a tail, so cutting the start
        keeps the document valid.
        """
        size, left = _encoded_size(text), self.left
        keep = len(text)
        while keep and size > left:
            # Keep a share of the characters in proportion to what fits (a character
            # takes 1 to 6 bytes): each step keeps fewer, and the excess shrinks.
            keep = min(keep - 1, keep * max(left - 2, 0) // max(size - 2, 1))
            text = text[len(text) - keep:]
            size = _encoded_size(text)
        if text:
            self._spend(size)
        return text


def runner_log(spool: Spool, job: Job, attempt: int) -> dict[str, Any] | None:
    """Return what the runner recorded of one attempt, if it recorded anything.

    A record that is not a JSON object, holds more than :data:`MAX_LOG_VALUES` values
    (not the runner's: parsing it could take hundreds of MB) or nests too deep to parse,
    counts as none.
    """
    text = _read_regular(spool.work_dir(job.id) / "logs" / f"attempt-{attempt}.json",
                         MAX_LOG_BYTES, tail=False)
    if text.count(",") + text.count("{") + text.count("[") > MAX_LOG_VALUES:
        return None
    try:
        data = json.loads(text) if text else None
    except (ValueError, RecursionError):
        return None
    return data if isinstance(data, dict) else None


def _read_regular(path: Path, limit: int, *, tail: bool) -> str:
    """Return (the start, or with ``tail`` the end, of) at most ``limit`` bytes of a
    regular file; "" for anything else. Never blocks on a FIFO, never follows a symbolic
    link at ``path``, never reads more than ``limit`` bytes whatever the file's size."""
    if limit <= 0:
        return ""
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


def _tail(area: Path, name: object, limit: int = LOG_TAIL_BYTES) -> str:
    """Return the last ``limit`` bytes (at most :data:`LOG_TAIL_BYTES`) of an executor's
    output file, if it is a regular file inside the task's area.

    The path comes from the runner's log, which the task itself could rewrite: it is
    never followed outside the area, and a FIFO or device there is never read.
    """
    if not isinstance(name, str) or "\0" in name or len(name) > MAX_FIELD_CHARS:
        return ""
    try:
        path = Path(name).resolve()
    except (OSError, RuntimeError):
        return ""
    if not path.is_relative_to(area.resolve()):
        return ""
    return _read_regular(path, min(limit, LOG_TAIL_BYTES), tail=True)


def _items(log: dict[str, Any], key: str) -> list[Any]:
    """Return ``log[key]`` if it is a list (the log is the task's to spoil)."""
    value = log.get(key)
    return value if isinstance(value, list) else []


def _time(log: dict[str, Any], key: str) -> str | None:
    """Return ``log[key]`` if it is an RFC 3339 time (the runner writes nothing else)."""
    value = log.get(key)
    return value if isinstance(value, str) and len(value) <= 40 and _TIME.fullmatch(value) \
        else None


def _executor_logs(area: Path, log: dict[str, Any], executors: int, full: bool,
                   budget: Budget) -> list[dict[str, Any]]:
    """Return the TES executor logs of one attempt: at most ``executors`` of them.

    The runner records executor ``i`` as entry ``i``, so entries beyond the task's own
    executor count are not the runner's and are never read. With ``full``, stdout and
    stderr are the files' ends, last executor first, as far as ``budget`` goes (then
    empty): the last executor's output is the one a client looks for.
    """
    result: list[tuple[dict[str, Any], dict[str, Any]]] = []
    for entry in _items(log, "executors")[:max(executors, 0)]:
        if not isinstance(entry, dict) or type(entry.get("exit_code")) is not int \
                or not -(1 << 31) <= entry["exit_code"] < 1 << 31:
            continue  # still running (TES requires an exit code), or spoiled
        item: dict[str, Any] = {"exit_code": entry["exit_code"]}
        for key in ("start_time", "end_time"):
            if (value := _time(entry, key)) is not None:
                item[key] = value
        result.append((item, entry))
    if full:
        for item, entry in reversed(result):
            for stream in ("stdout", "stderr"):
                item[stream] = budget.tail(
                    _tail(area, entry.get(f"{stream}_file"), budget.left))
    return [item for item, _ in result]


def _output_logs(log: dict[str, Any], budget: Budget) -> list[dict[str, str]]:
    """Return the outputs the runner copied, as TES ``tesOutputFileLog`` objects, as far
    as ``budget`` goes (entries of the wrong shape are left out)."""
    result: list[dict[str, str]] = []
    for entry in _items(log, "outputs"):
        if not isinstance(entry, dict):
            continue
        url, path, size = (entry.get(k) for k in _OUTPUT_KEYS)
        if not (isinstance(url, str) and isinstance(path, str) and isinstance(size, str)
                and url.startswith("file:///") and path.startswith("/")
                and max(len(url), len(path)) <= MAX_FIELD_CHARS
                and re.fullmatch(r"[0-9]{1,20}", size)):
            continue
        if not budget.take(url, path, size):
            break
        result.append({"url": url, "path": path, "size_bytes": size})
    return result


def _system_logs(log: dict[str, Any], attempt: Attempt, budget: Budget) -> list[str]:
    """Return the attempt's system logs (each cut to :data:`MAX_FIELD_CHARS`), as far as
    ``budget`` goes; the daemon's own reason for the attempt's end comes last, always."""
    result: list[str] = []
    for line in _items(log, "system_logs"):
        if isinstance(line, str):
            if not budget.take(line[:MAX_FIELD_CHARS]):
                break
            result.append(line[:MAX_FIELD_CHARS])
    if attempt.reason:
        result.append(attempt.reason[:MAX_FIELD_CHARS])
    return result


def _attempt_log(spool: Spool, job: Job, attempt: Attempt, executors: int, full: bool,
                 budget: Budget) -> dict[str, Any]:
    """Return the TES task log of one attempt; ``budget`` goes to its system logs first
    (they say why it failed), then its outputs, then its executors' stdout and stderr."""
    area = spool.work_dir(job.id)
    log = runner_log(spool, job, attempt.number) or {}
    system = _system_logs(log, attempt, budget) if full else []
    entry: dict[str, Any] = {
        "logs": [],
        "outputs": _output_logs(log, budget),
        "metadata": {"acjob_job": job.id, "acjob_attempt": str(attempt.number),
                     "backend": job.backend, "native_id": attempt.native_id or ""},
    }
    start = _time(log, "start_time") or (
        rfc3339(attempt.started_at) if attempt.started_at else None)
    end = _time(log, "end_time") or (rfc3339(attempt.ended_at) if attempt.ended_at else None)
    if start:
        entry["start_time"] = start
    if end:
        entry["end_time"] = end
    if full:
        entry["system_logs"] = system
    entry["logs"] = _executor_logs(area, log, executors, full, budget)
    return entry


def task_logs(spool: Spool, job: Job, executors: int, full: bool,
              budget: Budget) -> list[dict[str, Any]]:
    """Return one TES task log per attempt that started, in order.

    Each holds at most ``executors`` executor logs (the stored task's count). The text
    taken from the runner's records is charged to ``budget``, latest attempt first.
    """
    started = [a for a in job.attempts if a.started_at is not None or a.state == "ended"]
    logs = [_attempt_log(spool, job, a, executors, full, budget) for a in reversed(started)]
    return logs[::-1]


def task_document(job: Job, task: dict[str, Any], spool: Spool, view: View,
                  budget: Budget | None = None) -> dict[str, Any]:
    """Return the TES task document of a job in the given view.

    The text it carries from the runner's records is bounded by :data:`TASK_BUDGET`, and
    by what is left of ``budget`` (a list response's), which it spends.
    """
    last = runner_log(spool, job, job.attempt) if job.attempt else None
    minimal = {"id": job.id, "state": task_state(job, last)}
    if view == "MINIMAL":
        return minimal
    document = {**minimal, **task, "creation_time": rfc3339(job.created_at)}
    full = view == "FULL"
    if not full:
        document["inputs"] = [{k: v for k, v in i.items() if k != "content"}
                              for i in document.get("inputs", [])]
    executors = task.get("executors")
    document["logs"] = task_logs(spool, job, len(executors) if isinstance(executors, list)
                                 else 0, full, Budget(TASK_BUDGET, budget))
    return document
