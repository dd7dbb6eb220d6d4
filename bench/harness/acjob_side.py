"""acjob under measurement: its own daemon, its Python client and its command-line tool.

The daemon runs on a temporary state directory and Unix socket, as ``bench/run.py``
always started it, with the local backend's slots set to 2 (the peers get two worker
processes); :func:`slurm_daemon` starts another with a ``[backends.slurm]`` table.
"""

from __future__ import annotations

import contextlib
import functools
import os
import select
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import acjob
from harness.common import measure_queue, medians
from harness.processes import Started

SHELL_WORK = "true"
"""A job's command as a shell string: acjob runs it as ``/bin/sh -c true``, the same work
the peers' task does with ``subprocess.run(["sh", "-c", "true"])``."""


class Daemon:
    """An ``ac serve`` of the bench's own.

    Args:
        home: An empty directory with a short path (it holds the Unix socket).
        config: The TOML configuration, less ``[server] state_dir`` (added here).
    """

    def __init__(self, home: Path, config: str = "") -> None:
        home.mkdir(parents=True, exist_ok=True)
        self.home = home
        self.sock = home / "d.sock"
        self.url = f"unix:{self.sock}"
        config_file = home / "acjob.toml"
        config_file.write_text(f'[server]\nstate_dir = "{home / "state"}"\n{config}')
        env = {k: v for k, v in os.environ.items() if not k.startswith(("ACJOB_", "XDG_"))}
        runtime = home / "run"
        runtime.mkdir(mode=0o700)
        env.update(ACJOB_URL=self.url, XDG_RUNTIME_DIR=str(runtime),
                   XDG_CONFIG_HOME=str(home / "config"), XDG_STATE_HOME=str(home / "xdg"))
        self.env = env
        read_fd, write_fd = os.pipe()
        try:
            self.process = Started(
                "acjob daemon",
                [sys.executable, "-m", "acjob.cli.ac", "serve", "--listen", self.url,
                 "--config", str(config_file), "--ready-fd", str(write_fd)],
                home / "daemon.log", env=env, pass_fds=(write_fd,))
        finally:
            os.close(write_fd)
        try:
            ready, _, _ = select.select([read_fd], [], [], 60)
            if not ready or os.read(read_fd, 1) != b"1":
                self.process.stop()
                raise RuntimeError(f"the acjob daemon did not start:\n{self.process.log_tail()}")
        finally:
            os.close(read_fd)

    def stop(self) -> None:
        """Stop the daemon (SIGTERM, then SIGKILL)."""
        self.process.stop()

    def peak_rss_mb(self) -> float:
        """The daemon's peak resident memory so far (VmHWM), in MB."""
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024 / 1e6
        raise RuntimeError("no VmHWM in the daemon's /proc status")

    def cli(self) -> list[str]:
        """The ``acjob`` command, as installed beside this Python."""
        script = Path(sys.executable).parent / "acjob"
        if script.exists():
            return [str(script)]
        return [sys.executable, "-c", "from acjob.cli.acjob import main; main()"]


@contextlib.contextmanager
def daemon(home: Path, config: str = "") -> Iterator[Daemon]:
    """A :class:`Daemon`, stopped when the block ends."""
    d = Daemon(home, config)
    try:
        yield d
    finally:
        d.stop()


class AcjobSystem:
    """acjob through its Python client, as a :class:`harness.common.System`."""

    name = "acjob"

    def __init__(self, url: str, backend: str | None = None) -> None:
        self.url = url
        self.backend = backend
        self.client = acjob.Client(url, autostart=False)

    def submit(self) -> acjob.JobHandle:
        return self.client.submit(SHELL_WORK, backend=self.backend)

    def wait(self, handle: Any) -> None:
        handle.wait()
        b"".join(handle.stdout())

    def ident(self, handle: Any) -> str:
        return str(handle.id)

    def wait_ident(self, ident: str) -> None:
        self.wait(self.client.job(ident))


def queue_figures(d: Daemon, *, runs: int, jobs: int, clients: int,
                  repeat: int) -> dict[str, float]:
    """The figures every system gets (:func:`harness.common.measure_queue`), plus the
    batch: ``jobs`` jobs in one ``submit_many`` call, the call's rate and the rate until
    every job was waited for (each the median of ``repeat`` passes)."""
    system = AcjobSystem(d.url)

    def batch() -> dict[str, float]:
        specs = [{"command": SHELL_WORK} for _ in range(jobs)]
        start = time.perf_counter()
        handles = system.client.submit_many(specs)
        submitted = time.perf_counter()
        for handle in handles:
            system.wait(handle)
        done = time.perf_counter()
        return {"submit_batch": jobs / (submitted - start), "e2e_batch": jobs / (done - start)}

    try:
        figures = measure_queue(system, functools.partial(AcjobSystem, d.url), runs=runs,
                                jobs=jobs, clients=clients, repeat=repeat)
        return {**figures, **medians([batch() for _ in range(repeat)])}
    finally:
        system.client.close()


def shell(command: str | Sequence[str], env: dict[str, str] | None = None,
          ) -> tuple[float, float]:
    """Run ``command``, a pipeline with ``sh -c`` or an argv as it is (no shell started
    before it); return its wall-clock seconds and its peak resident memory in MB (the
    largest process of the pipeline). Raises if it fails."""
    argv = ["sh", "-c", command] if isinstance(command, str) else list(command)
    with tempfile.TemporaryFile() as errors:
        start = time.perf_counter()
        proc = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stderr=errors)
        # wait4 gives the pipeline's largest resident set (its waited-for descendants').
        _, status, usage = os.wait4(proc.pid, 0)
        elapsed = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            errors.seek(0)
            message = errors.read().decode(errors="replace").strip()[-500:]
            raise RuntimeError(f"{command!r} failed ({proc.returncode}): {message}")
    return elapsed, usage.ru_maxrss * 1024 / 1e6


def first_byte_seconds(argv: Sequence[str], **popen: Any) -> float:
    """Seconds from starting ``argv`` until the first byte of its stdout; the rest is read
    and thrown away, and the process waited for. Raises if it fails or prints nothing."""
    start = time.perf_counter()
    proc = subprocess.Popen(list(argv), stdout=subprocess.PIPE, **popen)
    assert proc.stdout is not None
    first = proc.stdout.read(1)
    elapsed = time.perf_counter() - start
    proc.stdout.read()
    proc.wait()
    if not first or proc.returncode != 0:
        raise RuntimeError(f"{list(argv)} printed nothing or failed ({proc.returncode})")
    return elapsed
