"""The Python client: submit a job in one call, then ask its handle for the rest.

```python
import acjob

with acjob.Client() as client:
    job = client.submit("sort", stdin=b"b\\na\\n")
    info = job.wait()
    print(info.state, b"".join(job.stdout()))
```

:class:`Client` is synchronous, :class:`AsyncClient` its ``async`` twin, with the same
methods and arguments. Both find the daemon as the command-line tools do (``url``
argument, ``ACJOB_URL``, the configuration file, else the private per-user daemon,
started on demand), retry on lost connections with capped backoff, and resume
streams and uploads at the byte offset they had reached: nothing is lost or repeated.

Each operation is written once, as a plan free of I/O (:mod:`.plans`, on
:mod:`.core`); :mod:`.sync` runs the plans on plain sockets framed by h11 (quick to
load, for tools and web workers), :mod:`.aio` with httpx.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .core import JobInfo, Which
from .stdin import UPLOAD_CHUNK, Stdin
from .sync import Client, JobHandle

if TYPE_CHECKING:
    from ..progress import Progress
    from .aio import AsyncClient, AsyncJobHandle


def __getattr__(name: str) -> Any:
    # The async client loads httpx and asyncio: only for those who use it; progress
    # reports (a parser and its patterns) for those who ask for them.
    if name in ("AsyncClient", "AsyncJobHandle"):
        from . import aio

        return getattr(aio, name)
    if name == "Progress":
        from ..progress import Progress

        return Progress
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "UPLOAD_CHUNK",
    "AsyncClient",
    "AsyncJobHandle",
    "Client",
    "JobHandle",
    "JobInfo",
    "Progress",
    "Stdin",
    "Which",
]
