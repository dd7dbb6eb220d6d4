"""``acpoll``: wait for jobs started with ``acjob -t poll`` and write their output.

Handles come as arguments, or one or more per line on stdin (or jobs as JSON, one
per line, as ``acjob -t poll --json`` prints them). For each job in turn acpoll
waits (one question to the daemon is held open at most ``-i`` seconds; it answers at
once when the job ends), then writes the job's stdout to stdout and its stderr to
stderr, byte for byte. It exits with the first non-zero job status, else 0.

While it waits, and only when stderr is a terminal, a progress bar with the job's
message is drawn on stderr (and removed before any output is written); it follows
the job's event stream instead of long-polls.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from typing import NoReturn

from ..client import Client, JobInfo
from ..errors import AcjobError
from ..ids import check_job_id
from ..states import FailureKind, State
from ..version import __version__
from . import options
from .common import (
    EXIT_ACJOB_ERROR,
    EXIT_BROKEN_PIPE,
    EXIT_CANCELED,
    EXIT_INTERRUPTED,
    EXIT_TIMEOUT,
    EXIT_USAGE,
    Parser,
    exit_status,
    explain_failure,
    fail,
    report_usage,
    say_waiting,
    write_all,
)
from .progress import ProgressBar, stderr_is_terminal

_DESCRIPTION = """\
Wait for each job HANDLE (or the handles read from stdin) and write its output.

Stdin holds handles (acjob -t poll), or jobs as JSON (acjob -t poll --json, ac jobs
--json, ac show --json)."""


def _parser() -> argparse.ArgumentParser:
    """Return ``acpoll``'s options."""
    parser = Parser("acpoll", "acpoll [OPTIONS] [HANDLE...]", _DESCRIPTION)
    add = parser.add_argument
    add("-V", "--version", action="version", version=f"acpoll {__version__}")
    add("-i", "--interval", type=options.seconds(0.1, 600), default=60.0, metavar="SECONDS",
        help="The longest one question to the daemon is held open, in seconds (it answers "
             "as soon as the job ends, so acpoll never waits longer for it; default 60).")
    add("--stderr", dest="with_stderr", action=argparse.BooleanOptionalAction, default=True,
        help="Also write the jobs' stderr (on stderr; the default), or not.")
    add("--from-mail", action="store_true",
        help="Read a saved acjob result message on stdin and write the job's stdout.")
    add("handles", nargs="*", metavar="HANDLE", help=argparse.SUPPRESS)
    return parser


def cli(args: Sequence[str]) -> NoReturn:
    """Run ``acpoll`` with the command-line words ``args``; exit with the first
    non-zero job status, else 0.

    Raises:
        options.UsageError: a mistake on the command line.
    """
    parsed = _parser().parse_args(list(args))
    interval: float = parsed.interval
    with_stderr: bool = parsed.with_stderr
    from_mail: bool = parsed.from_mail
    handles: tuple[str, ...] = tuple(parsed.handles)
    if from_mail:
        handles = _from_mail()
    # On a terminal, reading stdin would wait silently for a user who gave no handle.
    given = handles or sys.stdin.isatty()
    words = list(handles) if given else _read_handles(sys.stdin.read())
    if not words:
        fail(AcjobError("no job handle given",
                        hint="acjob -t poll CMD | acpoll, or acpoll HANDLE"), code=EXIT_USAGE)
    try:
        ids = [check_job_id(w) for w in words]
        status = 0
        with Client(on_wait=say_waiting) as client:
            for job_id in ids:
                info = _wait(client, job_id, interval, label=job_id if len(ids) > 1 else None)
                try:
                    if info.attempt:
                        for chunk in client.stream(job_id, "stdout", follow=False,
                                                   attempt=info.attempt):
                            write_all(1, chunk)
                        if with_stderr:
                            for chunk in client.stream(job_id, "stderr", follow=False,
                                                       attempt=info.attempt):
                                write_all(2, chunk)
                except BrokenPipeError:
                    sys.exit(EXIT_BROKEN_PIPE)
                explain_failure(info)
                status = status or exit_status(info)
    except AcjobError as exc:
        fail(exc)
    except KeyboardInterrupt:
        sys.exit(EXIT_INTERRUPTED)
    sys.exit(status)


