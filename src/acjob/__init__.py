"""acjob: run long jobs on local processes or a cluster, and get their output back.

The public API is what ``__all__`` lists: the clients for web-service authors, the
job model and every error a client call can raise.
"""

from __future__ import annotations

from .client import AsyncClient, AsyncJobHandle, Client, JobHandle, JobInfo
from .errors import (
    AcjobError,
    BackendUnavailable,
    ConfigError,
    Conflict,
    ConnectionFailed,
    Gone,
    InvalidRequest,
    NotFound,
    PayloadTooLarge,
    PermanentError,
    StorageFull,
    SubmitFailed,
    TransientError,
    Unauthorized,
)
from .model import JobSpec, Resources, RetryPolicy, State
from .version import __version__

__all__ = [
    "AcjobError",
    "AsyncClient",
    "AsyncJobHandle",
    "BackendUnavailable",
    "Client",
    "ConfigError",
    "Conflict",
    "ConnectionFailed",
    "Gone",
    "InvalidRequest",
    "JobHandle",
    "JobInfo",
    "JobSpec",
    "NotFound",
    "PayloadTooLarge",
    "PermanentError",
    "Resources",
    "RetryPolicy",
    "State",
    "StorageFull",
    "SubmitFailed",
    "TransientError",
    "Unauthorized",
    "__version__",
]
