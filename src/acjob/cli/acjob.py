"""``acjob``: run a command through the acjob daemon, ssh-like.

``acjob -t pipe "CMD"`` sends its stdin (when it is not a terminal) as it arrives, while
the job already runs and reads it, streams the job's stdout and stderr back byte for
byte, and exits with the job's status. ``acjob -t poll "CMD"`` sends its stdin, then
prints a handle for ``acpoll`` and exits. One argument is a shell string; the words
after ``--`` are an argv no shell sees.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any, NoReturn, TextIO, cast

from ..client import Client, Which
from ..errors import AcjobError, Conflict, InvalidRequest
from ..states import State
from ..version import __version__
from . import options
from .common import (
    EXIT_BROKEN_PIPE,
    EXIT_INTERRUPTED,
    Parser,
    exit_status,
    explain_failure,
    fail,
    print_json,
    report_usage,
    say_waiting,
    write_all,
)
from .progress import ProgressBar, stderr_is_terminal
from .workers import Worker, Workers

_DESCRIPTION = """\
Run COMMAND as a job; its output comes back as a pipe (-t pipe), a handle for acpoll
(-t poll), a mail (-t email ADDRESS) or an HTTP callback (-t webhook URL).

One COMMAND argument is a shell string; after '--', the words are an argv that no
shell sees. acjob exits with the job's status (124: its time limit; 255: acjob failed;
2: a usage error)."""


def _parser() -> argparse.ArgumentParser:
    """Return ``acjob``'s options. The first word that is not an option starts the
    command (``acjob ls -l`` runs ``ls -l``); ``--`` before it makes it an argv."""
    parser = Parser("acjob", "acjob [OPTIONS] COMMAND...", _DESCRIPTION)
    add = parser.add_argument
    add("-V", "--version", action="version", version=f"acjob {__version__}")
    add("-t", "--type", dest="mode", choices=["pipe", "poll", "email", "webhook"],
        default="pipe", metavar="TYPE",
        help="How the output comes back: pipe (the default), poll, email or webhook; "
             "email and webhook take the address or URL as the first argument.")
    add("--mail", dest="mail_to", action="append", default=[], metavar="ADDRESS",
        help="Also mail the result to ADDRESS when the job ends.")
    add("--webhook", dest="webhooks", action="append", default=[], metavar="URL",
        help="Also POST the result to URL when the job ends.")
    add("--backend", metavar="NAME", help="Where the job runs (default: the daemon's).")
    add("--workdir", metavar="DIR",
        help="Run in DIR, e.g. '--workdir .' for this one (default: a fresh, empty "
             "directory per job).")
    add("-e", "--env", action="append", default=[], metavar="NAME[=VALUE]",
        help="Set a variable; NAME alone passes your own value of NAME. (The job starts "
             "with the daemon's environment, not yours.)")
    add("--cpus", type=options.bounded(1, 4096, "cpus"), metavar="N",
        help="CPUs the job needs.")
    add("--memory", dest="memory_mb", type=options.bounded(1, 1 << 30, "MB"), metavar="MB",
        help="Memory (MB).")
    add("--time-limit", dest="time_limit_s", type=options.bounded(1, 10 * 365 * 86400, "s"),
        metavar="SECONDS",
        help="Wall-clock limit (seconds); past it the job is stopped and acjob exits 124.")
    add("--max-attempts", type=options.bounded(1, 100, "attempts"), metavar="N",
        help="Attempts in all when infrastructure fails (default 3).")
    add("--name", metavar="NAME", help="A name for the job (ac jobs --name finds it).")
    add("-l", "--label", action="append", default=[], metavar="KEY=VALUE",
        help="Label the job.")
    add("-n", "--no-stdin", action="store_true", help="Give the job no stdin.")
    add("--cancel-on-interrupt", action="store_true",
        help="Ctrl-C (or SIGTERM, SIGHUP) cancels the job instead of detaching from it.")
    add("--json", dest="as_json", action="store_true",
        help="Print the job as JSON instead of its id (not with -t pipe).")
    add("command", nargs=argparse.REMAINDER, metavar="COMMAND...", help=argparse.SUPPRESS)
    return parser


def _parse(args: Sequence[str]) -> tuple[argparse.Namespace, str | None, bool]:
    """Return the options, the address or URL of ``-t email``/``-t webhook`` (``None``
    for the other types) and whether the command is an argv (``--`` came before it).

    The first word that is not an option is the command's, except after ``-t email``
    or ``-t webhook``, where it is the address: the words after it are read again, so
    that ``acjob -t email ADDRESS -n CMD`` means ``-n``, never a command ``-n CMD``.

    Raises:
        options.UsageError: a mistake on the command line.
    """
    parser = _parser()
    args = list(args)
    given = parser.parse_args(args)
    words: list[str] = given.command
    target = None
    if given.mode in ("email", "webhook"):
        first = 1 if words[:1] == ["--"] else 0
        if len(words) - first >= 2:
            target = words[first]
            del args[len(args) - len(words) + first]
            given = parser.parse_args(args)
            words = given.command
    if not words and target is None and given.mode not in ("email", "webhook"):
        raise options.UsageError("no command given", usage=parser.format_usage(),
                                 hint="acjob 'CMD' (a shell string), or acjob -- PROG ARG…")
    argv = words[:1] == ["--"]
    given.command = words[1:] if argv else words
    return given, target, argv


def cli(args: Sequence[str]) -> int:
    """Run ``acjob`` with the command-line words ``args``; return its exit status.

    Raises:
        options.UsageError: a mistake on the command line, or a job the daemon refused
            as asked.
    """
    given, target, argv_mode = _parse(args)
    mode: str = given.mode
    if given.as_json and mode == "pipe":
        raise options.UsageError("--json prints the job instead of its output: it goes with "
                                 "-t poll, -t email or -t webhook",
                                 hint="acjob -t poll --json CMD")
    deliveries = [options.mail_delivery(a, "--mail") for a in given.mail_to]
    deliveries += [options.webhook_delivery(u, "--webhook") for u in given.webhooks]
    if mode in ("email", "webhook"):
        if target is None:
            raise options.UsageError(
                f"-t {mode} needs the {'address' if mode == 'email' else 'URL'} and then "
                "the command",
                hint=f"acjob -t {mode} {'you@example.org' if mode == 'email' else 'URL'} CMD")
        deliveries.append(options.mail_delivery(target, "-t email") if mode == "email"
                          else options.webhook_delivery(target, "-t webhook"))
    resources = {k: v for k in ("cpus", "memory_mb", "time_limit_s")
                 if (v := getattr(given, k)) is not None}
    spec = {k: v for k, v in {
        "env": options.environment(given.env, os.environ) or None,
        "labels": options.labels(given.label) or None,
        "resources": resources or None,
        "retry": {"max_attempts": given.max_attempts} if given.max_attempts else None,
        "deliveries": deliveries or None,
        "workdir": options.workdir(given.workdir),
        "backend": options.backend(given.backend),
        "name": given.name,
    }.items() if v is not None}
    job_command = options.command(given.command, argv_mode)
    use_stdin = not given.no_stdin and not sys.stdin.isatty()
    try:
        return _run(mode, job_command, spec, use_stdin, given.cancel_on_interrupt,
                    given.as_json)
    except InvalidRequest as exc:
        # The daemon refused the job as asked (a value its model refuses, a backend it
        # does not have, a working directory missing there): the command line must
        # change, as for a usage error.
        raise options.refused(exc) from None
    except AcjobError as exc:
        fail(exc)


def _run(mode: str, command: str | list[str], spec: dict[str, Any], use_stdin: bool,
         cancel_on_interrupt: bool, as_json: bool) -> int:
    with Workers(on_first=_quiet_stderr) as workers, \
            Client(on_wait=say_waiting) as client:
        info = client.create(command, stdin_upload=use_stdin, **spec)
        job_id = info.id
        upload: Worker | None = None
        if use_stdin and not info.data["stdin"]["closed"]:
            # The job may start at once and read its stdin as it arrives. Unbuffered:
            # nothing was read from it, and a pipe goes straight into the job's stdin
            # file where the daemon runs on this machine.
            stdin = open(sys.stdin.fileno(), "rb", buffering=0, closefd=False)  # noqa: SIM115
            upload = workers.start("upload", lambda: client.upload_stdin(job_id, stdin))
        if mode != "pipe":
            if upload is not None:
                if not workers.wait_all([upload]):
                    _cancel_for_stdin(client, job_id, workers)
                upload.outcome()
            if workers.interrupted:
                client.cancel(job_id)
                print(f"\nacjob: interrupted; job {job_id} canceled", file=sys.stderr)
                return _status(EXIT_INTERRUPTED, workers)
            if as_json:
                print_json(client.get(job_id).data)
            else:
                print(job_id, flush=True)
            return 0
        status = _pipe(workers, client, job_id, upload)
        if status is not None:
            return status
        if upload is not None and not upload.done:
            _cancel_for_stdin(client, job_id, workers)
        if cancel_on_interrupt:
            client.cancel(job_id)
            print(f"\nacjob: canceled job {job_id}", file=sys.stderr)
        else:
            print(f"\nacjob: detached; job {job_id} goes on. Pick it up with:\n"
                  f"  acpoll {job_id}", file=sys.stderr)
        return _status(EXIT_INTERRUPTED, workers)


def _cancel_for_stdin(client: Client, job_id: str, workers: Workers) -> NoReturn:
    """Cancel a job interrupted before all of its stdin was sent: it cannot run right."""
    client.cancel(job_id)
    print(f"\nacjob: interrupted while sending stdin; job {job_id} canceled", file=sys.stderr)
    _leave(_status(EXIT_INTERRUPTED, workers))


def _pipe(workers: Workers, client: Client, job_id: str, upload: Worker | None) -> int | None:
    """Stream stdout and stderr until the job is final; return its exit status, or
    ``None`` if a signal interrupted first.

    An upload that fails for good fails the pipe (the job would wait for the rest of its
    stdin forever); one still going when the job ends is left behind, as ssh leaves a
    producer whose command stopped reading. If an attempt fails after output began and a
    retry starts over, the pipe stops with an error rather than mix two attempts' bytes.
    """
    bar = _TerminalBar(job_id)
    streams = [workers.start("stdout", lambda: _copy(client, job_id, "stdout", 1, bar)),
               workers.start("stderr", lambda: _copy(client, job_id, "stderr", 2, bar))]
    if stderr_is_terminal():
        workers.start("notice", lambda: _say_if_waiting(client, job_id))
        workers.start("progress", lambda: bar.follow(client))

    def settled() -> bool:
        failed = any(s.done and s.error is not None for s in streams)
        upload_failed = upload is not None and upload.done and upload.error is not None
        return all(s.done for s in streams) or failed or upload_failed

    try:
        if not workers.wait(settled):
            return None
    finally:
        bar.close()
    try:
        for stream in streams:
            if stream.done:
                stream.outcome()
        if upload is not None and upload.done and not all(s.done for s in streams):
            upload.outcome()
    except BrokenPipeError:
        return EXIT_BROKEN_PIPE
    except Conflict as exc:
        if exc.code != "attempt_retried":
            raise
        fail(exc)
    info = client.get(job_id)
    while not info.is_final:
        info = client.get(job_id, wait=60.0, since=info.seq)
    explain_failure(info)
    return exit_status(info)


def _leave(code: int) -> NoReturn:
    """Exit at once with ``code``, without waiting for worker threads (one may be
    blocked reading stdin, or following a stream that the job's end will close)."""
    with contextlib.suppress(OSError, ValueError):
        sys.stdout.flush()
    with contextlib.suppress(OSError, ValueError):
        sys.stderr.flush()
    os._exit(code)


def _quiet_stderr(signum: int) -> None:
    """After SIGHUP the terminal may be gone: what acjob still says (the acpoll line)
    must not fail on it."""
    sys.stderr = cast(TextIO, _Quiet(sys.stderr))


def _status(code: int, workers: Workers) -> int:
    """Return the exit status: an interruption by signal N exits 128+N (130 for
    Ctrl-C, 143 for SIGTERM, 129 for SIGHUP), as a shell reports a killed command."""
    if code == EXIT_INTERRUPTED and workers.caught:
        return 128 + workers.caught[0]
    return code


class _Quiet:
    """A text stream that drops what it cannot write (a terminal closed under it)."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        """Write ``text`` if the stream still takes it; never raise ``OSError``."""
        with contextlib.suppress(OSError):
            return self._stream.write(text)
        return len(text)

    def flush(self) -> None:
        """Flush if the stream can be flushed; never raise ``OSError``."""
        with contextlib.suppress(OSError):
            self._stream.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


#: How long a job may take to start before acjob says, on a terminal, that it waits.
QUIET_START_S = 1.0


def _say_if_waiting(client: Client, job_id: str) -> None:
    """Say once on stderr, if it is a terminal, that the job has not started after
    :data:`QUIET_START_S`: queued for room on its backend, or pending in a scheduler.
    A pipe that prints nothing for minutes would look hung. A notice never fails the
    pipe: whatever goes wrong here, the streams meet too and say it."""
    with contextlib.suppress(AcjobError, OSError):
        deadline = time.monotonic() + QUIET_START_S
        info = client.get(job_id)
        while info.state in _NOT_STARTED and (left := deadline - time.monotonic()) > 0:
            info = client.get(job_id, wait=left, since=info.seq)
        backend = info.data.get("backend", "its backend")
        if info.state is State.QUEUED:
            print(f"acjob: job {job_id} is queued: waiting for room on {backend} "
                  "(Ctrl-C detaches)", file=sys.stderr)
        elif info.state is State.INITIALIZING:
            print(f"acjob: job {job_id} is submitted to {backend}, waiting for it to start "
                  "(Ctrl-C detaches)", file=sys.stderr)


_NOT_STARTED = (State.QUEUED, State.INITIALIZING)


def _copy(client: Client, job_id: str, which: Which, fd: int, bar: _TerminalBar) -> None:
    terminal = os.isatty(fd)
    for chunk in client.stream(job_id, which):
        if terminal:
            bar.close()
        write_all(fd, chunk)


class _TerminalBar:
    """The job's progress bar on stderr while the pipe waits, if stderr is a terminal.

    It appears with the job's first progress report and goes for good when the job's
    output first reaches the terminal: the job's bytes are written as they come, and a
    bar drawn among them would garble both.
    """

    def __init__(self, job_id: str) -> None:
        self._job_id = job_id
        self._lock = threading.Lock()
        self._bar: ProgressBar | None = None
        self._closed = False
        self._started = time.time()

    def follow(self, client: Client) -> None:
        """Show the job's progress until it ends or :meth:`close` is called."""
        with contextlib.suppress(AcjobError, OSError):
            for progress in client.progress(self._job_id):
                with self._lock:
                    if self._closed:
                        return
                    if self._bar is None:
                        self._bar = ProgressBar(label=self._job_id, started_at=self._started)
                        self._bar.__enter__()
                    if self._bar is not None:
                        self._bar.update(progress.percent, progress.message)

    def close(self) -> None:
        """Remove the bar, and draw none from now on (idempotent)."""
        with self._lock:
            self._closed = True
            bar, self._bar = self._bar, None
        if bar is not None:
            bar.close()


def main() -> None:
    """Entry point of the ``acjob`` command.

    A usage error is said as ``Error: …`` then ``Try: …`` (the usage line first when
    the mistake is in the options) and exits 2; Ctrl-C before the job is sent exits 130.
    """
    try:
        code = cli(sys.argv[1:])
    except options.UsageError as exc:
        report_usage(exc, "acjob")
    except KeyboardInterrupt:
        sys.exit(EXIT_INTERRUPTED)
    _leave(code)
