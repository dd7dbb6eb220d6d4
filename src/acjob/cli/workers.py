"""Threads that do a tool's blocking work, and the signals that interrupt the wait for them.

``acjob -t pipe`` sends stdin, copies stdout and copies stderr at once: each is a
blocking loop of its own, run in a thread. The main thread waits until what it needs
is done, or until SIGINT, SIGTERM or SIGHUP arrives; either wakes it at once (the
signal through :func:`signal.set_wakeup_fd`, a worker through the same pipe), so
nothing is polled. A signal is only recorded: what it means (detach, cancel) is the
tool's decision, taken in the main thread.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import threading
from collections.abc import Callable, Iterable
from types import FrameType, TracebackType
from typing import Any

#: The signals that interrupt a tool, all with Ctrl-C's rules: a web service that kills
#: its child sends SIGTERM, a closed terminal SIGHUP.
INTERRUPTS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class Worker:
    """One function running in a thread of its own.

    Attributes:
        name: What it does, for people.
        done: Whether it returned or raised.
        result: What it returned.
        error: What it raised, if anything.
    """

    def __init__(self, name: str, function: Callable[[], Any], wake: Callable[[], None]) -> None:
        self.name = name
        self.done = False
        self.result: Any = None
        self.error: BaseException | None = None
        self._function = function
        self._wake = wake
        # A daemon thread: one blocked reading stdin must not keep the tool alive.
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def _run(self) -> None:
        try:
            self.result = self._function()
        except BaseException as exc:
            self.error = exc
        finally:
            self.done = True
            self._wake()

    def start(self) -> Worker:
        """Start the thread; return the worker."""
        self._thread.start()
        return self

    def outcome(self) -> Any:
        """Return what the function returned, or raise what it raised.

        Raises:
            RuntimeError: it has not finished.
        """
        if not self.done:
            raise RuntimeError(f"{self.name} has not finished")
        if self.error is not None:
            raise self.error
        return self.result


class Workers:
    """Starts workers and waits for them in the main thread, interruptibly.

    Used as a context manager (in the main thread), it catches :data:`INTERRUPTS` for
    its duration; :attr:`caught` lists them in the order they came, and
    ``on_first`` runs (in the main thread) when the first one arrives.
    """

    def __init__(self, on_first: Callable[[int], None] | None = None) -> None:
        self.caught: list[int] = []
        self._on_first = on_first
        self._read, self._write = os.pipe()
        os.set_blocking(self._read, False)
        os.set_blocking(self._write, False)
        self._previous: dict[int, Any] = {}
        self._previous_wakeup = -1

    def __enter__(self) -> Workers:
        self._previous_wakeup = signal.set_wakeup_fd(self._write, warn_on_full_buffer=False)
        for signum in INTERRUPTS:
            self._previous[signum] = signal.signal(signum, self._caught)
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        signal.set_wakeup_fd(self._previous_wakeup)
        # The pipe stays open: a worker still running may yet write its wake-up byte.

    def _caught(self, signum: int, frame: FrameType | None) -> None:
        self.caught.append(signum)
        if len(self.caught) == 1 and self._on_first is not None:
            self._on_first(signum)

    def _wake(self) -> None:
        with contextlib.suppress(OSError):  # a full pipe wakes the waiter all the same
            os.write(self._write, b"\0")

    @property
    def interrupted(self) -> bool:
        """Whether an interrupting signal arrived."""
        return bool(self.caught)

    def start(self, name: str, function: Callable[[], Any]) -> Worker:
        """Run ``function`` in a new thread; return its worker."""
        return Worker(name, function, self._wake).start()

    def wait(self, until: Callable[[], bool]) -> bool:
        """Block until ``until()`` is true (checked whenever a worker ends) or a signal
        interrupts; return ``True`` in the first case, ``False`` in the second."""
        while True:
            if self.caught:
                return False
            if until():
                return True
            select.select([self._read], [], [])
            with contextlib.suppress(BlockingIOError):
                os.read(self._read, 4096)

    def wait_all(self, workers: Iterable[Worker]) -> bool:
        """Block until every worker is done (``True``) or a signal interrupts (``False``)."""
        pending = list(workers)
        return self.wait(lambda: all(w.done for w in pending))
