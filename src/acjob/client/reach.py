"""Saying why the daemon cannot be reached, and that a call waits for it.

A call to a daemon that does not answer is retried for ``retry_for`` seconds (a daemon
restarting is back soon). The user hears at once what is waited for, where and for how
long, not after a silent minute; and the error that ends the wait names the address
and the reason (``no such socket``, ``connection refused``), not an errno.
"""

from __future__ import annotations

import errno
from collections.abc import Callable

from .core import TransportError

_REASONS = {errno.ENOENT: "no such socket", errno.ECONNREFUSED: "connection refused",
            errno.EACCES: "permission denied", errno.ETIMEDOUT: "no answer",
            errno.EHOSTUNREACH: "host unreachable", errno.ENETUNREACH: "network unreachable",
            errno.ECONNRESET: "connection reset", errno.EPIPE: "connection closed"}


def describe_failure(error: BaseException) -> str:
    """Say in a few words why a connection failed (``connection refused``, ``no such
    socket``, …), from the first OS error in the exception's chain."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno in _REASONS:
            return _REASONS[seen.errno]
        if isinstance(seen, TimeoutError) or "timeout" in type(seen).__name__.lower():
            return "no answer in time"
        seen = seen.__cause__ or seen.__context__
    return str(error) or type(error).__name__


class Reach:
    """Tells the caller, once per outage, that a call waits for an unreachable daemon,
    and names the daemon and the reason in the errors a failed connection raises.

    Args:
        where: The daemon's address, for people.
        on_wait: Called with one sentence when a call starts waiting (``None``: quiet).

    Attributes:
        answering: The daemon answered, and no connection failed since: a client that
            starts its private daemon on demand need not look whether it runs.
    """

    def __init__(self, where: str, on_wait: Callable[[str], None] | None) -> None:
        self.where = where
        self.on_wait = on_wait
        self.waiting = False
        self.answering = False

    def lost(self, error: Exception, retry_for: float) -> TransportError:
        """Return the :class:`TransportError` a driver throws for a failed connection
        (its message: where, and why); say once that the call waits ``retry_for`` s."""
        reason = describe_failure(error)
        if not self.waiting and retry_for > 0 and self.on_wait is not None:
            self.on_wait(f"waiting up to {retry_for:g} s for the acjob daemon at {self.where}"
                         f" ({reason}); ACJOB_RETRY_FOR sets the wait")
        self.waiting = True
        self.answering = False
        wrapped = TransportError(f"{self.where}: {reason}")
        wrapped.__cause__ = error
        return wrapped

    def answered(self) -> None:
        """Note that the daemon answered: the next failure is a new outage."""
        self.waiting = False
        self.answering = True
