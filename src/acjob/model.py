"""Jobs, their states and the pure rules that govern them.

States use the GA4GH TES vocabulary, so the native API and a TES facade agree.
:data:`TRANSITIONS` is the single table of allowed state changes; the store refuses
any other.
"""

from __future__ import annotations

import base64
import re
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    field_serializer,
    field_validator,
)

from .address import check_mail_address
from .errors import InvalidRequest


class State(StrEnum):
    """The life cycle of a job (TES names)."""

    QUEUED = "QUEUED"
    INITIALIZING = "INITIALIZING"
    RUNNING = "RUNNING"
    PAUSED = "PAUSED"
    COMPLETE = "COMPLETE"
    EXECUTOR_ERROR = "EXECUTOR_ERROR"
    SYSTEM_ERROR = "SYSTEM_ERROR"
    CANCELING = "CANCELING"
    CANCELED = "CANCELED"
    PREEMPTED = "PREEMPTED"

    @property
    def is_final(self) -> bool:
        """True once nothing can change the job any more."""
        return self in FINAL_STATES


FINAL_STATES = frozenset(
    {State.COMPLETE, State.EXECUTOR_ERROR, State.SYSTEM_ERROR, State.CANCELED}
)

_Q, _I, _R = State.QUEUED, State.INITIALIZING, State.RUNNING
_CING, _P = State.CANCELING, State.PREEMPTED

#: Allowed changes. ``PREEMPTED`` is the pause between a failed attempt and its
#: retry; ``QUEUED -> QUEUED`` is not a change and is not listed.
TRANSITIONS: dict[State, frozenset[State]] = {
    _Q: frozenset({_I, _R, _CING, State.CANCELED, State.SYSTEM_ERROR}),
    _I: frozenset({_Q, _R, _P, _CING, *FINAL_STATES}),
    _R: frozenset({_P, _CING, *FINAL_STATES}),
    _P: frozenset({_Q, _I, _CING, State.CANCELED, State.SYSTEM_ERROR}),
    _CING: frozenset({State.CANCELED, *FINAL_STATES}),
    State.PAUSED: frozenset(),
    State.COMPLETE: frozenset(),
    State.EXECUTOR_ERROR: frozenset(),
    State.SYSTEM_ERROR: frozenset(),
    State.CANCELED: frozenset(),
}


def can_transition(old: State, new: State) -> bool:
    """Tell whether the table allows ``old -> new``."""
    return new in TRANSITIONS[old]


class FailureKind(StrEnum):
    """Why an attempt ended without an exit status of its own.

    ``EXIT`` is the exception: the command ran and exited non-zero.
    """

    EXIT = "exit"
    LOST = "lost"
    NODE_FAIL = "node_fail"
    PREEMPTED = "preempted"
    TIMEOUT = "timeout"
    BOOT_FAIL = "boot_fail"
    SUBMIT = "submit"
    SPOOL_FULL = "spool_full"


INFRASTRUCTURE_FAILURES = frozenset(
    {FailureKind.LOST, FailureKind.NODE_FAIL, FailureKind.PREEMPTED, FailureKind.BOOT_FAIL}
)

_ID_RE = re.compile(r"[a-z2-7]{26}")


def new_job_id() -> str:
    """Return a fresh job id: 128 random bits, lowercase base32 (26 characters).

    The id is unguessable, so a job URL works as a capability; its alphabet is
    safe in file names, URLs, shell words and scheduler job names.
    """
    return base64.b32encode(secrets.token_bytes(16)).decode().rstrip("=").lower()


def check_job_id(job_id: str) -> str:
    """Return ``job_id`` if it has the shape of an acjob id.

    Raises:
        InvalidRequest: for anything else; such a string never reaches the file system.
    """
    if not _ID_RE.fullmatch(job_id):
        raise InvalidRequest(
            f"{job_id[:64]!r} is not a job id",
            hint="a job id is 26 characters of a-z and 2-7, as printed by acjob -t poll",
            code="invalid_job_id",
        )
    return job_id


