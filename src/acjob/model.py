"""Jobs, their states and the pure rules that govern them.

States use the GA4GH TES vocabulary, so the native API and a TES facade agree.
:data:`TRANSITIONS` is the single table of allowed state changes; the store refuses
any other.
"""

from __future__ import annotations

import functools
import re
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
    SerializerFunctionWrapHandler,
    field_serializer,
    field_validator,
    model_serializer,
)

from .address import check_mail_address
from .ids import check_job_id as check_job_id
from .ids import new_job_id as new_job_id
from .progress import MIN_CALLBACK_INTERVAL, Progress
from .states import FINAL_STATES as FINAL_STATES
from .states import INFRASTRUCTURE_FAILURES as INFRASTRUCTURE_FAILURES
from .states import OWN_FAILURES as OWN_FAILURES
from .states import TRANSITIONS as TRANSITIONS
from .states import FailureKind as FailureKind
from .states import State as State
from .states import can_transition as can_transition


def describe_errors(errors: Sequence[Mapping[str, Any]]) -> str:
    """Return the first of pydantic's validation errors as ``where: what``.

    A union (a command is a string or a list of words) is reported by pydantic once per
    branch: the branches whose type the input does not have are left out, and so are
    the names pydantic gives the branches (``constrained-str``), the ``[key]`` marker of
    a mapping's key and FastAPI's ``body``. So ``["a"] * 70000`` as a command reads
    ``command: List should have at most 65536 items``, not "Input should be a valid
    string".
    """
    if not errors:
        return "invalid"
    relevant = [e for e in errors if not str(e.get("type", "")).endswith("_type")]
    first = (relevant or list(errors))[0]
    loc = list(first.get("loc", ()))
    if loc[:1] == ["body"]:
        loc = loc[1:]
    where = ".".join(str(part) for part in loc if not _BRANCH.search(str(part)))
    what = str(first.get("msg", "invalid"))
    return f"{where}: {what}" if where else what


#: The names pydantic gives a union's branches and a mapping's keys in an error's place.
_BRANCH = re.compile(r"\[|^constrained-|^function-|^(str|int|float|bool|list|dict)$")


_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
#: Strings that reach a shell or the file system: no NUL byte (the schema says so too).
_NO_NUL = r"^[^\x00]*$"


def sorted_kinds(kinds: frozenset[FailureKind]) -> list[str]:
    """Return the names of ``kinds`` in order: a set's stable form (a retry policy's
    ``on``, in its JSON and in each job's spec as the store keeps it)."""
    return list(_sorted_kinds(kinds))


@functools.cache
def _sorted_kinds(kinds: frozenset[FailureKind]) -> tuple[str, ...]:
    # Kept for each set met (there are 256 at most): a batch of jobs shows the same one
    # a thousand times, and an enum member's value is a slow property.
    return tuple(sorted(k.value for k in kinds))


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
        return sorted_kinds(on)

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
    """POST the result, signed, to ``url`` when the job ends.

    With ``progress_interval``, the job's progress is posted to ``url`` too while it
    runs, at most once per that many seconds (see docs/deliveries.md).
    """

    model_config = ConfigDict(extra="forbid")

    type: Literal["webhook"] = "webhook"
    url: Annotated[str, Field(pattern=r"^https?://[\x21-\x7e]+$", max_length=2048)]
    progress_interval: Annotated[
        int, Field(ge=MIN_CALLBACK_INTERVAL, le=86400)] | None = None

    @model_serializer(mode="wrap")
    def _without_unset_progress(self, handler: SerializerFunctionWrapHandler) -> Any:
        # A delivery without progress callbacks serialises as before they existed, so
        # the request hashes of idempotent submissions made before stay the same.
        data = handler(self)
        if isinstance(data, dict) and data.get("progress_interval") is None:
            data.pop("progress_interval", None)
        return data

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

    @field_validator("workdir", mode="before")
    @classmethod
    def _absolute_workdir(cls, value: Any) -> Any:
        # Before the schema's pattern, so that the error says why in words.
        if isinstance(value, str) and (not value.startswith("/") or "\0" in value):
            raise ValueError("must be an absolute path: the daemon cannot know where a "
                             "relative one starts")
        return value


class AttemptState(StrEnum):
    """Where one attempt stands.

    ``SUBMITTING`` is recorded before the backend is called (the intent), and
    ``SUBMITTED`` once the backend gave its id; ``ABANDONED`` marks an attempt that
    provably never ran (its fence went up first); ``ENDED`` is final.
    """

    SUBMITTING = "submitting"
    SUBMITTED = "submitted"
    RUNNING = "running"
    ENDED = "ended"
    ABANDONED = "abandoned"


