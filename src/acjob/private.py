"""The private per-user daemon: found, and started when it is not running.

With no daemon configured, every acjob tool talks to a daemon of the user's own on a
Unix socket in the user's runtime directory. The first tool that needs it starts it
(detached, in its own session, logging to ``daemon.log`` in the state directory),
and it stops by itself after an idle time. A lock file makes concurrent starters
start one daemon only.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import select
import socket
import subprocess
import sys
import time
from pathlib import Path

from .errors import ConnectionFailed
from .locations import config_path, default_state_dir, runtime_dir

START_TIMEOUT = 30.0


def is_listening(path: str | Path) -> bool:
    """Tell whether something accepts connections on the Unix socket ``path``."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(str(path))
    except OSError:
        return False
    finally:
        sock.close()
    return True


def ensure_private_daemon(path: str | Path) -> None:
    """Make sure the private daemon listens on ``path``; start it if need be.

    Raises:
        ConnectionFailed: it could not be started (the message names its log).
    """
    if is_listening(path):
        return
    lock_path = Path(runtime_dir()) / "start.lock"
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        if is_listening(path):
            return
        _start(path)
    finally:
        os.close(fd)


def _start(path: str | Path) -> None:
    state = Path(default_state_dir())
    if config_path() is not None:
        # Starting a daemon is rare: its configuration's schema may load here.
        from .config import load_config

        state = load_config().server.state_dir or state
    state.mkdir(mode=0o700, parents=True, exist_ok=True)
    log_path = state / "daemon.log"
    read_fd, write_fd = os.pipe()
    try:
        log_fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        with os.fdopen(log_fd, "ab") as log:
            subprocess.Popen(
                [sys.executable, "-m", "acjob.cli.ac", "serve", "--private",
                 "--ready-fd", str(write_fd)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                pass_fds=(write_fd,), start_new_session=True, close_fds=True,
            )
        os.close(write_fd)
        write_fd = -1
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            left = deadline - time.monotonic()
            ready, _, _ = select.select([read_fd], [], [], max(0.0, left))
            data = os.read(read_fd, 1) if ready else b""
            if data == b"1" or is_listening(path):
                return
            if not ready or data == b"":
                break
    finally:
        os.close(read_fd)
        if write_fd >= 0:
            with contextlib.suppress(OSError):
                os.close(write_fd)
    raise ConnectionFailed(
        f"the private acjob daemon did not start (socket {path})",
        hint=f"read {log_path}, or run 'ac serve' in a terminal to see why",
        code="daemon_start_failed",
    )