def describe_errors(errors: Sequence[Mapping[str, Any]]) -> str:
    """Return the first of pydantic's validation errors as ``where: what``."""
    if not errors:
        return "invalid"
    where = ".".join(str(part) for part in errors[0].get("loc", ()))
    what = str(errors[0].get("msg", "invalid"))
    return f"{where}: {what}" if where else what


_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
#: Strings that reach a shell or the file system: no NUL byte (the schema says so too).
_NO_NUL = r"^[^\x00]*$"


class RetryPolicy(BaseModel):
    """When a failed attempt is followed by another.

    Attributes:
        max_attempts: Attempts in all, the first included.
        on: Failure kinds that allow another attempt. ``exit`` makes a non-zero
            exit status retried too.
    """

    model_config = ConfigDict(extra="forbid")

    max_attempts: Annotated[int, Field(ge=1, le=100)] = 3
    on: frozenset[FailureKind] = INFRASTRUCTURE_FAILURES

    @field_serializer("on")
    def _sorted(self, on: frozenset[FailureKind]) -> list[str]:
        # Sets have no order; a stable form keeps idempotency hashes stable.
        return sorted(k.value for k in on)

    def allows(self, attempt: int, kind: FailureKind) -> bool:
        """Tell whether attempt number ``attempt`` ending with ``kind`` is retried."""
        return attempt < self.max_attempts and kind in self.on


_SCHEDULER_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.@+-]{0,63}$"


class Resources(BaseModel):
    """What a job asks of the compute resource (backends map these to their options).

    ``queue`` is Slurm's partition or Grid Engine's queue (``partition`` is accepted
    as a name for it), ``account`` Slurm's account or Grid Engine's project, and
    ``extra_args`` raw options for the scheduler's submit command, one string per option or
    value (each backend checks their syntax).
    """

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    cpus: Annotated[int, Field(ge=1, le=4096)] | None = None
    memory_mb: Annotated[int, Field(ge=1, le=1 << 30)] | None = None
    time_limit_s: Annotated[int, Field(ge=1, le=10 * 365 * 86400)] | None = None
    queue: Annotated[str, Field(pattern=_SCHEDULER_NAME)] | None = Field(
        default=None, validation_alias=AliasChoices("queue", "partition")
    )
    account: Annotated[str, Field(pattern=_SCHEDULER_NAME)] | None = None
    extra_args: list[Annotated[str, Field(min_length=1, max_length=1024)]] = Field(
        default_factory=list, max_length=64
    )


_EMAIL = r"^[^@\s<>,;]{1,64}@[A-Za-z0-9.-]{1,253}$"


class MailDelivery(BaseModel):
    """Mail the result to ``to`` when the job ends."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["email"] = "email"
    to: Annotated[str, Field(pattern=_EMAIL, max_length=320)]

    @field_validator("to")
    @classmethod
    def _sendable(cls, value: str) -> str:
        # The pattern is the schema's summary; the mail code itself has the last word.
        return check_mail_address(value)


class WebhookDelivery(BaseModel):
    """POST the result, signed, to ``url`` when the job ends."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["webhook"] = "webhook"
    url: Annotated[str, Field(pattern=r"^https?://[\x21-\x7e]+$", max_length=2048)]

    @field_validator("url")
    @classmethod
    def _no_credentials(cls, value: str) -> str:
        # user:password@ would be sent as Basic auth and shown to every client in the
        # job document; the signature is how a receiver knows a callback is genuine.
        if "@" in urlsplit(value).netloc:
            raise ValueError("a webhook URL cannot carry credentials (user:password@): "
                             "it is shown in the job to every client; the receiver checks "
                             "the X-Acjob-Signature made with the daemon's [webhook] secret "
                             "instead")
        return value


Delivery = Annotated[MailDelivery | WebhookDelivery, Field(discriminator="type")]


