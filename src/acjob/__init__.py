"""acjob: run long jobs on local processes or a cluster, and get their output back.

The public API is what ``__all__`` lists: the clients for web-service authors, the
job model and every error a client call can raise.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .errors import (
    AcjobError,
    BackendUnavailable,
    ConfigError,
    Conflict,
    ConnectionFailed,
    Gone,
    InvalidRequest,
    JobRefused,
    NotFound,
    PayloadTooLarge,
    PermanentError,
    StorageFull,
    SubmitFailed,
    TransientError,
    Unauthorized,
)
from .version import __version__

if TYPE_CHECKING:
    from .client import AsyncClient, AsyncJobHandle, Client, JobHandle, JobInfo
    from .model import JobSpec, Resources, RetryPolicy, State
    from .progress import Progress

# The clients and the job model load on first use: importing any part of acjob (the
# daemon, the server, a backend) runs this file, and none of them needs the client.
_LAZY = {
    "AsyncClient": "client", "AsyncJobHandle": "client", "Client": "client",
    "JobHandle": "client", "JobInfo": "client",
    "JobSpec": "model", "Resources": "model", "RetryPolicy": "model", "State": "model",
    "Progress": "progress",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'acjob' has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


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
    "JobRefused",
    "JobSpec",
    "NotFound",
    "PayloadTooLarge",
    "PermanentError",
    "Progress",
    "Resources",
    "RetryPolicy",
    "State",
    "StorageFull",
    "SubmitFailed",
    "TransientError",
    "Unauthorized",
    "__version__",
]
