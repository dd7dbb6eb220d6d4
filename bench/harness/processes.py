"""Starting and stopping the bench's own processes, and what they listen on.

Every process the bench starts is started in a session (and process group) of its own
and stopped by its pid through :class:`Started`, on success, error or Ctrl-C alike.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(check: Callable[[], bool], *, timeout: float, what: str,
               proc: subprocess.Popen[bytes] | None = None, interval: float = 0.05) -> None:
    """Poll ``check`` every ``interval`` seconds until it holds; raise if ``timeout``
    passes or ``proc`` exits first."""
    deadline = time.monotonic() + timeout
    while not check():
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what}: the process exited with {proc.returncode}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what}: not ready after {timeout:.0f} s")
        time.sleep(interval)


class Started:
    """A process group the bench started, stopped gracefully then by force.

    Args:
        name: For messages.
        argv: The command.
        log: Where its stdout and stderr go.
        stop_signal: What asks it to stop (default SIGTERM).
        popen: More ``subprocess.Popen`` arguments.
    """

    def __init__(self, name: str, argv: Sequence[str], log: Path, *,
                 stop_signal: signal.Signals = signal.SIGTERM, **popen: Any) -> None:
        self.name = name
        self.log = log
        self.stop_signal = stop_signal
        with log.open("ab") as out:
            self.proc: subprocess.Popen[bytes] = subprocess.Popen(
                list(argv), stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                start_new_session=True, **popen)

    @property
    def pid(self) -> int:
        """The process id (also its process group's)."""
        return self.proc.pid

    def log_tail(self, lines: int = 15) -> str:
        """The end of its log, for error messages."""
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, grace: float = 15) -> None:
        """Ask the group to stop; kill what is left of it after ``grace`` seconds."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, self.stop_signal)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=grace)
        # Whatever the leader left behind in its group (workers, children) goes too.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        if self.proc.poll() is None:
            self.proc.wait()


def stop_all(procs: Sequence[Started], grace: float = 10) -> None:
    """Stop several at once: signal them all, then wait for each within one ``grace``."""
    for proc in procs:
        if proc.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, proc.stop_signal)
    deadline = time.monotonic() + grace
    for proc in procs:
        proc.stop(grace=max(0.0, deadline - time.monotonic()))


@contextlib.contextmanager
def started(name: str, argv: Sequence[str], log: Path, **kwargs: Any) -> Iterator[Started]:
    """:class:`Started` as a context manager: stopped when the block ends, however."""
    proc = Started(name, argv, log, **kwargs)
    try:
        yield proc
    finally:
        proc.stop()


def run_checked(argv: Sequence[str], *, timeout: float = 600, **kwargs: Any,
                ) -> subprocess.CompletedProcess[bytes]:
    """Run a command to its end; raise with its stderr if it fails."""
    result = subprocess.run(list(argv), capture_output=True, timeout=timeout, check=False,
                            **kwargs)
    if result.returncode != 0:
        message = result.stderr.decode(errors="replace").strip()[-2000:]
        raise RuntimeError(f"{' '.join(argv)} failed ({result.returncode}): {message}")
    return result
