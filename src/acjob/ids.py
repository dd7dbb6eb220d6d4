"""Job ids: 128 random bits, unguessable, and checked before they reach anything."""

from __future__ import annotations

import base64
import re
import secrets

from .errors import InvalidRequest

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
