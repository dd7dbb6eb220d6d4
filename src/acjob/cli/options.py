"""``acjob``'s command line made into a job spec, with every mistake said in the user's words.

What the daemon would refuse is refused here first, naming the option, the value and the
fix, as a usage error (exit status 2): a user reads ``-e 1X=y: '1X' is not a variable
name``, never a JSON path and a regular expression. The job model stays the one
authority, in the daemon: whatever it still refuses is said with the option it came
from (:func:`refused`). The model is not loaded here: that alone would double the time
``acjob`` takes to start.
"""

from __future__ import annotations

import os
import re
from argparse import ArgumentTypeError
from collections.abc import Callable, Mapping, Sequence
from typing import TypeVar

from ..errors import InvalidRequest


class UsageError(Exception):
    """A mistake on the command line, with what to try instead (exit status 2).

    Attributes:
        message: What is wrong, naming the option and the value.
        hint: The ``Try:`` line (``None``: the tool's ``--help``).
        usage: The tool's usage line, shown first when the mistake is in the options'
            shape (``None``: not shown).
    """

    def __init__(self, message: str, hint: str | None = None, usage: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.usage = usage


N = TypeVar("N", int, float)

#: The most words an argv may have, and the longest command or word (the job model's).
MAX_WORDS = 65536
MAX_TEXT = 1 << 20
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_LABEL_KEY = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_BACKEND = re.compile(r"[a-z][a-z0-9_-]{0,31}")


def bounded(low: int, high: int, unit: str) -> Callable[[str], int]:
    """Return the reading of a whole number between two bounds, in ``unit``, for an
    option (argparse's ``type``): a mistake says the value and the bounds."""
    return _between(low, high, unit, int, "a whole number")


def seconds(low: float, high: float) -> Callable[[str], float]:
    """Return the reading of a number of seconds between two bounds, for an option."""
    return _between(low, high, "seconds", float, "a number")


def _between(low: N, high: N, unit: str, kind: Callable[[str], N],
             what: str) -> Callable[[str], N]:
    def read(value: str) -> N:
        try:
            number = kind(value.strip())
        except ValueError:
            raise ArgumentTypeError(f"{value!r} is not {what} of {unit}") from None
        if not low <= number <= high:
            raise ArgumentTypeError(f"{number} is out of range: from {low} to {high} {unit}")
        return number

    return read


def environment(values: Sequence[str], caller: Mapping[str, str]) -> dict[str, str]:
    """Return ``-e`` options as variables: ``NAME=VALUE``, or ``NAME`` for the caller's
    own value (left out when the caller has none), as ``docker run -e`` does.

    Raises:
        UsageError: a name that is not a variable name.
    """
    result: dict[str, str] = {}
    for item in values:
        name, sep, value = item.partition("=")
        if not _ENV_NAME.fullmatch(name):
            raise UsageError(
                f"-e {item}: {name!r} is not a variable name (letters, digits and _, "
                "not starting with a digit)",
                hint="-e NAME=VALUE, or -e NAME to pass your own value of NAME")
        if not sep:
            if name not in caller:
                continue
            value = caller[name]
        result[name] = value
    return result


def labels(values: Sequence[str]) -> dict[str, str]:
    """Return ``-l KEY=VALUE`` options as labels (``-l KEY`` is an empty value, as with
    ``docker run -l``).

    Raises:
        UsageError: a key or value the daemon would refuse.
    """
    result: dict[str, str] = {}
    for item in values:
        key, _, value = item.partition("=")
        if not _LABEL_KEY.fullmatch(key):
            raise UsageError(
                f"-l {item}: {key!r} is not a label key (1 to 64 letters, digits, "
                "'_', '.' or '-')", hint="-l project=x")
        if len(value) > 256:
            raise UsageError(f"-l {key}=…: a label's value is at most 256 characters")
        result[key] = value
    return result


def mail_delivery(address: str, option: str) -> dict[str, str]:
    """Return the delivery mailing the result to ``address``.

    Raises:
        UsageError: not an address a result can be mailed to.
    """
    from pydantic import ValidationError  # only for those who mail: see the module's doc

    from ..model import MailDelivery

    try:
        return MailDelivery(to=address).model_dump()
    except ValidationError as exc:
        why = exc.errors()[0].get("ctx", {}).get("error") or "not local@domain"
        raise UsageError(f"{option} {address}: not a mail address ({why})",
                         hint=f"{option} you@example.org") from None


def webhook_delivery(url: str, option: str) -> dict[str, str]:
    """Return the delivery posting the result to ``url``.

    Raises:
        UsageError: not an http(s) URL without credentials.
    """
    from pydantic import ValidationError

    from ..model import WebhookDelivery

    try:
        return WebhookDelivery(url=url).model_dump()
    except ValidationError as exc:
        error = exc.errors()[0]
        why = (str(error["ctx"]["error"]) if "error" in error.get("ctx", {})
               else "it must start with http:// or https:// and hold no spaces")
        raise UsageError(f"{option} {url}: not a URL a result can be posted to: {why}",
                         hint=f"{option} https://example.org/hook") from None


def workdir(path: str | None) -> str | None:
    """Return the working directory as an absolute path: a relative one is taken from
    the current directory, as ``cd`` would (``--workdir .`` is this directory)."""
    # Not resolved: a symbolic link on the way is kept, as the user named it.
    return None if path is None else os.path.abspath(path)  # noqa: PTH100


def backend(name: str | None) -> str | None:
    """Return the backend's name if it can be one.

    Raises:
        UsageError: it cannot.
    """
    if name is not None and not _BACKEND.fullmatch(name):
        raise UsageError(f"--backend {name}: not a backend name (lower-case letters, "
                         "digits, '_' and '-', up to 32)", hint="--backend local")
    return name


def command(words: Sequence[str], argv: bool) -> str | list[str]:
    """Return the job's command: the words as an argv, or joined as one shell string.

    Raises:
        UsageError: an empty command, or one too long for the daemon.
    """
    if not words or (not argv and not " ".join(words).strip()) or (argv and not words[0]):
        raise UsageError("the command is empty",
                         hint="acjob 'CMD' (a shell string), or acjob -- PROG ARG…")
    if argv and len(words) > MAX_WORDS:
        raise UsageError(f"the command has {len(words)} words; at most {MAX_WORDS} are "
                         "accepted",
                         hint="pass a long list as stdin (xargs in the job reads it)")
    text = words if argv else [" ".join(words)]
    if any(len(word) > MAX_TEXT for word in text):
        raise UsageError("the command (or a word of it) is longer than 1 MiB",
                         hint="put it in a script and run the script")
    return list(words) if argv else text[0]


_OPTIONS = {"env": "-e", "labels": "-l", "workdir": "--workdir", "backend": "--backend",
            "name": "--name", "deliveries": "--mail/--webhook", "command": "the command",
            "cpus": "--cpus", "memory_mb": "--memory", "time_limit_s": "--time-limit",
            "retry": "--max-attempts", "resources": "a resource"}


def refused(error: InvalidRequest) -> UsageError:
    """Return the daemon's refusal of a job as a usage error naming the option.

    The daemon says a refused value as ``where: what`` (``resources.cpus: Input should
    be …``); the option is found from ``where``. Its own hint (the request schema) means
    nothing on a command line and is replaced by ``--help``, unless the refusal is one of
    the daemon's own words (an unknown backend, a missing directory) with its own hint.
    """
    where, sep, _ = error.message.partition(": ")
    parts = where.split(".") if sep and " " not in where else []
    option = next((_OPTIONS[p] for p in reversed(parts) if p in _OPTIONS), None)
    if option is not None:
        return UsageError(f"{option}: {error.message}")
    hint = error.hint if error.hint and "openapi" not in error.hint else None
    return UsageError(error.message, hint=hint)
