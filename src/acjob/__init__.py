"""acjob: run long jobs on local processes or a cluster, and get their output back.

The public API is what ``__all__`` lists: the clients for web-service authors, the
job model and the errors.
"""

from __future__ import annotations

__version__ = "0.1.0"

from .client import AsyncClient, AsyncJobHandle, Client, JobHandle, JobInfo
from .errors import (
    AcjobError,
    Conflict,
    ConnectionFailed,
    InvalidRequest,
    NotFound,
    PermanentError,
    TransientError,
)
from .model import JobSpec, Resources, RetryPolicy, State

__all__ = [
    "AcjobError",
    "AsyncClient",
    "AsyncJobHandle",
    "Client",
    "Conflict",
    "ConnectionFailed",
    "InvalidRequest",
    "JobHandle",
    "JobInfo",
    "JobSpec",
    "NotFound",
    "PermanentError",
    "Resources",
    "RetryPolicy",
    "State",
    "TransientError",
    "__version__",
]
