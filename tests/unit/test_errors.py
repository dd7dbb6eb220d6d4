"""The error classes: the status/code mapping a client uses, and what acjob exports."""

from __future__ import annotations

import pytest

import acjob
from acjob import errors
from acjob.errors import (
    AcjobError,
    BackendUnavailable,
    Conflict,
    Gone,
    InvalidRequest,
    NotFound,
    PayloadTooLarge,
    PermanentError,
    StorageFull,
    TransientError,
    Unauthorized,
    error_from_response,
)


@pytest.mark.parametrize(("status", "code", "kind"), [
    (400, None, InvalidRequest),
    (400, "invalid_job_id", InvalidRequest),
    (422, "invalid_request", InvalidRequest),
    (401, "unauthorized", Unauthorized),
    (404, "not_found", NotFound),
    (405, "method_not_allowed", PermanentError),
    (409, "bad_offset", Conflict),
    (410, "output_expired", Gone),
    (413, "payload_too_large", PayloadTooLarge),
    (429, None, PermanentError),
    (500, "internal", TransientError),
    (501, None, TransientError),
    (503, "backend_unavailable", BackendUnavailable),
    (507, "storage_full", StorageFull),
    (507, None, TransientError),
])
def test_status_and_code_pick_the_class(status: int, code: str | None,
                                        kind: type[AcjobError]) -> None:
    error = error_from_response(status, "message", "hint", code)
    assert type(error) is kind
    assert (error.message, error.hint) == ("message", "hint")
    assert error.code == (code or kind.code)


@pytest.mark.parametrize(("status", "code", "kind"), [
    # A code never contradicts its status: the retry branch and the status's own
    # class both stay.
    (404, "storage_full", NotFound),
    (500, "error", TransientError),
    (400, "submit_failed", InvalidRequest),
    (503, "not_found", TransientError),
])
def test_a_code_only_refines_the_status(status: int, code: str,
                                        kind: type[AcjobError]) -> None:
    error = error_from_response(status, "m", None, code)
    assert type(error) is kind and error.code == code


def test_every_error_is_exported() -> None:
    classes = {name for name, value in vars(errors).items()
               if isinstance(value, type) and issubclass(value, AcjobError)}
    assert classes <= set(acjob.__all__)
    assert all(getattr(acjob, name) is getattr(errors, name) for name in classes)
