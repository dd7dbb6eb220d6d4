"""The client's stdin: complete (bytes, text, a path, a regular file) or live (a pipe, a
terminal, an iterable of chunks), cut into what the upload plans send.

A complete stdin goes in chunks of :data:`UPLOAD_CHUNK`, the last one closing it. A live
one goes in :class:`Segment`\\ s, each one request whose body is sent as the bytes arrive,
kept until the daemon acknowledged them so that a broken request resumes where the
daemon's copy ends: at most one segment is held in memory, whatever the size.
"""

from __future__ import annotations

import fcntl
import os
import stat
from collections.abc import Iterable, Iterator, Mapping
from typing import IO, Any

from ..errors import ConnectionFailed

Stdin = bytes | str | os.PathLike[str] | IO[bytes] | Iterable[bytes] | None

#: The most bytes one upload request carries.
UPLOAD_CHUNK = 8 << 20


def _chunks(stdin: Stdin) -> Iterator[bytes]:
    """Yield stdin in upload-sized chunks, whatever form it was given in."""
    if stdin is None:
        return
    if isinstance(stdin, str):
        stdin = stdin.encode()
    if isinstance(stdin, bytes):
        for start in range(0, len(stdin), UPLOAD_CHUNK):
            yield stdin[start:start + UPLOAD_CHUNK]
        return
    if isinstance(stdin, os.PathLike):
        with open(stdin, "rb") as f:
            yield from _chunks(f)
        return
    if hasattr(stdin, "read"):
        reader: Any = stdin
        while True:
            chunk = reader.read(UPLOAD_CHUNK)
            if not chunk:
                return
            yield chunk
    else:
        yield from stdin


def _with_lookahead(chunks: Iterator[bytes]) -> Iterator[tuple[bytes, bool]]:
    """Pair each chunk with whether it is the last (so the last upload also closes)."""
    previous: bytes | None = None
    for chunk in chunks:
        if not chunk:
            continue
        if previous is not None:
            yield previous, False
        previous = chunk
    yield previous or b"", True


def is_live(stdin: Stdin) -> bool:
    """Tell whether ``stdin`` may still be arriving: a pipe, a terminal, a socket, an
    iterable of chunks. Bytes, text, paths and regular files are complete already."""
    if stdin is None or isinstance(stdin, bytes | str | os.PathLike):
        return False
    fileno = getattr(stdin, "fileno", None)
    if fileno is not None:
        try:
            return not stat.S_ISREG(os.fstat(fileno()).st_mode)
        except (OSError, ValueError):
            return True  # no usable descriptor (a wrapped stream): read it as it comes
    return True


#: F_SETPIPE_SZ (Linux): how much a pipe holds. The default 64 KiB makes a fast producer
#: hand over its bytes in many small reads; 1 MiB is what any user may ask for.
_SETPIPE_SZ = 1031
_PIPE_SIZE = 1 << 20


def _widen_pipe(source: object) -> None:
    """Let a pipe hold 1 MiB, so that each read takes more of a fast producer's bytes
    (best effort: not a pipe, or not Linux, changes nothing)."""
    fileno = getattr(source, "fileno", None)
    if fileno is None:
        return
    try:
        fd = fileno()
        if stat.S_ISFIFO(os.fstat(fd).st_mode):
            fcntl.fcntl(fd, _SETPIPE_SZ, _PIPE_SIZE)
    except (OSError, ValueError):
        pass


class LiveStdin:
    """A stdin read as its bytes arrive: each read returns what is there (at least one
    byte, unless it ended), never waiting to fill a chunk."""

    def __init__(self, source: IO[bytes] | Iterable[bytes]) -> None:
        self._source = source
        self._pending = b""
        self._chunks: Iterator[bytes] | None = None
        _widen_pipe(source)

    def read(self, limit: int) -> bytes:
        """Return up to ``limit`` bytes as soon as any are there; ``b""`` at the end."""
        source: Any = self._source
        if hasattr(source, "read1"):
            return bytes(source.read1(limit))
        if hasattr(source, "read"):
            return bytes(source.read(limit))
        if self._chunks is None:
            self._chunks = iter(source)
        while not self._pending:
            chunk = next(self._chunks, None)
            if chunk is None:
                return b""
            self._pending = bytes(chunk)
        data, self._pending = self._pending[:limit], self._pending[limit:]
        return data


class Segment:
    """Up to :data:`UPLOAD_CHUNK` bytes of a live stdin, sent as one streamed request.

    The bytes read for it are kept until the daemon has acknowledged them, so an
    interrupted request resumes where the daemon's copy ends: at most one segment is
    held in memory, whatever the stdin's size.

    Attributes:
        start: Where the segment begins in the job's stdin.
        buffer: The segment's bytes read so far.
        ended: The stdin ended within this segment.
    """

    def __init__(self, source: LiveStdin, start: int, first: bytes) -> None:
        self.start = start
        self.buffer = bytearray(first)
        self.ended = False
        self._source = source

    def body(self, skip: int) -> Iterator[bytes]:
        """Yield the segment from byte ``skip`` on: what was read, then what arrives,
        until the segment is full or the stdin ends."""
        if skip < len(self.buffer):
            yield bytes(self.buffer[skip:])
        while not self.ended and len(self.buffer) < UPLOAD_CHUNK:
            chunk = self._source.read(UPLOAD_CHUNK - len(self.buffer))
            if not chunk:
                self.ended = True
                return
            self.buffer += chunk
            yield chunk


def _resume_at(status: Mapping[str, Any], start: int, length: int) -> int | None:
    """Return where in the current chunk a broken upload resumes (``None``: it completed).

    Raises:
        ConnectionFailed: the daemon holds fewer bytes than were acknowledged before
            (its disk lost them): the upload cannot resume.
    """
    size = int(status["bytes"])
    if status.get("closed"):
        return None
    if not start <= size <= start + length:
        raise ConnectionFailed(
            f"the daemon holds {size} stdin bytes, but {start} were acknowledged",
            hint="submit the job again", code="stdin_lost",
        )
    return size - start
