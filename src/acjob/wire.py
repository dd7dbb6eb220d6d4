"""The JSON forms of jobs, events and deliveries: what the native API, the event
stream and a job's document show of them, and nothing else.

One place for them keeps the API's shapes stable and in step with docs/api.md; the
TES facade has its own forms (:mod:`acjob.tes.view`), and a webhook's body is the
channel's own (:mod:`acjob.delivery.webhook`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from .model import (
    Attempt,
    DeliveryRecord,
    Event,
    Job,
    JobSpec,
    Resources,
    RetryPolicy,
    State,
    current_progress,
    failure_of,
    sorted_kinds,
)

#: What a job's JSON form shows of its spec, in this order: command, name, labels,
#: resources (those set, defaults left out), retry policy and stdin mode.
SpecForm = tuple[Any, str | None, dict[str, str], dict[str, Any], dict[str, Any], str]


def job_json(job: Job) -> dict[str, Any]:
    """Return a job as the native API serves it."""
    return job_form(
        job_id=job.id, state=job.state, backend=job.backend, spec=spec_form(job.spec),
        attempt=job.attempt, exit_code=job.exit_code, reason=job.reason,
        stdin_closed=job.stdin_closed, stdin_bytes=job.stdin_bytes,
        created_at=job.created_at, updated_at=job.updated_at, ended_at=job.ended_at,
        purged_at=job.purged_at, seq=job.seq, attempts=job.attempts,
        deliveries=job.deliveries,
    )


def job_form(
    *, job_id: str, state: State, backend: str, spec: SpecForm, attempt: int,
    exit_code: int | None, reason: str | None, stdin_closed: bool, stdin_bytes: int | None,
    created_at: float, updated_at: float, ended_at: float | None, purged_at: float | None,
    seq: int, attempts: Sequence[Attempt], deliveries: Sequence[DeliveryRecord],
) -> dict[str, Any]:
    """Return a job's JSON form (as :func:`job_json`) from the values of its record (the
    fields of :class:`~acjob.model.Job` of the same names), for a reader that has them
    without the record: a page of a list, read straight from the store's rows."""
    command, name, labels, resources, retry, stdin = spec
    failure = failure_of(state, attempts)
    progress = current_progress(attempt, attempts)
    return {
        "id": job_id,
        "state": state.value,
        "command": command,
        "name": name,
        "backend": backend,
        "labels": labels,
        "resources": resources,
        "retry": retry,
        "attempt": attempt,
        "exit_code": exit_code,
        "failure": failure.value if failure else None,
        "reason": reason,
        "stdin": {"mode": stdin, "closed": stdin_closed, "bytes": stdin_bytes},
        "created_at": created_at,
        "updated_at": updated_at,
        "ended_at": ended_at,
        "files_removed_at": purged_at,
        "deliveries": [delivery_json(d) for d in deliveries],
        "seq": seq,
        "progress": progress.to_json() if progress else None,
        "attempts": [attempt_json(a) for a in attempts],
    }


def spec_form(spec: JobSpec) -> SpecForm:
    """Return what a job's JSON form shows of its spec."""
    resources = spec.resources
    # As model_dump(exclude_none=True, exclude_defaults=True), in the model's order,
    # without pydantic's serializer (a third of the cost of a job's form).
    return (spec.command, spec.name, spec.labels,
            {name: value for name, default in _RESOURCE_DEFAULT_ITEMS
             if (value := getattr(resources, name)) is not None and value != default},
            {"max_attempts": spec.retry.max_attempts, "on": sorted_kinds(spec.retry.on)},
            spec.stdin)


def spec_forms_from_json(texts: Sequence[str]) -> list[SpecForm | None]:
    """Return what the JSON forms of jobs show of their specs (as :func:`spec_form`),
    each read from the JSON text ``JobSpec.model_dump_json`` made of it, as the store
    keeps it, without the model: the jobs were validated when they were accepted, and
    parsing each again into the model only to serialise it was most of a list page's
    time.

    An item is ``None`` where the text's fields are not the model's own (a store
    written by another version of the model): the caller reads that one through it.
    """
    try:
        # One parse of all of them: half the cost of a parse each. Each text is one
        # JSON value (the model wrote it), so the array has one item per text; any
        # other texts are parsed one by one.
        specs = json.loads("[" + ",".join(texts) + "]")
    except ValueError:
        specs = None
    if not isinstance(specs, list) or len(specs) != len(texts):
        specs = [_parsed(text) for text in texts]
    return [_spec_form(spec) for spec in specs]


def _parsed(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return None


_SPEC_FIELDS = frozenset(JobSpec.model_fields)
_RETRY_FIELDS = frozenset(RetryPolicy.model_fields)
#: The resources' fields in the model's order, each with its default.
_RESOURCE_DEFAULTS = {name: field.get_default(call_default_factory=True)
                      for name, field in Resources.model_fields.items()}
_RESOURCE_DEFAULT_ITEMS = tuple(_RESOURCE_DEFAULTS.items())


def _spec_form(spec: Any) -> SpecForm | None:
    """Return the spec form of a parsed spec text, or ``None`` if it is not the model's
    current form."""
    if not isinstance(spec, dict) or spec.keys() != _SPEC_FIELDS:
        return None
    resources, retry = spec["resources"], spec["retry"]
    if (not isinstance(resources, dict) or resources.keys() != _RESOURCE_DEFAULTS.keys()
            or not isinstance(retry, dict) or retry.keys() != _RETRY_FIELDS):
        return None
    # As model_dump(exclude_none=True, exclude_defaults=True), in the model's order.
    return (spec["command"], spec["name"], spec["labels"],
            {name: value for name, default in _RESOURCE_DEFAULTS.items()
             if (value := resources[name]) is not None and value != default},
            {"max_attempts": retry["max_attempts"], "on": sorted(set(retry["on"]))},
            spec["stdin"])


def attempt_json(attempt: Attempt) -> dict[str, Any]:
    """Return one attempt as part of its job's JSON form."""
    return {
        "number": attempt.number,
        "native_id": attempt.native_id,
        "state": attempt.state.value,
        "exit_code": attempt.exit_code,
        "failure": attempt.failure.value if attempt.failure else None,
        "reason": attempt.reason,
        "started_at": attempt.started_at,
        "ended_at": attempt.ended_at,
    }


def event_json(event: Event) -> dict[str, Any]:
    """Return one event as the event stream sends it."""
    return {"seq": event.seq, "job_id": event.job_id, "at": event.at,
            "state": event.state.value, "attempt": event.attempt, "detail": event.detail}


def progress_event_json(job: Job) -> dict[str, Any]:
    """Return a job's current progress as the event stream's ``progress`` event sends it
    (``progress`` is ``null`` when a new attempt has not reported any yet)."""
    progress = job.progress
    return {"job_id": job.id, "attempt": job.attempt,
            "progress": progress.to_json() if progress else None}


def delivery_json(delivery: DeliveryRecord) -> dict[str, Any]:
    """Return one delivery as part of its job's JSON form."""
    return {"id": delivery.id, "type": delivery.kind, "target": delivery.target,
            "state": delivery.state, "attempts": delivery.attempts,
            "sent_at": delivery.sent_at, "last_error": delivery.last_error}
