"""A job's progress: what it reports beside its data, and the pure rules around it.

A job writes lines ``PERCENT [MESSAGE]`` to the file named by ``ACJOB_PROGRESS``
(``echo "40 aligning sequences" > "$ACJOB_PROGRESS"``). The daemon reads only the
file's tail (:data:`TAIL_BYTES`): the last *complete* well-formed line in it wins
(a line whose newline has not been written yet does not count); anything else (a
percent that is not a number from 0 to 100, garbage, a line too long for the tail)
is ignored, never an error of the job. Messages are cut to :data:`MAX_MESSAGE`
characters, and control characters in them become spaces.

This module needs nothing but the standard library: the client uses
:class:`Progress` too.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

#: How much of the end of a progress file the daemon reads.
TAIL_BYTES = 4096
#: The longest message kept, in characters.
MAX_MESSAGE = 200
#: The shortest interval between two progress callbacks to one webhook, in seconds.
MIN_CALLBACK_INTERVAL = 5

_LINE = re.compile(r"\s*([0-9]{1,3}(?:\.[0-9]{1,6})?|\.[0-9]{1,6})%?(?:\s+(.*?))?\s*")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]+")


@dataclass(frozen=True, slots=True)
class Progress:
    """How far an attempt of a job got, as it last said.

    Attributes:
        percent: From 0 to 100.
        message: What the job said with it (``None`` if nothing).
        updated_at: When it was written, as the daemon saw it (Unix time, seconds).
        attempt: The attempt that reported it, where known (a retried job's new
            attempt starts from no progress).
    """

    percent: float
    message: str | None
    updated_at: float
    attempt: int | None = None

    def to_json(self) -> dict[str, Any]:
        """Return the JSON form (``percent``, ``message``, ``updated_at``)."""
        return {"percent": self.percent, "message": self.message,
                "updated_at": self.updated_at}

    @classmethod
    def from_json(cls, data: Any, attempt: int | None = None) -> Progress | None:
        """Return the progress a JSON form describes (of attempt ``attempt``); ``None``
        for ``null`` or a form this client does not understand."""
        if not isinstance(data, Mapping):
            return None
        percent, message, at = data.get("percent"), data.get("message"), data.get("updated_at")
        if not isinstance(percent, int | float) or not isinstance(at, int | float):
            return None
        return cls(float(percent), message if isinstance(message, str) else None, float(at),
                   attempt)


def parse_line(line: str) -> tuple[float, str | None] | None:
    """Return the percent and message of one progress line, or ``None`` if it is not
    one (see the module docstring)."""
    match = _LINE.fullmatch(line)
    if match is None:
        return None
    percent = float(match.group(1))
    if not (math.isfinite(percent) and 0.0 <= percent <= 100.0):
        return None
    message = _CONTROL.sub(" ", match.group(2) or "").strip()[:MAX_MESSAGE].rstrip()
    return percent, message or None


def parse_tail(tail: bytes, *, cut: bool) -> tuple[float, str | None] | None:
    """Return the last complete well-formed line of a progress file's ``tail``.

    Args:
        tail: The last bytes of the file (at most :data:`TAIL_BYTES`).
        cut: Whether the file holds more before ``tail``: its first line may then be
            the end of a longer one, and is not taken.

    Returns:
        ``(percent, message)``, or ``None`` if no complete line in it is well formed.
    """
    lines = tail.split(b"\n")
    lines.pop()  # after the last newline: nothing, or a line still being written
    if cut and lines:
        lines.pop(0)
    for raw in reversed(lines):
        found = parse_line(raw.decode("utf-8", errors="replace"))
        if found is not None:
            return found
    return None


def next_callback_at(last_sent: float | None, interval: float, now: float) -> float:
    """Return when the next progress callback of a job to one receiver may go out: at
    once if none went yet, else ``interval`` seconds after the last one."""
    if last_sent is None:
        return now
    return max(now, last_sent + interval)