@dataclass(frozen=True, slots=True)
class Attempt:
    """One try at running a job on a backend."""

    job_id: str
    number: int
    native_id: str | None = None
    state: AttemptState = AttemptState.SUBMITTING
    exit_code: int | None = None
    failure: FailureKind | None = None
    reason: str | None = None
    started_at: float | None = None
    ended_at: float | None = None
    progress: Progress | None = None


@dataclass(frozen=True, slots=True)
class ExitRecord:
    """What an attempt's wrapper wrote on exit.

    Attributes:
        code: The command's exit status (128+N if it was killed by signal N).
        signal: ``TERM``, ``INT``, ``HUP`` or ``USR2`` if the wrapper itself was signalled:
            the job was stopped from outside, so ``code`` is not the job's own verdict.
    """

    code: int
    signal: str | None = None


ObservedState = Literal["pending", "running", "gone", "failed", "canceled"]


@dataclass(frozen=True, slots=True)
class Observation:
    """What a backend sees of one submitted attempt.

    Attributes:
        state: ``pending`` (queued by the resource), ``running``, ``gone`` (the
            resource no longer knows it: it ended, or was lost), ``failed`` (the
            resource says infrastructure failed it: see ``failure``) or
            ``canceled`` (someone canceled it outside acjob).
        failure: For ``failed``: which kind of failure.
        reason: The resource's own words, for people.
        if_never_started: The verdict holds only for an attempt that never started
            (a job deleted while it was pending leaves no trace to tell): the monitor
            fences the attempt first, and disregards the verdict if its wrapper had
            already claimed it.
    """

    state: ObservedState
    failure: FailureKind | None = None
    reason: str | None = None
    if_never_started: bool = False


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
    deliveries: tuple[DeliveryRecord, ...] = field(default=())

    @property
    def progress(self) -> Progress | None:
        """What the current attempt last reported of its progress (``None`` before it
        reported any: a new attempt starts from none)."""
        return current_progress(self.attempt, self.attempts)

    @property
    def failure(self) -> FailureKind | None:
        """Why a job that ended in ``EXECUTOR_ERROR`` or ``SYSTEM_ERROR`` failed: its last
        attempt's failure (``None`` for any other state, or a job that never ran)."""
        return failure_of(self.state, self.attempts)


def current_progress(attempt: int, attempts: Sequence[Attempt]) -> Progress | None:
    """Return what attempt number ``attempt`` (a job's current one) last reported of its
    progress, given the job's attempts in order (``None`` before it reported any)."""
    if not attempts or attempts[-1].number != attempt:
        return None
    return attempts[-1].progress


def failure_of(state: State, attempts: Sequence[Attempt]) -> FailureKind | None:
    """Return why a job in ``state`` with these attempts (in order) failed: its last
    attempt's failure if it ended in ``EXECUTOR_ERROR`` or ``SYSTEM_ERROR``, else
    ``None``."""
    if state not in (State.EXECUTOR_ERROR, State.SYSTEM_ERROR) or not attempts:
        return None
    return attempts[-1].failure


@dataclass(frozen=True, slots=True)
class NewJob:
    """A job to record, as the store takes it (see ``Store.create_jobs``).

    Attributes:
        document: A document kept with the job, such as the TES task it came from:
            ``(kind, JSON text)``.
        spec_json: ``spec.model_dump_json()``, when the caller made it already (for
            the request hash): the store keeps it as the job's spec.
    """

    spec: JobSpec
    backend: str
    job_id: str
    idempotency_key: str | None = None
    request_hash: str | None = None
    document: tuple[str, str] | None = None
    spec_json: str | None = None


@dataclass(frozen=True, slots=True)
class DeliveryRecord:
    """One delivery of a final job's result (a row of the outbox).

    Attributes:
        id: Stable across retries, so receivers can drop duplicates.
        kind: The channel: ``email`` or ``webhook``.
        target: The address or URL.
        state: ``pending``, ``sent`` or ``failed``.
    """

    id: str
    job_id: str
    kind: str
    target: str
    state: str
    attempts: int
    created_at: float
    next_at: float
    sent_at: float | None
    last_error: str | None


@dataclass(frozen=True, slots=True)
class Event:
    """One entry of a job's history: a state change, or a note (``detail``)."""

    seq: int
    job_id: str
    at: float
    state: State
    attempt: int
    detail: str | None
