"""The spool: the files of every job, laid out by job id and attempt.

```
<spool>/<job id>/            0700
    stdin                    the uploaded stdin (complete once the store says closed)
    work/                    the default working directory
    <attempt>/               one directory per attempt: job.sh, claim, pid,
                             stdout, stderr, progress, exit (see :mod:`acjob.wrapper`)
```

Every path is derived from a validated job id and an integer attempt: nothing a
client sends is ever used as a path here. Directories are 0700 and files 0600.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
from collections.abc import AsyncIterable
from pathlib import Path
from typing import Literal, NamedTuple

from .errors import ConfigError, Conflict, PayloadTooLarge
from .feeder import read_mark
from .model import ExitRecord, check_job_id
from .progress import TAIL_BYTES, parse_tail
from .wrapper import (
    CLAIM_DIR,
    EXIT_FILE,
    PID_FILE,
    PROGRESS_FILE,
    STDERR_FILE,
    STDOUT_FILE,
    WRAPPER_FILE,
)

Stream = Literal["stdout", "stderr"]
#: What identifies one state of a file's content without reading it: modification
#: time (ns), size and inode (``>`` keeps the inode, a rename changes it).
Stamp = tuple[int, int, int]


class ProgressRead(NamedTuple):
    """What a look at an attempt's progress file found.

    Attributes:
        stamp: The file's stamp now (``None``: missing, or not a regular file).
        said: The percent and message of its last complete well-formed line, or
            ``None`` if the file is unchanged or says nothing usable.
        mtime: Its modification time (Unix time).
    """

    stamp: Stamp | None
    said: tuple[float, str | None] | None
    mtime: float


_NO_PROGRESS = ProgressRead(None, None, 0.0)

_COPY_CHUNK = 1 << 20
#: The close mark of a job's stdin (see :meth:`Spool.close_stdin`).
STDIN_MARK = "stdin.size"
#: What the daemon writes in a claim it makes to fence an attempt (a wrapper's is empty).
FENCE = b"fence\n"
#: Names of files of a job's own (its plan): plain names, never paths.
_JOB_FILE = re.compile(r"[A-Za-z][A-Za-z0-9_-]*\.[a-z]+")
_RESERVED = frozenset({"stdin", "work", STDIN_MARK})


class Spool:
    """Paths and file operations of the spool directory."""

    def __init__(self, root: Path) -> None:
        """Use ``root`` (created 0700 if missing).

        Raises:
            ConfigError: it cannot be created.
        """
        self.root = root
        try:
            root.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"cannot create the spool {root}: {exc.strerror or exc}",
                              hint="set [server] spool to a writable directory",
                              code="spool_unusable") from exc

    def check_usable(self) -> None:
        """Make sure files can be created, synced and removed in the spool.

        Raises:
            ConfigError: the spool is not a writable directory.
        """
        probe = self.root / f".probe-{os.getpid()}"
        try:
            fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                os.write(fd, b"acjob")
                os.fsync(fd)
            finally:
                os.close(fd)
            probe.unlink()
        except OSError as exc:
            raise ConfigError(
                f"the spool {self.root} is not usable: {exc.strerror or exc}",
                hint="make it a writable directory (on a file system the compute nodes "
                     "share, for a cluster backend), or set [server] spool",
                code="spool_unusable",
            ) from exc

    def free_bytes(self) -> int | None:
        """Return the bytes free for unprivileged writers on the spool's file system."""
        try:
            fs = os.statvfs(self.root)
        except OSError:
            return None
        return fs.f_bavail * fs.f_frsize

    def file_system(self) -> str | None:
        """Return the type of the file system holding the spool (from /proc/mounts)."""
        best, kind = "", None
        try:
            mounts = Path("/proc/mounts").read_text().splitlines()
        except OSError:
            return None
        root = str(self.root.resolve())
        for line in mounts:
            fields = line.split()
            if len(fields) < 3:
                continue
            point = fields[1].replace("\\040", " ")
            inside = root == point or root.startswith(point.rstrip("/") + "/")
            if inside and len(point) >= len(best):
                best, kind = point, fields[2]
        return kind

    def job_dir(self, job_id: str) -> Path:
        """Return the job's directory (the id is validated first)."""
        return self.root / check_job_id(job_id)

    def attempt_dir(self, job_id: str, attempt: int) -> Path:
        """Return the directory of attempt number ``attempt``."""
        return self.job_dir(job_id) / str(int(attempt))

    def stdin_path(self, job_id: str) -> Path:
        """Return the file that holds the job's stdin."""
        return self.job_dir(job_id) / "stdin"

    def work_dir(self, job_id: str) -> Path:
        """Return the job's default working directory."""
        return self.job_dir(job_id) / "work"

    def output_path(self, job_id: str, attempt: int, stream: Stream) -> Path:
        """Return the file that receives an attempt's stdout or stderr."""
        name = STDOUT_FILE if stream == "stdout" else STDERR_FILE
        return self.attempt_dir(job_id, attempt) / name

    def wrapper_path(self, job_id: str, attempt: int) -> Path:
        """Return the attempt's wrapper script."""
        return self.attempt_dir(job_id, attempt) / WRAPPER_FILE

    def create_job(self, job_id: str) -> Path:
        """Create the job's directory and its working directory (both 0700); return the
        job's directory."""
        job_dir = self.job_dir(job_id)
        job_dir.mkdir(mode=0o700, exist_ok=True)
        (job_dir / "work").mkdir(mode=0o700, exist_ok=True)
        return job_dir

    def write_job_file(self, job_id: str, name: str, content: bytes) -> Path:
        """Write a file of the job's own (a TES plan) atomically, mode 0600.

        Raises:
            ValueError: ``name`` is not a plain file name of its own (a bug: names
                come from acjob, never from a client).
        """
        if not _JOB_FILE.fullmatch(name) or name in _RESERVED or name.isdigit():
            raise ValueError(f"not a job file name: {name!r}")
        path = self.job_dir(job_id) / name
        tmp = path.with_name(name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as file:
            file.write(content)
        tmp.replace(path)
        return path

    def create_attempt(self, job_id: str, attempt: int, wrapper: str) -> Path:
        """Create the attempt's directory with its wrapper; return the wrapper's path."""
        directory = self.create_job(job_id) / str(int(attempt))
        directory.mkdir(mode=0o700, exist_ok=True)
        path = directory / WRAPPER_FILE
        tmp = directory / (WRAPPER_FILE + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o700)
        try:
            # Plain writes: a text file object costs more to make than the write.
            view = memoryview(wrapper.encode())
            while view:
                view = view[os.write(fd, view):]
        finally:
            os.close(fd)
        tmp.replace(path)
        return path

    # -- stdin ------------------------------------------------------------------------

    def stdin_size(self, job_id: str) -> int:
        """Return how many stdin bytes have arrived so far."""
        try:
            return self.stdin_path(job_id).stat().st_size
        except FileNotFoundError:
            return 0

    async def write_stdin(
        self, job_id: str, offset: int, chunks: AsyncIterable[bytes], limit: int | None
    ) -> int:
        """Write ``chunks`` into the job's stdin starting at byte ``offset``.

        Bytes once written never change: a job may already have read them (it reads its
        stdin as it arrives). A client that resumes an interrupted upload sends again
        from any offset up to the size received; bytes it resends must be the ones
        received, and only what is new is written. Returns the new size.

        Raises:
            Conflict: ``offset`` is beyond the bytes received so far, or resent bytes
                differ from those received (``stdin_mismatch``).
            PayloadTooLarge: the stdin would exceed ``limit`` bytes; what came before
                the chunk that passed it is kept.
        """
        path = self.stdin_path(job_id)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            size = os.fstat(fd).st_size
            if offset > size:
                raise Conflict(
                    f"offset {offset} is beyond the {size} bytes received",
                    hint=f"resume from offset {size}",
                    code="bad_offset",
                )
            position = offset
            async for chunk in chunks:
                if position < size:
                    overlap = min(len(chunk), size - position)
                    if os.pread(fd, overlap, position) != chunk[:overlap]:
                        raise Conflict(
                            f"the bytes resent at offset {position} differ from those "
                            "received", hint=f"resume from offset {size}",
                            code="stdin_mismatch")
                    position += overlap
                    chunk = chunk[overlap:]
                if not chunk:
                    continue
                if limit is not None and position + len(chunk) > limit:
                    raise PayloadTooLarge(f"stdin is larger than the limit of {limit} bytes")
                view = memoryview(chunk)
                while view:
                    written = os.pwrite(fd, view, position)
                    position += written
                    view = view[written:]
                size = max(size, position)
            return size
        finally:
            os.close(fd)

    def stdin_mark_path(self, job_id: str) -> Path:
        """Return the close mark of the job's stdin: its final size, once complete."""
        return self.job_dir(job_id) / STDIN_MARK

    def close_stdin(self, job_id: str) -> int:
        """Mark the job's stdin complete: flush it to disk, then record its final size
        in the close mark (written by rename, flushed too). Returns the size.

        A job's feeder (:mod:`acjob.feeder`) ends its command's stdin at that size.
        """
        path = self.stdin_path(job_id)
        fd = os.open(path, os.O_RDONLY | os.O_CREAT, 0o600)
        try:
            os.fsync(fd)
            size = os.fstat(fd).st_size
        finally:
            os.close(fd)
        mark = self.stdin_mark_path(job_id)
        tmp = mark.with_name(STDIN_MARK + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, f"{size}\n".encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        tmp.replace(mark)
        directory = os.open(self.job_dir(job_id), os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
        return size

    def closed_stdin_size(self, job_id: str) -> int | None:
        """Return the final size the close mark records, or ``None`` while stdin is open."""
        return read_mark(str(self.stdin_mark_path(job_id)))

    # -- attempt results --------------------------------------------------------------

    def read_exit(self, job_id: str, attempt: int) -> ExitRecord | None:
        """Return how the attempt's wrapper ended, or ``None`` if it has not."""
        try:
            # Looked for at each cycle while the attempt runs: plain os calls, a third
            # of the time of a path's read_text.
            fd = os.open(self.attempt_dir(job_id, attempt) / EXIT_FILE,
                         os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return None
        try:
            data = b""
            while chunk := os.read(fd, 4096):
                data += chunk
        finally:
            os.close(fd)
        fields = data.decode().split()
        try:
            return ExitRecord(int(fields[0]), fields[1] if len(fields) > 1 else None)
        except (ValueError, IndexError):
            return None

    def read_progress(self, job_id: str, attempt: int, known: Stamp | None) -> ProgressRead:
        """Read what the attempt's progress file says, unless it is as it was.

        One ``stat`` when nothing changed since ``known``; otherwise only the file's
        last :data:`~acjob.progress.TAIL_BYTES` bytes are read. Anything but a regular
        file (a FIFO, a symbolic link a job put there) is never opened for reading.

        Returns:
            What was found (see :class:`ProgressRead`).
        """
        path = self.attempt_dir(job_id, attempt) / PROGRESS_FILE
        try:
            info = path.lstat()
        except OSError:
            return _NO_PROGRESS
        if not stat.S_ISREG(info.st_mode):
            return _NO_PROGRESS
        stamp = (info.st_mtime_ns, info.st_size, info.st_ino)
        if stamp == known or info.st_size == 0:
            return ProgressRead(stamp, None, info.st_mtime)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except OSError:
            return _NO_PROGRESS
        try:
            opened = os.fstat(fd)
            if not stat.S_ISREG(opened.st_mode):
                return _NO_PROGRESS
            start = max(0, opened.st_size - TAIL_BYTES)
            tail = os.pread(fd, TAIL_BYTES, start)
        except OSError:
            return _NO_PROGRESS
        finally:
            os.close(fd)
        stamp = (opened.st_mtime_ns, opened.st_size, opened.st_ino)
        return ProgressRead(stamp, parse_tail(tail, cut=start > 0), opened.st_mtime)

    def read_pid(self, job_id: str, attempt: int) -> int | None:
        """Return the wrapper's pid as it recorded it, or ``None``."""
        try:
            return int((self.attempt_dir(job_id, attempt) / PID_FILE).read_text().strip())
        except (FileNotFoundError, ValueError):
            return None

    def fence(self, job_id: str, attempt: int) -> bool:
        """Make sure the attempt's wrapper never runs its command.

        Returns:
            True if the fence went up first (the command did not run and never
            will), False if the wrapper had already claimed the attempt.
        """
        self.create_job(job_id)
        directory = self.attempt_dir(job_id, attempt)
        directory.mkdir(mode=0o700, exist_ok=True)
        claim = directory / CLAIM_DIR
        try:
            # O_EXCL, as the wrapper's noclobber claim: exactly one side creates it (a
            # claim directory left by an older wrapper counts as taken too).
            fd = os.open(claim, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            # The daemon's own fence, put up before a crash, says so; a wrapper's is empty.
            try:
                return claim.read_bytes() == FENCE
            except OSError:  # a claim directory (an older wrapper's)
                return False
        try:
            os.write(fd, FENCE)
        finally:
            os.close(fd)
        return True

    def output_size(self, job_id: str, attempt: int, stream: Stream) -> int:
        """Return the current size of an attempt's stdout or stderr (0 if absent)."""
        try:
            return self.output_path(job_id, attempt, stream).stat().st_size
        except FileNotFoundError:
            return 0

    def remove(self, job_id: str) -> None:
        """Delete the job's files."""
        shutil.rmtree(self.job_dir(job_id), ignore_errors=True)

    def usage_bytes(self) -> int:
        """Return the bytes used under the spool (walks the tree)."""
        total = 0
        for dirpath, _dirs, files in os.walk(self.root):
            for name in files:
                try:
                    total += (Path(dirpath) / name).lstat().st_size
                except FileNotFoundError:
                    continue
        return total