def _wait(client: Client, job_id: str, interval: float, label: str | None) -> JobInfo:
    """Wait until the job is final; on a terminal, with a progress bar on stderr."""
    if not stderr_is_terminal():
        return client.wait(job_id, poll=interval)
    info = client.get(job_id)
    if info.is_final:
        return info
    with ProgressBar(label=label, started_at=_started(info)) as bar:
        attempt = info.attempt
        if (progress := info.progress) is not None:
            bar.update(progress.percent, progress.message)
        for progress in client.progress(job_id):
            started = None
            if progress.attempt is not None and progress.attempt != attempt:
                # A new attempt: its own time is what the remaining time scales.
                attempt, started = progress.attempt, _started(client.get(job_id))
            bar.update(progress.percent, progress.message, started_at=started)
    return client.wait(job_id, poll=interval)


def _started(info: JobInfo) -> float:
    """When the job's current attempt started running (else when the job was made)."""
    attempts = info.data.get("attempts") or []
    started = attempts[-1].get("started_at") if attempts else None
    if isinstance(started, int | float):
        return float(started)
    created = info.data.get("created_at")
    return float(created) if isinstance(created, int | float) else time.time()


def _read_handles(text: str) -> list[str]:
    """Return the handles in ``text``: words, or on a line that starts with ``{`` or
    ``[``, the ids of the JSON job (or list of jobs) it holds."""
    handles: list[str] = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.lstrip().startswith(("{", "[")):
            handles += line.split()
            continue
        try:
            data = json.loads(line)
            jobs = data if isinstance(data, list) else [data]
            handles += [str(job["id"]) for job in jobs]
        except (ValueError, TypeError, KeyError):
            fail(AcjobError(f"line {number} of stdin is neither handles nor a job as JSON",
                            hint="acjob -t poll CMD | acpoll, or acjob -t poll --json CMD | "
                                 "acpoll"), code=EXIT_USAGE)
    return handles


def _from_mail() -> tuple[str, ...]:
    """Write the stdout carried by the message on stdin and exit with the job's status;
    if the message does not carry it (too large to mail), return the job's handle to
    fetch it from the daemon instead."""
    # Only here: the mail module loads the daemon's side (schemas, asyncio).
    from ..delivery.mail import extract_stdout

    try:
        saved = extract_stdout(sys.stdin.buffer)
    except AcjobError as exc:
        fail(exc)
    if saved.stdout is None:
        return (saved.job_id,) if saved.job_id else ()
    try:
        write_all(1, saved.stdout)
    except BrokenPipeError:
        sys.exit(EXIT_BROKEN_PIPE)
    if saved.state == State.COMPLETE.value:
        sys.exit(0)
    if saved.state == State.EXECUTOR_ERROR.value and saved.exit_status is not None:
        sys.exit(saved.exit_status)
    if saved.failure == FailureKind.TIMEOUT.value:
        print(f"acjob: job {saved.job_id} timed out", file=sys.stderr)
        sys.exit(EXIT_TIMEOUT)
    print(f"acjob: job {saved.job_id} {saved.state}", file=sys.stderr)
    sys.exit(EXIT_CANCELED if saved.state == State.CANCELED.value else EXIT_ACJOB_ERROR)


def main() -> None:
    """Entry point of the ``acpoll`` command: a usage error is said as ``Error: …`` then
    ``Try: …`` and exits 2; Ctrl-C exits 130."""
    try:
        cli(sys.argv[1:])
    except options.UsageError as exc:
        report_usage(exc, "acpoll")
    except KeyboardInterrupt:
        sys.exit(EXIT_INTERRUPTED)
