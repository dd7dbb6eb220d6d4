"""What the request handlers work with: the daemon's parts (fixed once it starts) and
the counters of its activity (the only thing that changes while it serves)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from ..config import TesConfig
from ..hub import Hub
from ..receiver import Receiver
from ..spool import Spool
from ..store import GroupCommit, Store


@dataclass
class Activity:
    """Requests under way and the time of the last one: what the idle stop and the
    metrics read.

    Attributes:
        in_flight: Requests being answered now.
        last_activity: When the last request ended, or the daemon was last busy
            (``time.monotonic()``).
        handoffs: Files handed to clients on this machine, by kind (``output``,
            ``stdin``; see :mod:`acjob.server.handoff`).
    """

    in_flight: int = 0
    last_activity: float = field(default_factory=time.monotonic)
    handoffs: dict[str, int] = field(default_factory=lambda: {"output": 0, "stdin": 0})


@dataclass(frozen=True, slots=True)
class Services:
    """The daemon's parts, as the routes see them.

    Attributes:
        store: The jobs, read by the routes (written through ``receiver``).
        spool: The jobs' files, read by the output routes.
        hub: Wake-ups for long-polls and streams.
        receiver: Accepts, cancels and feeds jobs.
        tes: The TES facade's settings.
        token: The bearer token every request must carry (``None``: a Unix socket).
        max_request_bytes: The largest JSON body accepted.
        max_requests: How many requests may be in progress at once (long-polls, streams
            and uploads included); one more is answered ``503 too_busy`` at once.
        shutdown: Asks the daemon to stop.
        activity: The counters that change while the daemon serves.
        commits: The group commit every answer waits for (``None``: each acknowledged
            commit is flushed as it is made).
    """

    store: Store
    spool: Spool
    hub: Hub
    receiver: Receiver
    tes: TesConfig = field(default_factory=TesConfig)
    token: str | None = field(default=None, repr=False)
    max_request_bytes: int = 1 << 20
    max_requests: int = 2000
    shutdown: Callable[[], None] = lambda: None
    activity: Activity = field(default_factory=Activity)
    commits: GroupCommit | None = None
