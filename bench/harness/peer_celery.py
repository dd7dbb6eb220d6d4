"""Celery on Redis (broker and result backend): the task, a client, the workers.

Runs in the peers' virtual environment; ``BENCH_REDIS_URL`` names the Redis database.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from celery import Celery
from celery.result import AsyncResult

TASK = "bench.shell"


def shell() -> int:
    """The task: ``sh -c true``."""
    return subprocess.run(["sh", "-c", "true"], check=False).returncode


def make_app() -> Celery:
    """A Celery application on the bench's Redis, with the one task registered."""
    url = os.environ["BENCH_REDIS_URL"]
    app = Celery("bench", broker=url, backend=url, set_as_current=False)
    app.conf.update(broker_connection_retry_on_startup=True, worker_hijack_root_logger=False)
    app.task(name=TASK)(shell)
    return app


app = make_app()


class CelerySystem:
    """Celery as a :class:`harness.common.System`: ``delay()`` and ``get()``."""

    name = "celery"

    def __init__(self) -> None:
        self.app = make_app()
        self.task = self.app.tasks[TASK]

    def submit(self) -> Any:
        return self.task.delay()

    def wait(self, handle: Any) -> None:
        handle.get(timeout=120)

    def ident(self, handle: Any) -> str:
        return str(handle.id)

    def wait_ident(self, ident: str) -> None:
        AsyncResult(ident, app=self.app).get(timeout=120)


def _script(name: str) -> str:
    """A console script of this virtual environment."""
    return str(Path(sys.executable).parent / name)


def worker_commands(bench_dir: str) -> list[list[str]]:
    """One Celery worker with two prefork processes."""
    return [[_script("celery"), "-A", "harness.peer_celery:app", "worker",
             "--concurrency", "2", "--pool", "prefork", "--loglevel", "WARNING",
             "--without-gossip", "--without-mingle", "--without-heartbeat",
             "--hostname", "bench@%h"]]


def ready(system: CelerySystem) -> bool:
    """True once a worker answers a ping."""
    return bool(system.app.control.ping(timeout=0.5))
