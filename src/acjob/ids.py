"""Job ids: 128 random bits, unguessable, and checked before they reach anything."""

from __future__ import annotations

import re
import secrets

from .errors import InvalidRequest

_ID_RE = re.compile(r"[a-z2-7]{26}")


#: Every pair of base32 characters, by the 10 bits they stand for.
_PAIRS = [a + b for a in "abcdefghijklmnopqrstuvwxyz234567"
          for b in "abcdefghijklmnopqrstuvwxyz234567"]


def new_job_id() -> str:
    """Return a fresh job id: 128 random bits, lowercase base32 (26 characters).

    The id is unguessable, so a job URL works as a capability; its alphabet is
    safe in file names, URLs, shell words and scheduler job names.
    """
    return new_job_ids(1)[0]


def new_job_ids(count: int) -> list[str]:
    """Return ``count`` fresh job ids (see :func:`new_job_id`), from one read of the
    system's random source."""
    raw = secrets.token_bytes(16 * count)
    return [_base32(raw[i:i + 16]) for i in range(0, 16 * count, 16)]


def _base32(raw: bytes) -> str:
    """Return 16 bytes as ``base64.b32encode`` does, lowercase and without its padding,
    two characters at a time (the standard library's encoder is pure Python, and a
    batch of jobs makes hundreds of ids)."""
    # 128 bits and two zero bits make 13 groups of 10 bits, as b32encode pads them.
    bits = int.from_bytes(raw, "big") << 2
    return "".join([_PAIRS[(bits >> shift) & 1023] for shift in range(120, -1, -10)])


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
