"""Job files handed over by the daemon, on the daemon's machine.

Over a Unix socket, the blocking client asks the daemon for a job's open files (see
:mod:`acjob.server.handoff`) and moves the bytes itself, which costs a fraction of the
processor time of an HTTP stream, in the client and above all in the daemon:

- output: :class:`HandedStream` reads the attempt's file with ``pread`` at its own
  offset. The daemon is still asked about the job, as its HTTP stream would ask itself:
  when the file has no more bytes, a short long-poll tells whether the job has ended
  (then what is left is read and the stream ends) or not (then the file is read again).
  It answers like :class:`acjob.client.connection.Stream`, headers included, so the plans
  that follow output do not know which one they read;
- stdin: :func:`append_stdin` moves a pipe into the job's stdin file in the kernel.

Anything unusual (an old daemon, an error answer) makes them return ``None``, and the
bytes go over HTTP as before.
"""

from __future__ import annotations

import errno
import json
import os
import socket
import stat
from collections.abc import Callable, Mapping
from typing import Any

from ..errors import PayloadTooLarge, StorageFull
from ..locations import handoff_socket
from ..states import FINAL_STATES
from .core import Response

#: The most read in one piece.
CHUNK = 1 << 20
#: The first and the longest look at the job while its file has no new bytes (the wait
#: doubles while nothing arrives, and the job's end ends it early).
FIRST_NAP = 0.02
LONGEST_NAP = 0.5
#: How long the daemon may take to hand a file over.
HANDOFF_TIMEOUT = 10.0

#: ``look(wait, since, final)``: the job's JSON once it changed after ``since`` (with
#: ``final``: once it ended) or ``wait`` seconds passed (``None`` unless it answered 200).
Look = Callable[[float, "int | None", bool], "Mapping[str, Any] | None"]

_FINAL = frozenset(state.value for state in FINAL_STATES)


def _ask(sock: socket.socket, uds: str, request: Mapping[str, Any]) -> tuple[Any, list[int]]:
    """Send one request on the handoff socket; return the answer and any descriptors."""
    sock.settimeout(HANDOFF_TIMEOUT)
    sock.connect(handoff_socket(uds))
    sock.sendall(json.dumps(request).encode() + b"\n")
    message, fds, _, _ = socket.recv_fds(sock, 4096, 1)
    try:
        return json.loads(message), fds
    except ValueError:
        return None, fds


def receive_file(uds: str, job_id: str, which: str,
                 attempt: int | None) -> tuple[Mapping[str, Any], int | None]:
    """Ask the daemon listening on ``uds`` for an attempt's open output file (``None``:
    the latest attempt's).

    Returns:
        The answer (``attempt``: the attempt's number; ``job``: the job's ``state``,
        ``attempt`` and ``seq`` as they were just before the file was opened) and the
        file descriptor (the caller closes it), or ``None`` while the attempt has not
        created the file yet or the job has not started.

    Raises:
        OSError: no handoff here (no socket, a refusal, a malformed answer): read the
            output over HTTP.
    """
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        answer, fds = _ask(sock, uds, {"job": job_id, "stream": which, "attempt": attempt})
    usable = isinstance(answer, dict) and isinstance(answer.get("job"), dict) \
        and (answer.get("ok") or answer.get("missing")) and len(fds) <= 1
    if not usable:
        for fd in fds:
            os.close(fd)
        raise OSError(f"the daemon handed no output file over: {answer!r}")
    return answer, (fds[0] if fds else None)


