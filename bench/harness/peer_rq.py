"""RQ on Redis: the job function, a client, the workers.

Runs in the peers' virtual environment; ``BENCH_REDIS_URL`` names the Redis database.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from redis import Redis
from rq import Queue
from rq.job import Job

QUEUE = "bench"


def shell() -> int:
    """The job: ``sh -c true``."""
    return subprocess.run(["sh", "-c", "true"], check=False).returncode


class RqSystem:
    """RQ as a :class:`harness.common.System`: ``enqueue()`` and a blocking
    ``latest_result()``."""

    name = "rq"

    def __init__(self) -> None:
        self.redis = Redis.from_url(os.environ["BENCH_REDIS_URL"])
        self.queue = Queue(QUEUE, connection=self.redis)

    def submit(self) -> Any:
        return self.queue.enqueue(shell)

    def wait(self, handle: Any) -> None:
        result = handle.latest_result(timeout=120)
        if result is None or result.type != result.Type.SUCCESSFUL:
            raise RuntimeError(f"RQ job {handle.id} did not succeed: {result}")

    def ident(self, handle: Any) -> str:
        return str(handle.id)

    def wait_ident(self, ident: str) -> None:
        self.wait(Job.fetch(ident, connection=self.redis))


def _script(name: str) -> str:
    """A console script of this virtual environment."""
    return str(Path(sys.executable).parent / name)


def worker_commands(bench_dir: str) -> list[list[str]]:
    """Two RQ workers (RQ's default worker class: one forked work horse per job)."""
    url = os.environ["BENCH_REDIS_URL"]
    return [[_script("rq"), "worker", "--url", url, "--path", bench_dir,
             "--name", f"bench-{i}-{os.getpid()}", "--quiet", QUEUE] for i in (1, 2)]


def ready(system: RqSystem) -> bool:
    """True once both workers have registered."""
    from rq import Worker

    return int(Worker.count(connection=system.redis)) >= 2
