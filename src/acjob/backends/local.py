"""The local backend: jobs as processes on this machine, a bounded number at a time.

Each attempt's wrapper runs in a session of its own (``setsid``), detached from the
daemon's stdio, so it outlives the daemon. The native id is
``<boot id>:<pid>:<start time>``: a pid alone is reused by the kernel, the start
time (in clock ticks since boot, from ``/proc/<pid>/stat``) and the boot id make
the id name one process only. Exits are noticed through a pidfd, for children and
for processes re-attached after a daemon restart alike, so there is no per-job
polling.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
from collections.abc import Callable, Collection, Mapping
from pathlib import Path
from typing import Any

from ..errors import ConfigError, InvalidRequest, SubmitFailed
from ..model import Attempt, ExitRecord, Job, JobSpec, Observation
from ..spool import Spool
from .base import job_environment

_BOOT_ID_PATH = Path("/proc/sys/kernel/random/boot_id")
#: More than a process's ``/proc/PID/stat`` line ever holds.
_STAT_BYTES = 4096


def boot_id() -> str:
    """Return a short id of the current boot."""
    try:
        return _BOOT_ID_PATH.read_text().strip().replace("-", "")[:12]
    except OSError:
        return "noboot"


def process_start_time(pid: int) -> int | None:
    """Return the process's start time in clock ticks since boot, or ``None`` if absent.

    A zombie (ended, not yet reaped) counts as absent.
    """
    try:
        fd = os.open(f"/proc/{pid}/stat", os.O_RDONLY | os.O_CLOEXEC)
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    try:
        # One read: the line is well under a KiB (a command name is at most 15 bytes,
        # the rest numbers), and the kernel hands it over whole. Plain os calls: a
        # third of the time of a path's read_bytes, and this runs at each start.
        data = os.read(fd, _STAT_BYTES)
    except ProcessLookupError:
        return None
    finally:
        os.close(fd)
    # The command name (field 2) may contain spaces and parentheses: split after it.
    fields = data[data.rfind(b")") + 2 :].split()
    if fields[0] in (b"Z", b"X"):
        return None
    return int(fields[19])


def _start(wrapper: Path, env: Mapping[str, str]) -> tuple[subprocess.Popen[bytes], int | None]:
    """Start the wrapper in a session of its own; return its process and start time.

    Run in a worker thread, the loop serving requests meanwhile: ``Popen`` waits for
    the child's exec (``vfork`` holds the parent until then), which takes a millisecond
    or more on a busy machine, and the start time is read here too, off the loop.
    """
    proc = subprocess.Popen(
        ["/bin/sh", str(wrapper)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        close_fds=True,
        cwd=wrapper.parent,
        env=env,
    )
    return proc, process_start_time(proc.pid)


def _group_exists(pgid: int) -> bool:
    """Tell whether any process is left in the process group ``pgid``.

    The kernel does not hand out a pid while a process group of that id exists,
    so a leader's id names its group for as long as anything in it lives.
    """
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _positive(options: Mapping[str, Any], key: str, default: float) -> float:
    value = options.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise ConfigError(f"[backends.local] {key} = {value!r}: not a number of seconds",
                          hint=f"write {key} = {default:g} (a number above 0)")
    return float(value)


def parse_native_id(native_id: str) -> tuple[str, int, int] | None:
    """Split ``boot:pid:start``; ``None`` if malformed."""
    parts = native_id.split(":")
    if len(parts) != 3 or not parts[1].isdigit() or not parts[2].isdigit():
        return None
    return parts[0], int(parts[1]), int(parts[2])


class LocalBackend:
    """Runs wrappers as local processes; see the module docstring.

    Options (``[backends.local]``): ``slots`` (default: the CPU count),
    ``kill_grace`` (seconds between SIGTERM and SIGKILL on cancel, default 10).
    """

    name = "local"
    lost_grace = 0.0
    refusal_tries = 1
    notifies_exits = True
    enforces_time_limits = False
    runs_on_submit = True
    ignored_signals: tuple[str, ...] = ()

    def __init__(self, spool: Spool, options: Mapping[str, Any]) -> None:
        unknown = set(options) - {"slots", "kill_grace", "poll_interval"}
        if unknown:
            raise ConfigError(f"unknown key(s) in [backends.local]: {sorted(unknown)}",
                              hint="its keys are slots, kill_grace and poll_interval")
        slots = options.get("slots", os.cpu_count() or 1)
        if not isinstance(slots, int) or isinstance(slots, bool) or slots < 1:
            raise ConfigError(f"[backends.local] slots = {slots!r}: not a whole number of "
                              "slots", hint="write slots = 8 (at least 1; unset, the CPU count)")
        self.capacity: int | None = slots
        self.kill_grace = _positive(options, "kill_grace", 10.0)
        # Exits are notified; the poll is only a safety net.
        self.poll_interval = _positive(options, "poll_interval", 30.0)
        self.max_poll_interval = self.poll_interval
        self._spool = spool
        self._boot = boot_id()
        self._wake: Callable[[], None] = lambda: None
        self._children: dict[int, subprocess.Popen[bytes]] = {}
        self._watched: dict[int, int] = {}  # pid -> pidfd
        self._loop: asyncio.AbstractEventLoop | None = None
        # The daemon never changes its own environment: taken once, not at each start.
        self._environment = job_environment()

    def validate(self, spec: JobSpec) -> None:
        """Refuse scheduler options, which mean nothing to local processes."""
        res = spec.resources
        if res.cpus is not None and self.capacity is not None and res.cpus > self.capacity:
            raise InvalidRequest(
                f"the job asks for {res.cpus} cpus; the local backend has {self.capacity} slots",
                hint="ask for fewer cpus, or raise [backends.local] slots",
                code="invalid_resources",
            )
        if res.queue or res.account or res.extra_args:
            raise InvalidRequest(
                "the local backend has no queues, accounts or scheduler options",
                hint="drop queue/account/extra_args, or choose a scheduler backend",
                code="invalid_resources",
            )

    async def start(self, wake: Callable[[], None]) -> None:
        """Remember how to wake the monitor."""
        self._wake = wake
        self._loop = asyncio.get_running_loop()

    async def close(self) -> None:
        """Stop watching; the processes go on."""
        for pid in list(self._watched):
            self._unwatch(pid)

    async def submit(self, job: Job, attempt: int, wrapper: Path) -> str:
        """Start the wrapper in a new session and return its native id."""
        try:
            proc, start = await asyncio.to_thread(_start, wrapper, self._environment)
        except OSError as exc:
            raise SubmitFailed(f"cannot start the job: {exc}") from exc
        self._children[proc.pid] = proc
        if start is None:
            # Already ended (and a zombie): the exit file tells the rest.
            start = 0
        self._watch(proc.pid)
        return f"{self._boot}:{proc.pid}:{start}"

    async def poll(self, native_ids: Collection[str]) -> Mapping[str, Observation]:
        """Check each process by pid and start time; watch those found alive."""
        result: dict[str, Observation] = {}
        for native_id in native_ids:
            pid = self._alive(native_id)
            parsed = parse_native_id(native_id)
            if pid is None and parsed is not None and parsed[0] == self._boot \
                    and _group_exists(parsed[1]):
                # The wrapper is gone but processes it started live on (they ignored
                # a SIGTERM): not over until they are gone too.
                result[native_id] = Observation("running")
                if self._loop is not None:
                    self._loop.call_later(1.0, self._wake)
            elif pid is None:
                result[native_id] = Observation("gone")
            else:
                self._watch(pid)
                result[native_id] = Observation("running")
        return result

    async def find(self, job: Job, attempt: int) -> str | None:
        """Find the attempt's wrapper from the pid it recorded, if it still runs."""
        pid = self._spool.read_pid(job.id, attempt)
        if pid is None:
            return None
        start = process_start_time(pid)
        wrapper = str(self._spool.wrapper_path(job.id, attempt))
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            return None
        if start is None or wrapper.encode() not in cmdline:
            return None
        return f"{self._boot}:{pid}:{start}"

    async def explain(self, job: Job, attempt: Attempt,
                      record: ExitRecord | None) -> Observation | None:
        """A local process leaves nothing more to ask about."""
        return None

    async def cancel(self, native_id: str) -> None:
        """Send SIGTERM to the job's process group, and SIGKILL to what is left of it
        after the grace (processes that ignore SIGTERM included)."""
        parsed = parse_native_id(native_id)
        if parsed is None or parsed[0] != self._boot:
            return
        pgid = parsed[1]
        if self._alive(native_id) is None and not _group_exists(pgid):
            return
        self._signal_group(pgid, signal.SIGTERM)
        if self._loop is not None:
            self._loop.call_later(self.kill_grace, self._signal_group, pgid, signal.SIGKILL)

    # -- internals --------------------------------------------------------------------

    def _alive(self, native_id: str) -> int | None:
        parsed = parse_native_id(native_id)
        if parsed is None or parsed[0] != self._boot:
            return None
        _, pid, start = parsed
        now = process_start_time(pid)
        if now is None or (start and now != start):
            return None
        return pid

    @staticmethod
    def _signal_group(pid: int, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, sig)

    def _watch(self, pid: int) -> None:
        if pid in self._watched or self._loop is None:
            return
        try:
            pidfd = os.pidfd_open(pid)
        except ProcessLookupError:
            self._reap(pid)
            self._wake()
            return
        self._watched[pid] = pidfd
        self._loop.add_reader(pidfd, self._exited, pid)

    def _exited(self, pid: int) -> None:
        self._unwatch(pid)
        self._reap(pid)
        self._wake()

    def _unwatch(self, pid: int) -> None:
        pidfd = self._watched.pop(pid, None)
        if pidfd is not None:
            if self._loop is not None:
                self._loop.remove_reader(pidfd)
            os.close(pidfd)

    def _reap(self, pid: int) -> None:
        proc = self._children.pop(pid, None)
        if proc is not None:
            proc.poll()
