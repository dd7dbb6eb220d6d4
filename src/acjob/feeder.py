"""Feeds a job its stdin while it is still arriving: the live half of a pipe.

Runs inside an attempt (``python -I feeder.py STDIN MARK``), in front of the job's
command in the wrapper: ``feeder | command``. It copies the spool's stdin file to its
own stdout from the first byte, follows the file as the daemon appends to it, and
ends (closing the pipe: the command reads end of file) once it has copied exactly the
size that the close mark records. So every attempt, a retried or a re-attached one
included, reads the very same bytes from the start, while the bytes still arrive.

The close mark is written by the daemon after the stdin file is complete and flushed
to disk. On a shared file system a size seen before the mark is not trusted: once the
mark is there the file is opened again (close-to-open consistency) and read up to the
recorded size.

The feeder stops early, quietly, when the command stops reading (it closed its stdin
or exited): it notices the closed pipe while it waits, not only when it writes.

Only the standard library is used, and nothing of acjob, so that it starts fast on a
compute node: the daemon runs this file by its path.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import select
import signal
import sys

#: The most copied in one call.
CHUNK = 1 << 20
#: The first wait for more bytes, and the longest (the wait doubles while idle).
FIRST_WAIT = 0.005
LONGEST_WAIT = 0.25


def read_mark(mark: str) -> int | None:
    """Return the final size the close mark records, or ``None`` while stdin is open."""
    try:
        with open(mark, "rb") as file:
            text = file.read(64)
    except FileNotFoundError:
        return None
    try:
        return int(text.split()[0])
    except (ValueError, IndexError):
        return None  # written by rename, so never partial; but never trust a file blindly


def _open(path: str) -> int | None:
    try:
        return os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None  # no byte has arrived yet


def _copy(source: int, out: int, offset: int, limit: int | None) -> int:
    """Copy what the source holds past ``offset`` (up to ``limit``); return the new offset."""
    while limit is None or offset < limit:
        count = CHUNK if limit is None else min(CHUNK, limit - offset)
        try:
            sent = os.sendfile(out, source, offset, count)
        except OSError as exc:
            if exc.errno not in (errno.EINVAL, errno.ENOSYS):
                raise
            data = os.pread(source, count, offset)  # a file system without sendfile
            sent = len(data)
            view = memoryview(data)
            while view:
                view = view[os.write(out, view):]
        if sent == 0:
            break
        offset += sent
    return offset


def _reader_gone(out: int, wait: float) -> bool:
    """Wait up to ``wait`` seconds; tell whether the pipe's reader has gone meanwhile."""
    poller = select.poll()
    poller.register(out, select.POLLERR | select.POLLHUP)
    return bool(poller.poll(int(wait * 1000)))


def feed(path: str, mark: str, out: int = 1) -> int:
    """Copy the stdin file at ``path`` to ``out`` until the close mark's size is reached.

    Returns the number of bytes copied.

    Raises:
        OSError: the file cannot be read (a broken pipe is not an error: the command
            stopped reading, and the feeder stops too).
    """
    offset = 0
    source = _open(path)
    wait = FIRST_WAIT
    with contextlib.suppress(OSError):
        # A wider pipe to the command: fewer, larger copies (Linux's F_SETPIPE_SZ).
        fcntl.fcntl(out, 1031, CHUNK)
    try:
        while True:
            final = read_mark(mark)
            if final is not None:
                # Close-to-open: what a shared file system shows is complete only now.
                if source is not None:
                    os.close(source)
                source = _open(path)
                if source is None:
                    raise FileNotFoundError(errno.ENOENT, "stdin is closed but missing", path)
                if offset > final:
                    raise OSError(errno.EIO, f"{offset} bytes fed, past the final {final}",
                                  path)
                offset = _copy(source, out, offset, final)
                if offset < final:
                    raise OSError(errno.EIO, f"stdin ends at {offset} of {final} bytes", path)
                return offset
            if source is None:
                source = _open(path)
            before = offset
            if source is not None:
                offset = _copy(source, out, offset, None)
            if offset > before:
                wait = FIRST_WAIT
                continue
            if _reader_gone(out, wait):
                return offset
            # (os.path, not pathlib: the feeder starts on every node, importing little.)
            if not os.path.isdir(os.path.dirname(path)):  # noqa: PTH112, PTH120
                # The job's files were removed (the job is gone): nothing will come.
                raise FileNotFoundError(errno.ENOENT, "the job's spool directory is gone",
                                        path)
            wait = min(wait * 2, LONGEST_WAIT)
    except BrokenPipeError:
        return offset
    finally:
        if source is not None:
            os.close(source)


def main(argv: list[str]) -> int:
    """``feeder.py STDIN MARK``: exit 0 when done or the reader left, 1 on an error.

    A signal that stops the job (a cancel's SIGTERM to the whole process group) is
    ignored: were the feeder to die of it first, the command would read a clean end
    of file, and take a cut stdin for a whole one. The command dies of it instead,
    and the feeder then finds its reader gone.
    """
    for name in ("SIGTERM", "SIGINT", "SIGHUP", "SIGUSR2"):
        signal.signal(getattr(signal, name), signal.SIG_IGN)
    if len(argv) != 2:
        print("usage: feeder.py STDIN MARK", file=sys.stderr)
        return 2
    try:
        feed(argv[0], argv[1])
    except OSError as exc:
        print(f"acjob feeder: {exc}", file=sys.stderr)
        return 1
    finally:
        with contextlib.suppress(OSError):
            os.close(1)
    return 0


if __name__ == "__main__":  # pragma: no cover - run by the wrapper
    sys.exit(main(sys.argv[1:]))
