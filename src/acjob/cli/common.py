"""What the three tools share: error reporting, exit statuses, writing output, and the
command-line parser of the two that start on every run of a pipeline."""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

from ..client import JobInfo
from ..errors import AcjobError
from ..states import FailureKind, State
from .options import UsageError

if TYPE_CHECKING:
    import click

#: acjob's own failure (daemon unreachable, job SYSTEM_ERROR), as ssh uses 255.
EXIT_ACJOB_ERROR = 255
#: A job canceled (as if killed by SIGTERM).
EXIT_CANCELED = 143
#: A job stopped at its time limit, as timeout(1) says it.
EXIT_TIMEOUT = 124
#: Interrupted by Ctrl-C.
EXIT_INTERRUPTED = 130
#: Our stdout was closed by the reader (as if killed by SIGPIPE).
EXIT_BROKEN_PIPE = 141
#: A mistake on the command line (the status argparse and click give usage errors).
EXIT_USAGE = 2

F = TypeVar("F", bound=Callable[..., Any])


def fail(error: AcjobError | str, code: int = EXIT_ACJOB_ERROR) -> NoReturn:
    """Print ``Error: …`` (and ``Try: …``) on stderr and exit with ``code``."""
    if isinstance(error, AcjobError):
        message, hint = error.message, error.hint
    else:
        message, hint = error, None
    print(f"Error: {message}", file=sys.stderr)
    if hint:
        print(f"Try: {hint}", file=sys.stderr)
    sys.exit(code)


class Parser(argparse.ArgumentParser):
    """argparse for ``acjob`` and ``acpoll`` (click takes a tenth of their start): no
    abbreviated options, help as wide as the terminal, and every mistake raised as a
    :class:`~acjob.cli.options.UsageError` (said by :func:`report_usage`)."""

    def __init__(self, prog: str, usage: str, description: str) -> None:
        super().__init__(prog=prog, usage=usage, description=description, allow_abbrev=False,
                         formatter_class=_Formatter)

    def error(self, message: str) -> NoReturn:
        """Raise the mistake, in words closer to the user's (never exits here)."""
        unknown = message.removeprefix("unrecognized arguments: ")
        if unknown != message:
            message = f"no such option: {unknown.split()[0]}"
        raise UsageError(message.removeprefix("argument "), usage=self.format_usage())


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """argparse's help, as wide as the terminal, found once and without loading
    :mod:`shutil` (argparse makes a formatter for every option it is given: on every
    run)."""

    def __init__(self, prog: str) -> None:
        super().__init__(prog, width=_help_width())


@functools.cache
def _help_width() -> int:
    try:
        columns = int(os.environ.get("COLUMNS", "")) or os.get_terminal_size(2).columns
    except (ValueError, OSError):
        columns = 80
    return max(columns, 40) - 2


def report_usage(error: UsageError, prog: str) -> NoReturn:
    """Say a usage error as ``Error: …`` then ``Try: …`` (the usage line first when the
    mistake is in the options' shape) and exit with :data:`EXIT_USAGE`."""
    if error.usage:
        print(error.usage, end="", file=sys.stderr)
    print(f"Error: {error.message}", file=sys.stderr)
    print(f"Try: {error.hint or f'{prog} --help'}", file=sys.stderr)
    sys.exit(EXIT_USAGE)


def run_tool(command: click.Command, prog_name: str) -> NoReturn:
    """Run a tool's click command; say a usage error as ``Error: …`` / ``Try: …``.

    A usage error (an unknown option, a bad value, a missing argument, a
    :class:`~acjob.cli.options.UsageError`) exits with :data:`EXIT_USAGE`; its ``Try:``
    line is the error's own hint, else the command's ``--help``. Click's own usage
    errors print the usage line first. Ctrl-C before the tool's own handling exits 130.
    """
    import click  # ac only: acjob and acpoll parse with argparse, which loads sooner

    try:
        result = command.main(prog_name=prog_name, standalone_mode=False)
    except UsageError as exc:
        report_usage(exc, prog_name)
    except click.UsageError as exc:
        path = exc.ctx.command_path if exc.ctx is not None else prog_name
        if exc.ctx is not None:
            print(exc.ctx.get_usage(), file=sys.stderr)
        print(f"Error: {exc.format_message()}", file=sys.stderr)
        print(f"Try: {path} --help", file=sys.stderr)
        sys.exit(EXIT_USAGE)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.Abort:
        sys.exit(EXIT_INTERRUPTED)
    sys.exit(result if isinstance(result, int) else 0)


def reports_errors(code: int = EXIT_ACJOB_ERROR) -> Callable[[F], F]:
    """Turn :class:`AcjobError` into a clean message and exit status, never a traceback."""

    def decorate(func: F) -> F:
        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                return func(*args, **kwargs)
            except AcjobError as exc:
                fail(exc, code)
            except KeyboardInterrupt:
                sys.exit(EXIT_INTERRUPTED)
            except BrokenPipeError:
                # The reader went away (| head): quietly, as a killed-by-SIGPIPE tool.
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
                sys.exit(EXIT_BROKEN_PIPE)

        return wrapper  # type: ignore[return-value]

    return decorate


def exit_status(info: JobInfo) -> int:
    """Map a final job to the exit status of the tool that waited for it."""
    if info.state is State.COMPLETE:
        return 0
    if info.state is State.EXECUTOR_ERROR and info.exit_code is not None:
        return info.exit_code
    if info.failure is FailureKind.TIMEOUT:
        return EXIT_TIMEOUT
    if info.state is State.CANCELED:
        return EXIT_CANCELED
    return EXIT_ACJOB_ERROR


def explain_failure(info: JobInfo) -> None:
    """Say on stderr why a job ended without an exit status of its own."""
    unexplained = info.state is State.EXECUTOR_ERROR and info.exit_code is None
    if info.state in (State.SYSTEM_ERROR, State.CANCELED) or unexplained:
        reason = info.reason or "no reason recorded"
        what = "timed out" if info.failure is FailureKind.TIMEOUT else info.state.value
        print(f"acjob: job {info.id} {what}: {reason}", file=sys.stderr)


def say_waiting(text: str) -> None:
    """Tell the user at once that a call waits for an unreachable daemon (an ``on_wait``
    for the clients), so a minute of retries is never silent."""
    print(f"acjob: {text}", file=sys.stderr, flush=True)


def write_all(fd: int, data: bytes) -> None:
    """Write every byte to ``fd`` (``os.write`` may write less than asked)."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def print_json(data: Any) -> None:
    """Print ``data`` as one line of JSON on stdout."""
    print(json.dumps(data, separators=(",", ":")))
