"""Where acjob's parts are: the configuration file, the private daemon's socket and state,
the address of a daemon; and how long a client waits for one.

Nothing here validates the configuration's contents (:mod:`acjob.config` does, with its
schema), so a client finds its daemon without loading that schema; paths are strings,
made with :mod:`os.path`, so it finds it without loading :mod:`pathlib` either (a few
milliseconds of every start of ``acjob``).
"""

from __future__ import annotations

import os
import stat
from typing import NamedTuple

from .errors import ConfigError

#: Seconds a client's call waits for an unreachable daemon, unless told otherwise.
DEFAULT_RETRY_FOR_S = 60.0


def config_path() -> str | None:
    """Return the configuration file in force, or ``None`` if there is none."""
    explicit = os.environ.get("ACJOB_CONFIG")
    if explicit:
        return explicit
    xdg = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    for candidate in (os.path.join(xdg, "acjob", "config.toml"), "/etc/acjob/config.toml"):
        if os.path.isfile(candidate):
            return candidate
    return None


def retry_for(configured: float | None) -> float:
    """Return how many seconds a client's call waits for an unreachable daemon:
    ``ACJOB_RETRY_FOR``, else ``configured`` (``[client] retry_for``), else a minute.

    Raises:
        ConfigError: ``ACJOB_RETRY_FOR`` is not a number of seconds.
    """
    text = os.environ.get("ACJOB_RETRY_FOR", "").strip()
    if not text:
        return DEFAULT_RETRY_FOR_S if configured is None else configured
    try:
        seconds = float(text)
    except ValueError:
        seconds = -1.0
    if not 0 <= seconds < float("inf"):
        raise ConfigError(f"ACJOB_RETRY_FOR={text[:32]!r} is not a number of seconds",
                          hint="ACJOB_RETRY_FOR=60 waits a minute for the daemon; 0 not at all")
    return seconds


def runtime_dir() -> str:
    """Return the private runtime directory (created 0700, owner checked).

    Raises:
        ConfigError: the directory exists but belongs to another user or is open to others.
    """
    base = os.environ.get("XDG_RUNTIME_DIR")
    path = os.path.join(base, "acjob") if base else f"/tmp/acjob-{os.getuid()}"
    os.makedirs(path, mode=0o700, exist_ok=True)
    info = os.stat(path)
    if info.st_uid != os.getuid():
        raise ConfigError(
            f"{path} belongs to another user",
            hint="set XDG_RUNTIME_DIR to a directory of your own, or ACJOB_URL to a daemon",
        )
    if stat.S_IMODE(info.st_mode) & 0o077:
        raise ConfigError(
            f"{path} is open to other users (mode {stat.S_IMODE(info.st_mode):04o}): the "
            "private daemon's socket must not be",
            hint=f"chmod 700 {path}",
        )
    return path


def private_socket() -> str:
    """Return the per-user daemon's socket path."""
    return os.path.join(runtime_dir(), "acjob.sock")


def handoff_socket(socket_path: str | os.PathLike[str]) -> str:
    """Return the socket beside a daemon's Unix socket where a client on the same
    machine is handed a job's open output files (see :mod:`acjob.server.handoff`)."""
    return f"{os.fspath(socket_path)}.fd"


def default_state_dir() -> str:
    """Return the per-user state directory (store and spool)."""
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"),
                                                            ".local", "state")
    return os.path.join(base, "acjob")


class Endpoint(NamedTuple):
    """Where a daemon listens or a client connects (a named tuple: a dataclass would
    cost every start of a client half a millisecond to make).

    Attributes:
        unix: The socket path, for a Unix socket.
        host: The host, for TCP.
        port: The port, for TCP.
    """

    unix: str | None = None
    host: str | None = None
    port: int | None = None

    @property
    def url(self) -> str:
        """The endpoint as ``unix:/path`` or ``http://host:port``."""
        if self.unix is not None:
            return f"unix:{self.unix}"
        host = f"[{self.host}]" if self.host and ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def is_loopback(self) -> bool:
        """True for a Unix socket or a loopback address."""
        if self.unix is not None:
            return True
        if self.host == "localhost":
            return True
        try:
            import ipaddress  # only the daemon asks: a client need not load it

            return ipaddress.ip_address(self.host or "").is_loopback
        except ValueError:
            return False


def parse_endpoint(text: str) -> Endpoint:
    """Parse ``unix:/path``, ``http://host:port`` or ``host:port``.

    Raises:
        ConfigError: anything else.
    """
    text = text.strip()
    if text.startswith("unix:"):
        path = text[5:]
        if not path.startswith("/"):
            raise ConfigError(f"{text!r}: a socket path must be absolute",
                              hint="write unix:/absolute/path.sock")
        if len(path.encode()) > 100:
            raise ConfigError(f"the socket path {path} is too long for a Unix socket",
                              hint="use a path under 100 bytes")
        return Endpoint(unix=path)
    rest = text.removeprefix("http://")
    if rest.startswith("https://"):
        raise ConfigError("acjob speaks plain HTTP; put TLS in a reverse proxy",
                          hint="use http://HOST:PORT behind the proxy")
    host, sep, port = rest.rstrip("/").rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"{text!r} is not an address",
                          hint="write unix:/path.sock, HOST:PORT or http://HOST:PORT")
    return Endpoint(host=host, port=int(port))
