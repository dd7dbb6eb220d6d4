"""The error types of acjob.

Every error acjob raises on purpose derives from :class:`AcjobError`. Callers that
want to retry distinguish two branches: :class:`TransientError` (the same call may
succeed later: a daemon restarting, a scheduler briefly unreachable) and
:class:`PermanentError` (the call is wrong and will stay wrong).

Each error carries a stable machine-readable ``code`` (it is the ``code`` of the
HTTP API's JSON error body) and an optional ``hint`` telling a person what to do.
"""

from __future__ import annotations


class AcjobError(Exception):
    """Root of all acjob errors.

    Attributes:
        code: Stable identifier, e.g. ``"not_found"``; never reworded.
        message: What went wrong, for a person.
        hint: What to try next, or ``None``.
    """

    code = "error"
    http_status = 500

    def __init__(self, message: str, *, hint: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        if code is not None:
            self.code = code

    def __str__(self) -> str:
        return self.message


class TransientError(AcjobError):
    """A failure that may go away by itself; retrying the same call is safe."""

    code = "unavailable"
    http_status = 503


class PermanentError(AcjobError):
    """A failure that retrying will not fix."""

    code = "failed"
    http_status = 400


class InvalidRequest(PermanentError):
    """The request is malformed or names something impossible."""

    code = "invalid_request"
    http_status = 400


class NotFound(PermanentError):
    """The named job (or resource) does not exist."""

    code = "not_found"
    http_status = 404


class Conflict(PermanentError):
    """The request contradicts the current state (e.g. reusing an idempotency key)."""

    code = "conflict"
    http_status = 409


class Gone(PermanentError):
    """The resource existed but was removed (e.g. output past its retention time)."""

    code = "gone"
    http_status = 410


class Unauthorized(PermanentError):
    """The bearer token is missing or wrong."""

    code = "unauthorized"
    http_status = 401


class PayloadTooLarge(PermanentError):
    """A request body exceeds the configured limit."""

    code = "payload_too_large"
    http_status = 413


class ConfigError(PermanentError):
    """The configuration file or an override is invalid."""

    code = "config_error"


class ConnectionFailed(TransientError):
    """The daemon could not be reached."""

    code = "connection_failed"


class BackendUnavailable(TransientError):
    """A compute backend (scheduler, process table) could not be asked right now."""

    code = "backend_unavailable"


class JobRefused(TransientError):
    """A backend refused one job in words acjob does not know: the job's own trouble, or a
    passing one. The job is tried again alone, later, a bounded number of times, while
    the backend's other jobs go on."""

    code = "job_refused"


class StorageFull(TransientError):
    """The store or the spool has no room left; the request may succeed once there is."""

    code = "storage_full"
    http_status = 507


class SubmitFailed(PermanentError):
    """A backend refused a job for a reason that retrying will not change."""

    code = "submit_failed"


# Every error class, for the mapping below; derived from the classes themselves so that
# a new class (with its own ``code`` and ``http_status``) joins the mapping by itself.
_CLASSES: tuple[type[AcjobError], ...] = tuple(
    cls for cls in list(globals().values())
    if isinstance(cls, type) and issubclass(cls, AcjobError)
)
_BY_CODE: dict[str, type[AcjobError]] = {cls.code: cls for cls in _CLASSES}


def _declared_status(cls: type[AcjobError]) -> int | None:
    """Return the status ``cls`` declares itself (``None`` if it only inherits one)."""
    status = cls.__dict__.get("http_status")
    return status if isinstance(status, int) else None


def _class_for_status(status: int) -> type[AcjobError]:
    if status >= 500:
        # Every 5xx is worth retrying (except 501, which the client decides), so each
        # maps to the transient branch; a known code may refine it below.
        return TransientError
    if status == 422:
        # Validation failures: the daemon's web framework answers them with 422.
        return InvalidRequest
    # The most derived permanent class declaring this status (400: InvalidRequest,
    # not its base PermanentError).
    declared = [cls for cls in _CLASSES
                if issubclass(cls, PermanentError) and _declared_status(cls) == status]
    for cls in declared:
        if not any(other is not cls and issubclass(other, cls) for other in declared):
            return cls
    return PermanentError


def error_from_response(status: int, message: str, hint: str | None = None,
                        code: str | None = None) -> AcjobError:
    """Rebuild the error a daemon answered with, from its HTTP status and JSON body.

    The status picks the class: 400 and 422 :class:`InvalidRequest`, 401
    :class:`Unauthorized`, 404 :class:`NotFound`, 409 :class:`Conflict`, 410
    :class:`Gone`, 413 :class:`PayloadTooLarge`, any other 4xx :class:`PermanentError`,
    any 5xx :class:`TransientError`. A known ``code`` refines that class to its own
    (``storage_full`` gives :class:`StorageFull`) only when it is a subclass of it, so
    an ``except`` clause that matches the status always matches the error, and a 5xx
    stays transient whatever its code.

    Args:
        status: The HTTP status, 400 or above.
        message: The body's ``message``.
        hint: The body's ``hint``.
        code: The body's ``code``; kept on the error as it came, even when unknown.

    Returns:
        The error, ready to raise.
    """
    cls = _class_for_status(status)
    refined = _BY_CODE.get(code) if code is not None else None
    if refined is not None and issubclass(refined, cls):
        cls = refined
    return cls(message, hint=hint, code=code)
