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
import re
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator

from .errors import ConfigError
from .locations import DEFAULT_RETRY_FOR_S as DEFAULT_RETRY_FOR_S
from .locations import Endpoint as Endpoint
from .locations import config_path as config_path
from .locations import default_state_dir as default_state_dir
from .locations import parse_endpoint as parse_endpoint
from .locations import private_socket as private_socket
from .locations import retry_for
from .locations import runtime_dir as runtime_dir

DEFAULT_IDLE_TIMEOUT = 600.0
#: How many seconds a client's call waits for an unreachable daemon by default.


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
    max_requests: Annotated[int, Field(ge=1)] = 2000
    max_stdin_bytes: Annotated[int, Field(ge=0)] | None = None
    synchronous: Literal["acknowledged", "normal", "full", "extra"] = "acknowledged"
    retention_days: Annotated[float, Field(gt=0)] = 30.0
    stdin_timeout: Annotated[float, Field(ge=0)] = 3600.0
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


def load_config(path: str | Path | None = None) -> Config:
    """Read and validate the configuration (an empty one when there is no file).

    Raises:
        ConfigError: the file is missing (when named), not TOML, or invalid.
    """
    found = path or config_path()
    if found is None:
        return Config()
    path = Path(found)
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
    """Return how many seconds a client's call waits for an unreachable daemon (see
    :func:`acjob.locations.retry_for`).

    Raises:
        ConfigError: ``ACJOB_RETRY_FOR`` is not a number of seconds.
    """
    return retry_for(client.retry_for)


