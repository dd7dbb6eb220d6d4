"""Huey on Redis, with result notification: the task, a client, the consumer.

Runs in the peers' virtual environment; ``BENCH_REDIS_URL`` names the Redis database.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from huey import RedisHuey

huey = RedisHuey("bench", url=os.environ["BENCH_REDIS_URL"], notify_result=True)


@huey.task()  # type: ignore[untyped-decorator]  # huey has no type hints
def shell() -> int:
    """The task: ``sh -c true``."""
    return subprocess.run(["sh", "-c", "true"], check=False).returncode


class HueySystem:
    """Huey as a :class:`harness.common.System`: a task call and a blocking ``get()``
    (woken by the result notification, not by polling)."""

    name = "huey"

    def submit(self) -> Any:
        return shell()

    def wait(self, handle: Any) -> None:
        handle.get(blocking=True, timeout=120)

    def ident(self, handle: Any) -> str:
        return str(handle.id)

    def wait_ident(self, ident: str) -> None:
        huey.result(ident, blocking=True, timeout=120)


def _script(name: str) -> str:
    """A console script of this virtual environment."""
    return str(Path(sys.executable).parent / name)


def worker_commands(bench_dir: str) -> list[list[str]]:
    """One consumer with two worker processes."""
    return [[_script("huey_consumer"), "harness.peer_huey.huey",
             "--workers", "2", "--worker-type", "process", "--quiet"]]


def ready(system: HueySystem) -> bool:
    """True once the consumer ran a task (its workers start together)."""
    try:
        system.wait(system.submit())
    except Exception:
        return False
    return True
