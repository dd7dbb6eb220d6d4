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
from collections.abc import Mapping, Sequence
from typing import Any

import click

from ..errors import InvalidRequest


class UsageError(click.UsageError):
    """A mistake on the command line, with what to try instead.

    Attributes:
        hint: The ``Try:`` line (``None``: the tool's ``--help``).
    """

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint


#: The most words an argv may have, and the longest command or word (the job model's).
MAX_WORDS = 65536
MAX_TEXT = 1 << 20
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_LABEL_KEY = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_BACKEND = re.compile(r"[a-z][a-z0-9_-]{0,31}")


class AcjobCommand(click.Command):
    """``acjob``'s parsing: options after ``-t email ADDRESS`` or ``-t webhook URL`` are
    options too, and whether ``--`` came before the command is remembered (an argv).

    Click stops at the first word that is not an option (so that ``acjob ls -l`` runs
    ``ls -l``). For email and webhook that word is the address, not the command: it is
    taken out (into ``ctx.meta["acjob.target"]``) and the rest parsed again, so that
    ``acjob -t email ADDRESS -n CMD`` means ``-n``, never a command ``-n CMD``.
    """

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        args = list(args)
        target = _target_index(self, ctx, args)
        if target is not None:
            ctx.meta["acjob.target"] = args.pop(target)
        ctx.meta["acjob.dashes"] = args.count("--")
        return super().parse_args(ctx, args)


def _target_index(command: click.Command, ctx: click.Context, args: list[str]) -> int | None:
    """Return where the address or URL of ``-t email``/``-t webhook`` is in ``args``."""
    try:
        opts, _, _ = command.make_parser(ctx).parse_args(args=list(args))
    except click.UsageError:
        return None  # the real parse says what is wrong
    words = opts.get("command")
    if opts.get("mode") not in ("email", "webhook") or not isinstance(words, tuple | list) \
            or len(words) < 2:
        return None
    # The positional words are what is left of args once the options before them were
    # read (a "--" before them may have been read too).
    return len(args) - len(words)


class Bounded(click.IntRange):
    """A whole number between two bounds, in a unit; out of bounds says the bound."""

    def __init__(self, low: int, high: int, unit: str) -> None:
        super().__init__(low, high)
        self.low, self.high, self.unit = low, high, unit

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> int:
        """Return the number, or fail naming the option, the value and the bounds."""
        try:
            number = value if isinstance(value, int) else int(str(value).strip())
        except ValueError:
            self.fail(f"{value!r} is not a whole number of {self.unit}", param, ctx)
        if not self.low <= number <= self.high:
            self.fail(f"{number} is out of range: from {self.low} to {self.high} {self.unit}",
                      param, ctx)
        return number


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
