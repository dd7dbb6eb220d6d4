"""Configuration: a TOML file, environment overrides, and the private per-user defaults.

The file is ``$ACJOB_CONFIG``, else ``$XDG_CONFIG_HOME/acjob/config.toml``, else
``/etc/acjob/config.toml``; none is needed. ``ACJOB_URL`` and ``ACJOB_TOKEN``
override where clients connect and with which token.

With nothing configured, everything lives in per-user places: the socket in
``$XDG_RUNTIME_DIR/acjob/`` (else ``/tmp/acjob-<uid>/``, 0700) and the state (store
and spool) in ``$XDG_STATE_HOME/acjob/`` (else ``~/.local/state/acjob/``).
"""

from __future__ import annotations

import difflib
import ipaddress
import os
import re
import stat
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator

from .errors import ConfigError

DEFAULT_IDLE_TIMEOUT = 600.0
#: How many seconds a client's call waits for an unreachable daemon by default.
DEFAULT_RETRY_FOR_S = 60.0


class ServerConfig(BaseModel):
    """The ``[server]`` table."""

    model_config = ConfigDict(extra="forbid")

    listen: str | None = None
    token: str | None = Field(default=None, repr=False)
    state_dir: Path | None = None
    spool: Path | None = None
    backend: str = "local"
    idle_timeout: Annotated[float, Field(ge=0)] = 0.0
    max_request_bytes: Annotated[int, Field(ge=1024)] = 1 << 20
    max_stdin_bytes: Annotated[int, Field(ge=0)] | None = None
    synchronous: Literal["acknowledged", "normal", "full", "extra"] = "acknowledged"
    retention_days: Annotated[float, Field(gt=0)] = 30.0
    hold: bool = False
    log_level: Literal["debug", "info", "warning", "error"] = "info"


class MailConfig(BaseModel):
    """The ``[mail]`` table: how results are mailed."""

    model_config = ConfigDict(extra="forbid")

    host: str = "localhost"
    port: Annotated[int, Field(ge=1, le=65535)] | None = None
    security: Literal["none", "starttls", "tls"] = "none"
    user: str | None = None
    password: str | None = Field(default=None, repr=False)
    sender: str = "acjob@localhost"
    max_attachment_bytes: Annotated[int, Field(ge=0)] = 10 << 20
    timeout: Annotated[float, Field(gt=0)] = 60.0


class WebhookConfig(BaseModel):
    """The ``[webhook]`` table: how callbacks are signed."""

    model_config = ConfigDict(extra="forbid")

    secret: str | None = Field(default=None, repr=False)
    timeout: Annotated[float, Field(gt=0)] = 30.0


class DeliveryConfig(BaseModel):
    """The ``[delivery]`` table: how failed deliveries are retried."""

    model_config = ConfigDict(extra="forbid")

    first_retry: Annotated[float, Field(gt=0)] = 10.0
    max_retry: Annotated[float, Field(gt=0)] = 3600.0
    deadline_hours: Annotated[float, Field(gt=0)] = 72.0


