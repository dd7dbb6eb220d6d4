"""The measurements every job system gets alike, in plain Python (no third-party imports).

This module runs beside acjob and in the peers' virtual environment: each system is wrapped
in a :class:`System` (submit one ``sh -c true`` job, wait for it and read its result), and
:func:`measure_queue` takes the same four figures of each.
"""

from __future__ import annotations

import multiprocessing
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol


class System(Protocol):
    """One job system, seen from one client connection.

    A handle is whatever ``submit`` returns; ``ident`` turns it into a string that another
    connection (another process) can wait for.
    """

    name: str

    def submit(self) -> Any:
        """Submit one job running ``sh -c true``; return its handle."""

    def wait(self, handle: Any) -> None:
        """Block until the job ended, and read its result (or its stdout)."""

    def ident(self, handle: Any) -> str:
        """The job's id, for :meth:`wait_ident` in another process."""

    def wait_ident(self, ident: str) -> None:
        """As :meth:`wait`, for a job known by its id."""


def median_seconds(action: Callable[[], object], runs: int) -> float:
    """The median wall-clock time of ``runs`` calls of ``action``, in seconds."""
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def paired_median_seconds(first: Callable[[], object], second: Callable[[], object],
                          runs: int) -> tuple[float, float]:
    """The median wall-clock times of ``runs`` calls of ``first`` and of ``second``,
    called in turn (first, second, first, …), in seconds: a machine whose speed drifts
    during the run (other people's load) moves both alike, and their ratio holds."""
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(runs):
        for action, spent in ((first, times[0]), (second, times[1])):
            start = time.perf_counter()
            action()
            spent.append(time.perf_counter() - start)
    return statistics.median(times[0]), statistics.median(times[1])


def _client(connect: Callable[[], System], count: int, barrier: Any, out: Any) -> None:
    """One of the concurrent clients: connect and submit one job untimed (connections
    are made lazily), wait for the others, then submit ``count`` jobs."""
    system = connect()
    idents = [system.ident(system.submit())]
    barrier.wait()
    start = time.monotonic()  # CLOCK_MONOTONIC: the same clock in every process
    idents += [system.ident(system.submit()) for _ in range(count)]
    out.put((start, time.monotonic(), count, idents))


def concurrent_submissions(connect: Callable[[], System], clients: int,
                           per_client: int) -> tuple[float, list[str]]:
    """Submit ``clients * per_client`` jobs from ``clients`` processes at once.

    Each process (started afresh, not forked: client libraries' threads and locks do not
    survive a fork) opens its own connection with ``connect()``, which must therefore be
    picklable (a class, or a ``functools.partial``), submits one job to warm it up, waits
    for the others, then submits its jobs one request each. Returns the jobs per second,
    from the first process's start to the last one's end, and the ids of every job
    submitted (the warm-up ones too, so that all can be waited for).
    """
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(clients)
    out = context.Queue()
    procs = [context.Process(target=_client, args=(connect, per_client, barrier, out),
                             daemon=True)
             for _ in range(clients)]
    for proc in procs:
        proc.start()
    try:
        answers = [out.get(timeout=600) for _ in procs]
    except BaseException:
        for proc in procs:
            proc.kill()
        raise
    finally:
        for proc in procs:
            proc.join()
    start = min(a[0] for a in answers)
    end = max(a[1] for a in answers)
    submitted = sum(a[2] for a in answers)
    return submitted / (end - start), [ident for a in answers for ident in a[3]]


def medians(passes: Sequence[Mapping[str, float]]) -> dict[str, float]:
    """Each figure's median over several passes."""
    return {key: statistics.median(p[key] for p in passes) for key in passes[0]}


def _one_pass(system: System, connect: Callable[[], System], runs: int, jobs: int,
              clients: int) -> dict[str, float]:
    round_trip = median_seconds(lambda: system.wait(system.submit()), runs)
    start = time.perf_counter()
    handles = [system.submit() for _ in range(jobs)]
    submitted = time.perf_counter()
    for handle in handles:
        system.wait(handle)
    done = time.perf_counter()
    rate, idents = concurrent_submissions(connect, clients, -(-jobs // clients))
    for ident in idents:
        system.wait_ident(ident)
    return {
        "round_trip_ms": round_trip * 1000,
        "submit_one_client": jobs / (submitted - start),
        "e2e_one_by_one": jobs / (done - start),
        "submit_concurrent": rate,
    }


def measure_queue(system: System, connect: Callable[[], System], *, runs: int, jobs: int,
                  clients: int, repeat: int = 1, warmup: int = 5) -> dict[str, float]:
    """Take the figures every job system gets, in this order:

    - ``round_trip_ms``: median over ``runs`` of one job submitted, waited for and its
      result read;
    - ``submit_one_client`` and ``e2e_one_by_one``: ``jobs`` jobs submitted one request
      each from this client, then waited for in order: jobs per second until the last
      submission was answered, and until the last job was waited for;
    - ``submit_concurrent``: ``clients`` processes submitting together (``jobs`` in all,
      rounded up), jobs per second; their jobs are then waited for, untimed.

    The workers run the jobs meanwhile, as they would in use. After ``warmup`` round
    trips, the whole sequence runs ``repeat`` times, and each figure is the median of
    its passes (on a shared machine, one pass may meet a burst of someone else's load).
    """
    for _ in range(warmup):
        system.wait(system.submit())
    return medians([_one_pass(system, connect, runs, jobs, clients) for _ in range(repeat)])
