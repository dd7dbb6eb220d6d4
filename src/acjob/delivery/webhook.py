"""POST a final job's result to a URL, signed with HMAC-SHA256.

The body is JSON: the delivery id, the job (id, state, exit status, reason,
attempt, end time) and where to fetch its output from the daemon. Headers:

- ``X-Acjob-Delivery``: the delivery id, the same on every retry (drop duplicates);
- ``X-Acjob-Signature``: ``sha256=<hex HMAC-SHA256 of the raw body under the
  [webhook] secret>``; compare it in constant time before trusting the body.

2xx is success; 408, 429 and 5xx (and no answer) are retried; any other status is
final. Redirects are not followed.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

import httpx

from ..config import WebhookConfig
from ..errors import PermanentError, TransientError
from ..model import DeliveryRecord, Job
from ..spool import Spool
from .base import output_file_size

DELIVERY_HEADER = "X-Acjob-Delivery"
SIGNATURE_HEADER = "X-Acjob-Signature"


def sign(secret: str, body: bytes) -> str:
    """Return the signature header's value for ``body``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def payload(delivery: DeliveryRecord, job: Job, spool: Spool) -> dict[str, Any]:
    """Return the JSON document posted for one delivery."""
    return {
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


class WebhookChannel:
    """Posts results to HTTP callbacks."""

    kind = "webhook"

    def __init__(self, spool: Spool, config: WebhookConfig) -> None:
        self._spool = spool
        self._config = config
        self._http = httpx.AsyncClient(timeout=config.timeout, follow_redirects=False)

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()

    async def send(self, delivery: DeliveryRecord, job: Job) -> None:
        """POST the signed result; classify the answer as in the module docstring."""
        body = json.dumps(payload(delivery, job, self._spool), separators=(",", ":")).encode()
        headers = {"Content-Type": "application/json", DELIVERY_HEADER: delivery.id,
                   "User-Agent": "acjob"}
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
