"""The JSON forms of jobs, events and deliveries: what the native API, the event
stream and a job's document show of them, and nothing else.

One place for them keeps the API's shapes stable and in step with docs/api.md; the
TES facade has its own forms (:mod:`acjob.tes.view`), and a webhook's body is the
channel's own (:mod:`acjob.delivery.webhook`).
"""

from __future__ import annotations

from typing import Any

from .model import Attempt, DeliveryRecord, Event, Job


def job_json(job: Job) -> dict[str, Any]:
    """Return a job as the native API serves it."""
    spec = job.spec
    return {
        "id": job.id,
        "state": job.state.value,
        "command": spec.command,
        "name": spec.name,
        "backend": job.backend,
        "labels": spec.labels,
        "resources": spec.resources.model_dump(exclude_none=True, exclude_defaults=True),
        "retry": {
            "max_attempts": spec.retry.max_attempts,
            "on": sorted(k.value for k in spec.retry.on),
        },
        "attempt": job.attempt,
        "exit_code": job.exit_code,
        "failure": job.failure.value if job.failure else None,
        "reason": job.reason,
        "stdin": {"mode": spec.stdin, "closed": job.stdin_closed, "bytes": job.stdin_bytes},
        "created_at": job.created_at,
        "updated_at": job.updated_at,
        "ended_at": job.ended_at,
        "files_removed_at": job.purged_at,
        "deliveries": [delivery_json(d) for d in job.deliveries],
        "seq": job.seq,
        "progress": progress.to_json() if (progress := job.progress) else None,
        "attempts": [attempt_json(a) for a in job.attempts],
    }


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
