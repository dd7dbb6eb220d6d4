"""POST a final job's result to a URL, signed with HMAC-SHA256; and, when asked,
its progress while it runs.

The body is JSON: ``"event": "result"``, the delivery id, the job (id, state, exit
status, reason, attempt, end time) and where to fetch its output from the daemon.
Headers:

- ``X-Acjob-Event``: ``result`` (or ``progress``, below);
- ``X-Acjob-Delivery``: the delivery id, the same on every retry (drop duplicates);
- ``X-Acjob-Signature``: ``sha256=<hex HMAC-SHA256 of the raw body under the
  [webhook] secret>``; compare it in constant time before trusting the body.

2xx is success; 408, 429 and 5xx (and no answer) are retried; any other status is
final. Redirects are not followed.

A progress callback (:meth:`WebhookChannel.send_progress`) has ``"event":
"progress"``, the job (id, state, attempt, labels) and its ``progress``, signed the
same way, with an id of its own in ``X-Acjob-Delivery``. It is tried once: progress
is superseded by the next report, and the result is what counts.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from typing import Any

import httpx

from ..config import WebhookConfig
from ..errors import PermanentError, TransientError
from ..model import DeliveryRecord, Job
from ..spool import Spool
from .base import output_file_size

DELIVERY_HEADER = "X-Acjob-Delivery"
SIGNATURE_HEADER = "X-Acjob-Signature"
EVENT_HEADER = "X-Acjob-Event"
#: The longest a progress callback may take (never longer than the result's time-out).
PROGRESS_TIMEOUT = 10.0


def sign(secret: str, body: bytes) -> str:
    """Return the signature header's value for ``body``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def payload(delivery: DeliveryRecord, job: Job, spool: Spool) -> dict[str, Any]:
    """Return the JSON document posted for one delivery."""
    return {
        "event": "result",
        "delivery_id": delivery.id,
        "job": {"id": job.id, "state": job.state.value, "exit_code": job.exit_code,
                "failure": job.failure.value if job.failure else None,
                "reason": job.reason, "attempt": job.attempt, "ended_at": job.ended_at,
                "labels": job.spec.labels},
        "stdout": {"path": f"/v1/jobs/{job.id}/stdout",
                   "bytes": output_file_size(spool, job, "stdout")},
        "stderr": {"path": f"/v1/jobs/{job.id}/stderr",
                   "bytes": output_file_size(spool, job, "stderr")},
    }


def progress_payload(callback_id: str, job: Job) -> dict[str, Any]:
    """Return the JSON document posted for one progress callback."""
    progress = job.progress
    return {
        "event": "progress",
        "callback_id": callback_id,
        "job": {"id": job.id, "state": job.state.value, "attempt": job.attempt,
                "labels": job.spec.labels},
        "progress": progress.to_json() if progress else None,
    }


class WebhookChannel:
    """Posts results to HTTP callbacks."""

    kind = "webhook"

    def __init__(self, spool: Spool, config: WebhookConfig) -> None:
        self._spool = spool
        self._config = config
        self._http = httpx.AsyncClient(timeout=config.timeout, follow_redirects=False)
        # Progress has connections of its own: it never holds up a result.
        self._progress_http = httpx.AsyncClient(
            timeout=min(config.timeout, PROGRESS_TIMEOUT), follow_redirects=False,
            limits=httpx.Limits(max_connections=16, max_keepalive_connections=4))

    async def aclose(self) -> None:
        """Close the connection pools."""
        await self._http.aclose()
        await self._progress_http.aclose()

    async def send_progress(self, url: str, job: Job) -> None:
        """POST the job's current progress to ``url``, signed, once.

        Raises:
            TransientError: no answer, or a status other than 2xx (the caller drops
                it: the next report supersedes it).
        """
        callback_id = secrets.token_hex(16)
        body = json.dumps(progress_payload(callback_id, job), separators=(",", ":")).encode()
        headers = {"Content-Type": "application/json", DELIVERY_HEADER: callback_id,
                   EVENT_HEADER: "progress", "User-Agent": "acjob"}
        if self._config.secret:
            headers[SIGNATURE_HEADER] = sign(self._config.secret, body)
        try:
            response = await self._progress_http.post(url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            raise TransientError(f"no answer from the callback: {type(exc).__name__}") from exc
        if not 200 <= response.status_code < 300:
            raise TransientError(f"the callback answered {response.status_code}")

    async def send(self, delivery: DeliveryRecord, job: Job) -> None:
        """POST the signed result; classify the answer as in the module docstring."""
        body = json.dumps(payload(delivery, job, self._spool), separators=(",", ":")).encode()
        headers = {"Content-Type": "application/json", DELIVERY_HEADER: delivery.id,
                   EVENT_HEADER: "result", "User-Agent": "acjob"}
        if self._config.secret:
            headers[SIGNATURE_HEADER] = sign(self._config.secret, body)
        try:
            response = await self._http.post(delivery.target, content=body, headers=headers)
        except (httpx.InvalidURL, httpx.UnsupportedProtocol) as exc:
            raise PermanentError(f"the callback URL is not usable: {exc}") from exc
        except httpx.HTTPError as exc:
            raise TransientError(f"no answer from the callback: {type(exc).__name__}") from exc
        status = response.status_code
        if 200 <= status < 300:
            return
        if status in (408, 429) or status >= 500:
            raise TransientError(f"the callback answered {status}")
        raise PermanentError(f"the callback answered {status}")
