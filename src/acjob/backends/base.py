"""The contract every compute backend fulfils, and how backends are found.

A backend starts wrapper scripts (:mod:`acjob.wrapper`) on its compute resource and
reports what it sees of them. It never decides that a job ended: the wrapper's exit
file does. What a backend reports is an :class:`Observation`; the monitor combines
it with the spool to move jobs on.

Errors: a backend raises :class:`~acjob.errors.BackendUnavailable` (transient) when
its resource cannot be asked right now (the monitor looks again later, and nothing
becomes final because of it), and :class:`~acjob.errors.SubmitFailed` (permanent)
when it refuses a job for good.

Backends are registered under the entry-point group ``acjob.backends`` and loaded
explicitly by name; importing acjob registers nothing.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Collection, Mapping, Sequence
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from ..errors import ConfigError
from ..model import Attempt, ExitRecord, Job, JobSpec, Observation
from ..spool import Spool

#: Variables of the daemon's environment that jobs never inherit.
SECRET_VARIABLES = frozenset({"ACJOB_TOKEN"})


def job_environment() -> dict[str, str]:
    """Return the environment jobs start from: the daemon's, without its secrets."""
    return {k: v for k, v in os.environ.items() if k not in SECRET_VARIABLES}


@runtime_checkable
class Backend(Protocol):
    """A compute resource that runs wrapper scripts.

    Attributes:
        name: The name jobs use to ask for this backend.
        capacity: How many attempts may be active at once, or ``None`` when the
            resource queues by itself (a batch scheduler).
        poll_interval: Seconds between two polls while attempts are young.
        max_poll_interval: The longest interval, reached as attempts grow old.
        lost_grace: Seconds an attempt may be ``gone`` without an exit file before
            it is declared lost (shared file systems can lag behind the scheduler).
        notifies_exits: True if the backend calls ``wake()`` when an attempt's
            process ends; otherwise the monitor looks for exit files every second.
        enforces_time_limits: True if the resource stops jobs at their time limit
            itself; otherwise the monitor cancels them and records a time-out.
        runs_on_submit: True if a submitted attempt's process has started when
            ``submit`` returns (local processes): the attempt is recorded as running
            with its native id, in one transaction, rather than at the next poll.
        ignored_signals: Signals the wrapper ignores, and the job's command with it,
            because the resource sends them as mere warnings (Grid Engine's ``USR1``
            before a suspension); usually empty.
        refusal_tries: How many times a job refused in unknown words
            (:class:`~acjob.errors.JobRefused`) is submitted before it ends.
    """

    name: str
    capacity: int | None
    poll_interval: float
    max_poll_interval: float
    lost_grace: float
    notifies_exits: bool
    enforces_time_limits: bool
    runs_on_submit: bool
    ignored_signals: tuple[str, ...]
    refusal_tries: int

    def validate(self, spec: JobSpec) -> None:
        """Check that this backend can run ``spec`` (resources, raw options).

        Raises:
            InvalidRequest: naming what is wrong, before the job is accepted.
        """
        ...

    async def start(self, wake: Callable[[], None]) -> None:
        """Get ready; call ``wake()`` whenever an attempt may have changed."""
        ...

    async def close(self) -> None:
        """Release resources. Running attempts are left running."""
        ...

    async def submit(self, job: Job, attempt: int, wrapper: Path) -> str:
        """Start ``wrapper`` for the attempt and return the resource's id for it.

        Raises:
            BackendUnavailable: the resource could not be asked; the attempt may
                or may not have been submitted (the monitor fences it).
            SubmitFailed: the resource refused the job.
        """
        ...

    async def poll(self, native_ids: Collection[str]) -> Mapping[str, Observation]:
        """Observe many attempts in one call to the resource.

        Every id asked for is in the result.

        Raises:
            BackendUnavailable: the resource could not be asked.
        """
        ...

    async def find(self, job: Job, attempt: int) -> str | None:
        """Find an attempt submitted before a crash by its tag; ``None`` if unknown."""
        ...

    async def cancel(self, native_id: str) -> None:
        """Ask the resource to stop the attempt; it need not be gone on return."""
        ...

    async def explain(self, job: Job, attempt: Attempt,
                      record: ExitRecord | None) -> Observation | None:
        """Tell how an attempt that is ``gone`` without a clean exit status ended.

        Called on each poll that finds the attempt gone with no exit file, or with
        one saying the wrapper was signalled (``record``). ``None`` leaves the
        decision to the monitor: wait for the exit file until the lost grace ends.
        """
        ...


@runtime_checkable
class ArrayBackend(Backend, Protocol):
    """A backend that can submit several attempts in one go (a scheduler's job array)."""

    async def submit_array(self, items: Sequence[tuple[Job, int, Path]]) -> list[str]:
        """Submit the wrappers of several attempts whose jobs share their resources.

        Returns the native ids in the order of ``items``. Raises as :meth:`submit`.
        """
        ...


def load_backend(name: str, spool: Spool, options: Mapping[str, Any]) -> Backend:
    """Create the backend registered as ``name`` in the ``acjob.backends`` group.

    Raises:
        ConfigError: no such backend is installed, or its options are invalid.
    """
    found = entry_points(group="acjob.backends", name=name)
    if not found:
        known = sorted(ep.name for ep in entry_points(group="acjob.backends"))
        raise ConfigError(
            f"no backend named {name!r}",
            hint=f"use one of: {', '.join(known)}",
            code="unknown_backend",
        )
    factory = next(iter(found)).load()
    backend = factory(spool=spool, options=dict(options))
    if not isinstance(backend, Backend):
        raise ConfigError(f"the backend {name!r} does not implement the Backend contract")
    return backend