class TesConfig(BaseModel):
    """The ``[tes]`` table: how TES executors run and how the service names itself."""

    model_config = ConfigDict(extra="forbid")

    #: None: executors run on the host, ``image`` ignored. Else the command that runs
    #: one executor, e.g. ``["apptainer", "exec", "{mounts}", "--pwd", "{workdir}",
    #: "docker://{image}"]``; ``{mounts}`` becomes ``mount_flag HOST:CONTAINER`` pairs,
    #: ``--`` is put before the item holding ``{image}`` (the image ends the runtime's
    #: options), and the executor's command follows (see acjob.tes.container).
    runtime: Annotated[list[str], Field(min_length=1)] | None = None
    mount_flag: str = "-v"
    #: The backend for tasks that name none (default: ``[server] backend``).
    backend: str | None = None
    organization_name: str = "acjob"
    #: An http(s) URL, as GA4GH service-info requires; ``None``: the service's own.
    organization_url: str | None = None

    @field_validator("organization_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"https?://[\x21-\x7e]+", value):
            raise ValueError("not an http:// or https:// URL, which GA4GH service-info "
                             "requires (unset, it is the service's own)")
        return value


class ClientConfig(BaseModel):
    """The ``[client]`` table."""

    model_config = ConfigDict(extra="forbid")

    url: str | None = None
    token: str | None = Field(default=None, repr=False)
    #: Seconds a call waits for an unreachable daemon (``ACJOB_RETRY_FOR`` overrides).
    retry_for: Annotated[float, Field(ge=0, allow_inf_nan=False)] | None = None


class Config(BaseModel):
    """The whole configuration file.

    Attributes:
        source: The file it was read from (``None``: defaults only), which every error
            about it names.
    """

    model_config = ConfigDict(extra="forbid")
    _source: Path | None = PrivateAttr(default=None)

    @property
    def source(self) -> Path | None:
        """The file this configuration was read from, if any."""
        return self._source

    server: ServerConfig = Field(default_factory=ServerConfig)
    client: ClientConfig = Field(default_factory=ClientConfig)
    mail: MailConfig = Field(default_factory=MailConfig)
    webhook: WebhookConfig = Field(default_factory=WebhookConfig)
    delivery: DeliveryConfig = Field(default_factory=DeliveryConfig)
    tes: TesConfig = Field(default_factory=TesConfig)
    backends: dict[str, dict[str, Any]] = Field(default_factory=dict)


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


def load_config(path: Path | None = None) -> Config:
    """Read and validate the configuration (an empty one when there is no file).

    Raises:
        ConfigError: the file is missing (when named), not TOML, or invalid.
    """
    path = path or config_path()
    if path is None:
        return Config()
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError as exc:
        raise ConfigError(
            f"the configuration file {path} does not exist",
            hint="create it, or unset ACJOB_CONFIG",
        ) from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}",
                          hint='fix that line: tables are [name], keys key = value, text in '
                               'quotes (state_dir = "/var/lib/acjob")') from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}",
                          hint="make it a readable UTF-8 text file") from exc
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        message, hint = _explain(exc.errors())
        raise ConfigError(f"{path}: {message}", hint=hint) from exc
    config._source = path
    return config


def _explain(errors: list[Any]) -> tuple[str, str]:
    """Say the first of a configuration's validation errors with its table and key, and
    what to try (for an unknown key: the known key it is closest to)."""
    first = next((e for e in errors if e.get("type") == "extra_forbidden"), errors[0])
    loc = [str(part) for part in first.get("loc", ())]
    table, key = (".".join(loc[:-1]), loc[-1]) if loc else ("", "")
    see = "the keys are described in docs/operations.md"
    if first.get("type") != "extra_forbidden":
        what = str(first.get("msg", "invalid"))
        return (f"[{table}] {key}: {what}" if table else f"{key}: {what}"), see
    model: type[BaseModel] = Config
    for part in loc[:-1]:
        field = model.model_fields.get(part)
        inner = field.annotation if field is not None else None
        if not (isinstance(inner, type) and issubclass(inner, BaseModel)):
            break
        model = inner
    close = difflib.get_close_matches(key, list(model.model_fields), n=1)
    what = f"unknown key {key!r} in [{table}]" if table else f"unknown table [{key}]"
    return what, (f"did you mean {close[0]!r}? " if close else "") + see


def retry_for_setting(client: ClientConfig) -> float:
    """Return how many seconds a client's call waits for an unreachable daemon:
    ``ACJOB_RETRY_FOR``, else ``[client] retry_for``, else a minute.

    Raises:
        ConfigError: ``ACJOB_RETRY_FOR`` is not a number of seconds.
    """
    text = os.environ.get("ACJOB_RETRY_FOR", "").strip()
    if not text:
        return DEFAULT_RETRY_FOR_S if client.retry_for is None else client.retry_for
    try:
        seconds = float(text)
    except ValueError:
        seconds = -1.0
    if not 0 <= seconds < float("inf"):
        raise ConfigError(f"ACJOB_RETRY_FOR={text[:32]!r} is not a number of seconds",
                          hint="ACJOB_RETRY_FOR=60 waits a minute for the daemon; 0 not at all")
    return seconds


# -- where things are ---------------------------------------------------------------


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
