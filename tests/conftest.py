"""Shared fixtures: a real ``ac serve`` daemon in a subprocess, and the tools run against it."""

from __future__ import annotations

import contextlib
import os
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

STARTUP_TIMEOUT = 30.0


@dataclass
class Daemon:
    """A running ``ac serve`` subprocess and how to reach it."""

    state_dir: Path
    url: str
    env: dict[str, str]
    extra_args: list[str] = field(default_factory=list)
    config: Path | None = None
    proc: subprocess.Popen[bytes] | None = None

    @property
    def log(self) -> Path:
        return self.state_dir.parent / "daemon.log"

    def start(self) -> None:
        """Start the daemon and wait until its socket accepts connections."""
        read_fd, write_fd = os.pipe()
        args = [sys.executable, "-m", "acjob.cli.ac", "serve", "--listen", self.url.removeprefix("http://"),
                "--ready-fd", str(write_fd), *self.extra_args]
        if self.config is not None:
            args += ["--config", str(self.config)]
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(args, env=self.env, stdout=log, stderr=log,
                                         pass_fds=(write_fd,), start_new_session=True)
        os.close(write_fd)
        try:
            ready, _, _ = select.select([read_fd], [], [], STARTUP_TIMEOUT)
            data = os.read(read_fd, 1) if ready else b""
        finally:
            os.close(read_fd)
        if data != b"1":
            self.proc.kill()
            raise RuntimeError(f"daemon did not start:\n{self.log.read_text()}")

    def kill9(self) -> None:
        """Kill the daemon with SIGKILL (its jobs live on in their own sessions)."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        """Stop the daemon gracefully (SIGTERM), or kill it if it hangs."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def run(self, *args: str, input: bytes | None = None, timeout: float = 120,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[bytes]:
        """Run one of the tools (``acjob``, ``acpoll``, ``ac``) against this daemon."""
        tool, *rest = args
        module = {"acjob": "acjob.cli.acjob", "acpoll": "acjob.cli.acpoll", "ac": "acjob.cli.ac"}
        cmd = [sys.executable, "-c", f"from {module[tool]} import main; main()", *rest]
        return subprocess.run(cmd, input=input if input is not None else b"",
                              capture_output=True, timeout=timeout, env=env or self.env)


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that is free now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def tool_env(tmp: Path, **extra: str) -> dict[str, str]:
    """An environment isolated from the user's own acjob (no config, private dirs in tmp)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ACJOB_", "XDG_"))}
    runtime = tmp / "run"
    runtime.mkdir(mode=0o700, exist_ok=True)
    env.update(XDG_RUNTIME_DIR=str(runtime), XDG_STATE_HOME=str(tmp / "state"),
               XDG_CONFIG_HOME=str(tmp / "config"), **extra)
    return env


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    """A temporary directory with a short path (Unix socket paths are limited).

    Jobs a test left running (their wrappers live under this directory, and outlive a
    stopped daemon by design) are stopped when it ends: none of them may spin on through
    the rest of the suite.
    """
    import tempfile

    with tempfile.TemporaryDirectory(prefix="acj") as name:
        try:
            yield Path(name)
        finally:
            _stop_jobs_under(Path(name))


def _stop_jobs_under(root: Path) -> None:
    """Kill the process group of every local job whose wrapper lives under ``root``
    (each attempt runs in a session, hence a group, of its own)."""
    marker = f"{root}/".encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if len(argv) > 1 and argv[1].startswith(marker) and argv[1].endswith(b"/job.sh"):
            with contextlib.suppress(OSError):
                os.killpg(int(entry.name), signal.SIGKILL)


@pytest.fixture
def daemon(short_tmp: Path) -> Iterator[Daemon]:
    """A daemon on a Unix socket of its own, with its own state directory."""
    state = short_tmp / "daemon-state"
    sock = short_tmp / "d.sock"
    config = short_tmp / "daemon.toml"
    # No safety-net polls: every exit and cancel must be noticed through events.
    config.write_text(f'[server]\nstate_dir = "{state}"\n'
                      "[backends.local]\npoll_interval = 3600\nkill_grace = 1\n")
    env = tool_env(short_tmp, ACJOB_URL=f"unix:{sock}")
    d = Daemon(state_dir=state, url=f"unix:{sock}", env=env, config=config)
    d.start()
    try:
        yield d
    finally:
        d.stop()


def configured_daemon(short_tmp: Path, server: str = "", more: str = "") -> Iterator[Daemon]:
    """Run a daemon on a Unix socket of its own whose configuration has ``server`` in its
    ``[server]`` table and ``more`` after it (other tables); stop it afterwards. For a
    fixture: ``yield from configured_daemon(short_tmp, "hold = true\n")``."""
    state = short_tmp / "state"
    sock = short_tmp / "d.sock"
    config = short_tmp / "d.toml"
    config.write_text(f'[server]\nstate_dir = "{state}"\n{server}{more}')
    d = Daemon(state_dir=state, url=f"unix:{sock}", config=config,
               env=tool_env(short_tmp, ACJOB_URL=f"unix:{sock}"))
    d.start()
    try:
        yield d
    finally:
        d.stop()


def wait_for(predicate, timeout: float = 30.0, what: str = "condition"):  # type: ignore[no-untyped-def]
    """Poll ``predicate`` until it returns a truthy value (for state outside our control)."""
    deadline = time.monotonic() + timeout
    delay = 0.01
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(delay)
        delay = min(delay * 2, 0.5)


@contextlib.contextmanager
def client_for(d: Daemon):  # type: ignore[no-untyped-def]
    """An ``acjob.Client`` connected to the daemon."""
    import acjob

    with acjob.Client(d.url) as client:
        yield client
