"""The states of a job and the kinds of failure: the job model's words that need no
validation library (a client imports them without the job model itself).

States use the GA4GH TES vocabulary, so the native API and a TES facade agree.
:data:`TRANSITIONS` is the single table of allowed state changes; the store refuses
any other.
"""

from __future__ import annotations

from enum import StrEnum


class State(StrEnum):
    """The life cycle of a job (TES names)."""

    QUEUED = "QUEUED"
    INITIALIZING = "INITIALIZING"
    RUNNING = "RUNNING"
    PAUSED = "PAUSED"
    COMPLETE = "COMPLETE"
    EXECUTOR_ERROR = "EXECUTOR_ERROR"
    SYSTEM_ERROR = "SYSTEM_ERROR"
    CANCELING = "CANCELING"
    CANCELED = "CANCELED"
    PREEMPTED = "PREEMPTED"

    @property
    def is_final(self) -> bool:
        """True once nothing can change the job any more."""
        return self in FINAL_STATES


FINAL_STATES = frozenset(
    {State.COMPLETE, State.EXECUTOR_ERROR, State.SYSTEM_ERROR, State.CANCELED}
)

_Q, _I, _R = State.QUEUED, State.INITIALIZING, State.RUNNING
_CING, _P = State.CANCELING, State.PREEMPTED

#: Allowed changes. ``PREEMPTED`` is the pause between a failed attempt and its
#: retry; ``QUEUED -> QUEUED`` is not a change and is not listed.
TRANSITIONS: dict[State, frozenset[State]] = {
    _Q: frozenset({_I, _R, _CING, State.CANCELED, State.SYSTEM_ERROR}),
    _I: frozenset({_Q, _R, _P, _CING, *FINAL_STATES}),
    _R: frozenset({_P, _CING, *FINAL_STATES}),
    _P: frozenset({_Q, _I, _CING, State.CANCELED, State.SYSTEM_ERROR}),
    _CING: frozenset({State.CANCELED, *FINAL_STATES}),
    State.PAUSED: frozenset(),
    State.COMPLETE: frozenset(),
    State.EXECUTOR_ERROR: frozenset(),
    State.SYSTEM_ERROR: frozenset(),
    State.CANCELED: frozenset(),
}


def can_transition(old: State, new: State) -> bool:
    """Tell whether the table allows ``old -> new``."""
    return new in TRANSITIONS[old]


class FailureKind(StrEnum):
    """Why an attempt ended without an exit status of its own.

    ``EXIT`` is the exception: the command ran and exited non-zero.
    """

    EXIT = "exit"
    LOST = "lost"
    NODE_FAIL = "node_fail"
    PREEMPTED = "preempted"
    TIMEOUT = "timeout"
    BOOT_FAIL = "boot_fail"
    SUBMIT = "submit"
    SPOOL_FULL = "spool_full"


INFRASTRUCTURE_FAILURES = frozenset(
    {FailureKind.LOST, FailureKind.NODE_FAIL, FailureKind.PREEMPTED, FailureKind.BOOT_FAIL}
)
#: Failures of the job's own doing (its command, the limits it asked for), not the
#: infrastructure's: a job they end is an ``EXECUTOR_ERROR``, never a ``SYSTEM_ERROR``.
OWN_FAILURES = frozenset({FailureKind.EXIT, FailureKind.TIMEOUT})
