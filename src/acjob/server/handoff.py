"""Handing a job's open files to a client on the same machine.

A client that reaches the daemon over its Unix socket may read an attempt's stdout or
stderr from the spool itself, and append the job's stdin to its spool file itself,
instead of sending the bytes through HTTP: it asks on a second Unix socket beside the
first (:func:`acjob.locations.handoff_socket`), and the daemon answers with the file
open, passed as ``SCM_RIGHTS``. The bytes then go between the page cache and the client
without passing through the daemon, which still answers every question about the job
and still closes stdin itself (flushed, then recorded) when the client asks it to.

The protocol is one request line of JSON per connection, and one answer line:

- ``{"job": ID, "stream": "stdout" | "stderr", "attempt": N | null}``: the output file
  of that attempt (null: the latest), open for reading: ``{"ok": true, "attempt": N,
  "job": JOB}`` (the job's JSON, as ``GET /v1/jobs/ID`` answers) with the descriptor
  (none for attempt 0: the job has not started), the same with ``"missing": true``
  instead of ``"ok"`` while the attempt has not made the file yet, or
  ``{"error": MESSAGE}``. The job is read before the file is opened;
- ``{"job": ID, "stdin": true}``: the stdin file, open for writing from its end on
  (bytes already there are never written again): ``{"ok": true, "offset": BYTES_SO_FAR,
  "limit": MAX_OR_NULL}``
  with the descriptor, or ``{"error": MESSAGE, "code": CODE}``. The job's stdin is held
  for the client (other uploads wait; it counts as sending) until it closes the
  connection; then it closes stdin with an empty final ``PUT .../stdin``.

Only files the daemon names itself are opened: the job id is checked, the stream is one
of two words, the attempt one the job has, and nothing is followed through a symbolic
link. The socket has the main socket's permissions (its owner only).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
from typing import Any

from ..errors import AcjobError
from ..model import check_job_id
from ..wire import job_json
from .services import Services

log = logging.getLogger(__name__)

#: The longest request line read.
MAX_REQUEST = 512
#: How long a client may take to send its request.
REQUEST_TIMEOUT = 5.0
#: How often a job whose stdin a client writes is looked at (has it ended?).
LOOK_EVERY = 1.0


async def serve_handoffs(listener: socket.socket, svc: Services) -> None:
    """Answer handoff requests on ``listener`` (a listening, non-blocking Unix socket)
    until cancelled. Each connection is served on its own; one that misbehaves is
    closed without harming the others."""
    loop = asyncio.get_running_loop()
    listener.setblocking(False)
    tasks: set[asyncio.Task[None]] = set()
    try:
        while True:
            conn, _ = await loop.sock_accept(listener)
            task = asyncio.create_task(_serve(conn, svc))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
    finally:
        for task in list(tasks):
            task.cancel()


async def _serve(conn: socket.socket, svc: Services) -> None:
    loop = asyncio.get_running_loop()
    fd: int | None = None
    try:
        conn.setblocking(False)
        try:
            # asyncio.timeout, not wait_for: the line is read in this task, not in one
            # more (the request is mostly there already: no turn of the loop lost).
            async with asyncio.timeout(REQUEST_TIMEOUT):
                line = await _read_line(loop, conn)
            request = _parse(line)
        except (TimeoutError, ValueError) as exc:
            _send(conn, {"error": f"bad request: {exc}" if str(exc) else "bad request"})
            return
        if request.get("stdin") is True:
            await _hand_stdin(loop, conn, svc, request["job"])
            return
        fd, answer = _open_output(request, svc)
        if svc.commits is not None and svc.commits.pending:
            await svc.commits.barrier()  # the job said is on disk, as over HTTP
        _send(conn, answer, fd)
        if fd is not None:
            svc.activity.handoffs["output"] += 1
    except OSError as exc:
        log.debug("handoff failed: %s", exc)
    finally:
        if fd is not None:
            os.close(fd)
        conn.close()


def _send(conn: socket.socket, answer: dict[str, Any], fd: int | None = None) -> None:
    # One small message on an idle socket: it goes out whole at once.
    message = json.dumps(answer).encode() + b"\n"
    socket.send_fds(conn, [message], [fd] if fd is not None else [])


async def _hand_stdin(loop: asyncio.AbstractEventLoop, conn: socket.socket, svc: Services,
                      job_id: str) -> None:
    """Hand the job's stdin file over (to be written from its end on), and hold the
    job's stdin for the client until it closes the connection, or until the daemon lets
    go of it (the job ended, or the file passed the limit)."""
    limit = svc.receiver.settings.max_stdin_bytes
    try:
        async with svc.receiver.stdin_writer(job_id) as (fd, size):
            _send(conn, {"ok": True, "offset": size, "limit": limit}, fd)
            svc.activity.handoffs["stdin"] += 1
            while True:
                try:
                    if not await asyncio.wait_for(loop.sock_recv(conn, 64), LOOK_EVERY):
                        return  # the client is done (or gone)
                except TimeoutError:
                    # Let go (the client stops writing, and its final upload says why)
                    # once the bytes would reach nobody or pass the limit.
                    if _let_go(svc, job_id, fd, limit):
                        return
    except AcjobError as exc:
        _send(conn, {"error": exc.message, "code": exc.code})


async def _read_line(loop: asyncio.AbstractEventLoop, conn: socket.socket) -> bytes:
    data = b""
    while b"\n" not in data:
        chunk = await loop.sock_recv(conn, MAX_REQUEST)
        if not chunk:
            raise ValueError("the request ended before its line did")
        data += chunk
        if len(data) > MAX_REQUEST:
            raise ValueError("the request is too long")
    return data.split(b"\n", 1)[0]


def _let_go(svc: Services, job_id: str, fd: int, limit: int | None) -> bool:
    """Whether to stop a client writing the job's stdin: the job ended (or is gone), or
    the file passed the limit."""
    try:
        ended = svc.store.get(job_id).state.is_final
    except AcjobError:
        return True
    return ended or (limit is not None and os.fstat(fd).st_size > limit)


def _parse(line: bytes) -> dict[str, Any]:
    """Return a well-formed request (its job id checked).

    Raises:
        ValueError: anything else.
    """
    request = json.loads(line)
    if not isinstance(request, dict) or not isinstance(request.get("job"), str):
        raise ValueError("wants a JSON object with a job id")
    try:
        check_job_id(request["job"])
    except AcjobError as exc:
        raise ValueError(exc.message) from exc
    if request.get("stdin") is True:
        return request
    attempt = request.get("attempt")
    if request.get("stream") not in ("stdout", "stderr") \
            or not (attempt is None or (type(attempt) is int and attempt >= 1)):
        raise ValueError("wants stream (stdout or stderr) and attempt (>= 1, or null for "
                         "the latest), or stdin")
    return request


def _open_output(request: dict[str, Any],
                 svc: Services) -> tuple[int | None, dict[str, Any]]:
    """Return the output file to hand over (or ``None``) and the answer, which says
    how the job was just before the file was opened (so that the client knows whether
    what it reads is all there will be, as the HTTP stream's headers say)."""
    job_id, stream = request["job"], request["stream"]
    try:
        job = svc.store.get(job_id)
    except AcjobError as exc:
        return None, {"error": exc.message}
    if job.purged_at is not None:
        return None, {"error": f"the files of job {job_id} were removed"}
    attempt = request.get("attempt") or job.attempt
    if attempt > job.attempt:
        return None, {"error": f"the job has no attempt {attempt}"}
    seen = job_json(job)
    if attempt == 0:
        return None, {"ok": True, "attempt": 0, "job": seen}
    path = svc.spool.output_path(job_id, attempt, stream)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return None, {"missing": True, "attempt": attempt, "job": seen}
    except OSError as exc:
        return None, {"error": f"cannot open the {stream} file: {exc.strerror}"}
    with contextlib.suppress(OSError):
        # Sequential reads of a file being written: let the kernel read ahead.
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_SEQUENTIAL)
    return fd, {"ok": True, "attempt": attempt, "job": seen}