class HandedStream:
    """One attempt's output read from its file, ending as the daemon's stream would.

    Attributes:
        status: Always 200.
        headers: ``x-acjob-attempt``, ``x-acjob-offset`` and, when the job had ended
            before the first read, ``x-acjob-final``, as the HTTP stream sends them.
    """

    def __init__(self, uds: str, job_id: str, which: str, *, attempt: int, offset: int,
                 follow: bool, job: Mapping[str, Any], fd: int | None, look: Look) -> None:
        self._uds, self._job_id, self._which = uds, job_id, which
        self._attempt, self._offset, self._follow = attempt, offset, follow
        self._look = look
        self._fd = fd
        self._seen(job)
        self._nap = FIRST_NAP
        self.status = 200
        self.headers = {"x-acjob-attempt": str(attempt), "x-acjob-offset": str(offset)}
        if job.get("state") in _FINAL and attempt == job.get("attempt"):
            self.headers["x-acjob-final"] = "true"

    def _seen(self, job: Mapping[str, Any]) -> None:
        """Take the job as it was before the next read of the file."""
        self._seq: int | None = job.get("seq")
        # Over: the job is final, or a newer attempt started.
        self._done = job.get("state") in _FINAL or job.get("attempt") != self._attempt
        self._job = job

    @property
    def ended_with(self) -> Mapping[str, Any] | None:
        """The job's whole JSON, as last seen, if the stream ends because the job was
        over by then (``None`` otherwise, or if only its state was seen)."""
        return self._job if self._done and "id" in self._job else None

    def read(self) -> bytes:
        """Return the next piece of output as soon as there is one; ``b""`` at the end
        (the job is over and every byte was read, or ``follow`` was not asked for).

        Raises:
            OSError, h11.ProtocolError: the file or the daemon failed (the plan
                resumes at the offset reached, over a new stream).
        """
        while self._attempt:
            if self._fd is None:
                answer, self._fd = receive_file(self._uds, self._job_id, self._which,
                                                self._attempt)
                self._seen(answer["job"])
            if self._fd is not None:
                chunk = os.pread(self._fd, CHUNK, self._offset)
                if chunk:
                    self._offset += len(chunk)
                    self._nap = FIRST_NAP
                    return chunk
            if not self._follow or self._done:
                break
            # Look at the job before the next read, as the daemon's stream does: if it
            # was over by then, that read finds every byte there will ever be. Woken
            # by its end only: new bytes (or a retry) are looked for after the nap.
            job = self._look(self._nap, self._seq, True)
            if job is None:
                break  # the plan asks again itself, and says what went wrong
            self._seen(job)
            self._nap = min(self._nap * 2, LONGEST_NAP)
        return b""

    def close(self) -> None:
        """Close the file."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def open_handed(uds: str, path: str, params: Mapping[str, Any],
                request: Callable[..., Response]) -> HandedStream | None:
    """Open the output that ``GET path?params`` would stream, from its file.

    Returns ``None`` where the output must come over HTTP: not an output request, one
    with ``tail``, a job the daemon refuses to hand over (the HTTP stream then says why:
    no such job, no such attempt, its files removed), or no handoff on this socket.

    Raises:
        OSError, h11.ProtocolError: the daemon could not be reached.
    """
    parts = path.split("/")
    if len(parts) != 5 or parts[:3] != ["", "v1", "jobs"] \
            or parts[4] not in ("stdout", "stderr") or "tail" in params:
        return None
    job_id, which = parts[3], parts[4]

    def look(wait: float, since: int | None, final: bool) -> Mapping[str, Any] | None:
        query: dict[str, Any] = {"wait": wait}
        if since is not None:
            query["since"] = since
        if final:
            query["final"] = True
        answer = request("GET", f"/v1/jobs/{job_id}", params=query,
                         timeout=HANDOFF_TIMEOUT + wait)
        if answer.status != 200:
            return None
        data = json.loads(answer.body)
        return data if isinstance(data, dict) else None

    def handed(attempt: int | None) -> tuple[Mapping[str, Any], int | None] | None:
        try:
            return receive_file(uds, job_id, which, attempt)
        except OSError:
            return None  # no handoff here, or a refusal the HTTP stream will explain

    follow = bool(params.get("follow"))
    pinned = params.get("attempt")
    if (got := handed(pinned)) is None:
        return None
    answer, fd = got
    job = answer["job"]
    while follow and pinned is None and not answer.get("attempt") \
            and job.get("state") not in _FINAL:
        # Queued: wait for its first attempt, as the daemon's stream would.
        if look(30.0, job.get("seq"), False) is None or (got := handed(None)) is None:
            return None
        answer, fd = got
        job = answer["job"]
    return HandedStream(uds, job_id, which, attempt=int(answer.get("attempt") or 0),
                        offset=int(params.get("offset") or 0), follow=follow, job=job,
                        fd=fd, look=look)


def append_stdin(uds: str, job_id: str, source: int) -> tuple[int, bool] | None:
    """Append the pipe ``source`` to the job's stdin file, handed over by the daemon,
    until the pipe ends or the daemon lets go of the file (the job ended, its stdin
    passed the daemon's limit, or the daemon stops).

    The bytes move from the pipe to the file in the kernel (``splice``); the feeder of
    the running job reads them from the file as they come, as it reads uploaded ones.
    The caller closes stdin with an empty final upload at the returned size (or goes
    on over HTTP from there, if the pipe did not end).

    Returns:
        The size of the job's stdin file and whether the pipe ended; ``None`` when
        nothing was handed over (nothing was read: upload over HTTP).

    Raises:
        PayloadTooLarge: the pipe holds more than the daemon accepts.
        StorageFull: the spool's file system is full; what was written is kept.
        OSError: reading the pipe failed.
    """
    if not stat.S_ISFIFO(os.fstat(source).st_mode):
        return None
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        try:
            answer, fds = _ask(sock, uds, {"job": job_id, "stdin": True})
        except OSError:
            return None
        if not (isinstance(answer, dict) and answer.get("ok") and len(fds) == 1
                and answer.get("offset") == 0):
            # Refused (the HTTP upload says why), or bytes already there (HTTP checks
            # them against what is sent again).
            for fd in fds:
                os.close(fd)
            return None
        limit = answer.get("limit")
        target = fds[0]
        written = 0
        try:
            sock.setblocking(False)
            while True:
                count = CHUNK if limit is None else min(CHUNK, limit + 1 - written)
                try:
                    moved = os.splice(source, target, count, offset_dst=written)
                except OSError as exc:
                    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                        raise StorageFull("the spool's file system is full",
                                          hint="free space in the daemon's spool") from exc
                    raise
                if not moved:
                    return written, True
                written += moved
                if limit is not None and written > limit:
                    raise PayloadTooLarge(f"stdin is larger than the limit of {limit} bytes")
                if _let_go(sock):
                    return written, False
        finally:
            os.close(target)


def _let_go(sock: socket.socket) -> bool:
    """Tell whether the daemon closed the handoff (it never sends anything else)."""
    try:
        return sock.recv(1) == b""
    except BlockingIOError:
        return False
    except ConnectionError:
        return True