class JobSpec(BaseModel):
    """What a client asks for when it submits a job.

    ``command`` is either a shell string (run by ``/bin/sh -c``) or an argv list
    that no shell ever sees. With ``stdin="upload"`` the job waits in QUEUED until
    its stdin has been uploaded and closed.
    """

    model_config = ConfigDict(extra="forbid")

    command: Annotated[str, Field(min_length=1, max_length=1 << 20, pattern=_NO_NUL)] | Annotated[
        list[Annotated[str, Field(max_length=1 << 20, pattern=_NO_NUL)]],
        Field(min_length=1, max_length=65536),
    ]
    stdin: Literal["none", "upload"] = "none"
    env: dict[
        Annotated[str, Field(pattern=_ENV_NAME.pattern)],
        Annotated[str, Field(max_length=1 << 20, pattern=_NO_NUL)],
    ] = Field(default_factory=dict, max_length=4096,
              json_schema_extra={"additionalProperties": False})
    workdir: Annotated[str, Field(max_length=4096, pattern=r"^/[^\x00]*$")] | None = None
    backend: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_-]{0,31}$")] | None = None
    resources: Resources = Field(default_factory=Resources)
    retry: RetryPolicy = Field(default_factory=RetryPolicy)
    labels: dict[
        Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")],
        Annotated[str, Field(max_length=256)],
    ] = Field(default_factory=dict, max_length=64,
              json_schema_extra={"additionalProperties": False})
    name: Annotated[str, Field(max_length=256)] | None = None
    deliveries: list[Delivery] = Field(default_factory=list, max_length=16)

    @field_validator("workdir")
    @classmethod
    def _absolute_workdir(cls, value: str | None) -> str | None:
        if value is not None and (not value.startswith("/") or "\0" in value):
            raise ValueError("workdir must be an absolute path")
        return value


@dataclass(frozen=True, slots=True)
class Attempt:
    """One try at running a job on a backend."""

    job_id: str
    number: int
    native_id: str | None = None
    state: str = "submitting"
    exit_code: int | None = None
    failure: FailureKind | None = None
    reason: str | None = None
    started_at: float | None = None
    ended_at: float | None = None


@dataclass(frozen=True, slots=True)
class Job:
    """A job as the store knows it."""

    id: str
    spec: JobSpec
    state: State
    backend: str
    created_at: float
    updated_at: float
    seq: int
    attempt: int = 0
    exit_code: int | None = None
    reason: str | None = None
    stdin_bytes: int | None = None
    stdin_closed: bool = True
    ended_at: float | None = None
    purged_at: float | None = None
    attempts: tuple[Attempt, ...] = field(default=())
    deliveries: tuple[dict[str, Any], ...] = field(default=())

    def public(self) -> dict[str, Any]:
        """Return the JSON form served by the native API."""
        return {
            "id": self.id,
            "state": self.state.value,
            "command": self.spec.command,
            "name": self.spec.name,
            "backend": self.backend,
            "labels": self.spec.labels,
            "resources": self.spec.resources.model_dump(exclude_none=True,
                                                        exclude_defaults=True),
            "retry": {
                "max_attempts": self.spec.retry.max_attempts,
                "on": sorted(k.value for k in self.spec.retry.on),
            },
            "attempt": self.attempt,
            "exit_code": self.exit_code,
            "reason": self.reason,
            "stdin": {"mode": self.spec.stdin, "closed": self.stdin_closed,
                      "bytes": self.stdin_bytes},
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "ended_at": self.ended_at,
            "files_removed_at": self.purged_at,
            "deliveries": list(self.deliveries),
            "seq": self.seq,
            "attempts": [
                {
                    "number": a.number,
                    "native_id": a.native_id,
                    "state": a.state,
                    "exit_code": a.exit_code,
                    "failure": a.failure.value if a.failure else None,
                    "reason": a.reason,
                    "started_at": a.started_at,
                    "ended_at": a.ended_at,
                }
                for a in self.attempts
            ],
        }


def final_state_for_exit(exit_code: int) -> State:
    """Map a command's exit status to its final state."""
    return State.COMPLETE if exit_code == 0 else State.EXECUTOR_ERROR
