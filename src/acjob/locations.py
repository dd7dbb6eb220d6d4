"""Where acjob's parts are: the configuration file, the private daemon's socket and state,
the address of a daemon; and how long a client waits for one.

Nothing here validates the configuration's contents (:mod:`acjob.config` does, with its
schema), so a client finds its daemon without loading that schema.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

from .errors import ConfigError

#: Seconds a client's call waits for an unreachable daemon, unless told otherwise.
DEFAULT_RETRY_FOR_S = 60.0


def config_path() -> Path | None:
    """Return the configuration file in force, or ``None`` if there is none."""
    explicit = os.environ.get("ACJOB_CONFIG")
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    for candidate in (Path(xdg) / "acjob" / "config.toml", Path("/etc/acjob/config.toml")):
        if candidate.is_file():
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


def runtime_dir() -> Path:
    """Return the private runtime directory (created 0700, owner checked).

    Raises:
        ConfigError: the directory exists but belongs to another user or is open to others.
    """
    base = os.environ.get("XDG_RUNTIME_DIR")
    path = Path(base) / "acjob" if base else Path(f"/tmp/acjob-{os.getuid()}")
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = path.stat()
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


def private_socket() -> Path:
    """Return the per-user daemon's socket path."""
    return runtime_dir() / "acjob.sock"


def handoff_socket(socket_path: str | Path) -> str:
    """Return the socket beside a daemon's Unix socket where a client on the same
    machine is handed a job's open output files (see :mod:`acjob.server.handoff`)."""
    return f"{socket_path}.fd"


def default_state_dir() -> Path:
    """Return the per-user state directory (store and spool)."""
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "acjob"


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where a daemon listens or a client connects.

    Attributes:
        unix: The socket path, for a Unix socket.
        host: The host, for TCP.
        port: The port, for TCP.
    """

    unix: Path | None = None
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
        return Endpoint(unix=Path(path))
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
