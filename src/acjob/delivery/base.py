"""The contract of a delivery channel.

A channel pushes one final job's result to one target. It raises
:class:`~acjob.errors.TransientError` when trying again later may succeed (the
receiver is down, busy, or answered 408/429/5xx) and
:class:`~acjob.errors.PermanentError` when it will not (a 4xx, an address the mail
server refuses). The sender (:mod:`acjob.sender`) retries the first kind with
capped exponential backoff until the delivery's deadline, and gives up on the
second at once. Each delivery has a stable id, sent along, so a receiver can drop
the duplicates that at-least-once delivery implies.
"""

from __future__ import annotations

from typing import Protocol

from ..model import DeliveryRecord, Job
from ..spool import Spool, Stream


class Channel(Protocol):
    """Pushes results of one kind (``email``, ``webhook``)."""

    kind: str

    async def send(self, delivery: DeliveryRecord, job: Job) -> None:
        """Deliver the final ``job``'s result to ``delivery.target``.

        Raises:
            TransientError: try again later.
            PermanentError: this delivery cannot succeed.
        """
        ...


def output_file_size(spool: Spool, job: Job, stream: Stream) -> int:
    """Return the size of the final attempt's stdout or stderr (0 if it never ran)."""
    return spool.output_size(job.id, job.attempt, stream) if job.attempt else 0


def read_output(spool: Spool, job: Job, stream: Stream) -> bytes:
    """Return the final attempt's stdout or stderr (empty if it never ran)."""
    if not job.attempt:
        return b""
    try:
        return spool.output_path(job.id, job.attempt, stream).read_bytes()
    except FileNotFoundError:
        return b""
