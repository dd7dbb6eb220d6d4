"""Streaming a job's output files and events to clients.

Output is read from the spool in large chunks at file offsets, never line by line.
A follow stream sleeps on the job's next event (so a final state wakes it at once)
with a short, growing time-out to catch output written while nothing else changes.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator

from ..spool import Stream
from ..wire import event_json, progress_event_json
from .services import Services

CHUNK = 1 << 20
_MIN_NAP = 0.02
_MAX_NAP = 0.5
_KEEPALIVE = 15.0


async def output_stream(
    svc: Services, job_id: str, stream: Stream, attempt: int, offset: int, follow: bool
) -> AsyncIterator[bytes]:
    """Yield the attempt's output from ``offset``.

    Without ``follow`` it stops at the current end of the file. With ``follow`` it
    stops once the job is final (or a newer attempt started) and every byte was
    sent. Bytes are never skipped or repeated: the stream is a plain read of the
    file from ``offset`` on.
    """
    if attempt == 0:
        return
    path = svc.spool.output_path(job_id, attempt, stream)
    nap = _MIN_NAP
    fd: int | None = None
    try:
        while True:
            # Look at the job *before* reading: if it was over then, what the read
            # finds is everything there will ever be.
            job = svc.store.get(job_id)
            done = job.state.is_final or job.attempt != attempt
            if fd is None:
                try:
                    fd = os.open(path, os.O_RDONLY)
                except FileNotFoundError:
                    fd = None
            sent = False
            while fd is not None:
                chunk = os.pread(fd, CHUNK, offset)
                if not chunk:
                    break
                offset += len(chunk)
                sent = True
                yield chunk
            if not follow or done:
                return
            if sent:
                nap = _MIN_NAP
                continue
            await svc.hub.wait(job_id, nap)
            nap = min(nap * 2, _MAX_NAP)
    finally:
        if fd is not None:
            os.close(fd)


async def event_stream(svc: Services, job_id: str, after: int, follow: bool) -> AsyncIterator[str]:
    """Yield the job's events after ``after`` as server-sent events, until it is final.

    Its progress comes between them as ``progress`` events, without an ``id`` (they are
    not stored: a stream sends the current progress when it starts, if there is any,
    then each change it sees, the latest only).
    """
    sent: object = None
    while True:
        job = svc.store.get(job_id)
        progress = progress_event_json(job)
        key = (progress["attempt"], progress["progress"])
        if key != sent and (sent is not None or progress["progress"] is not None):
            yield f"event: progress\ndata: {json.dumps(progress)}\n\n"
        sent = key
        for event in svc.store.events(job_id, after):
            after = event.seq
            data = json.dumps(event_json(event))
            yield f"id: {event.seq}\nevent: {event.state.value}\ndata: {data}\n\n"
        if not follow or (job.state.is_final and job.seq <= after):
            return
        if await svc.hub.wait(job_id, _KEEPALIVE) is None:
            yield ": keep-alive\n\n"
