"""Measure one peer (Celery, RQ or Huey) on the bench's Redis; runs in the peers' venv.

    BENCH_REDIS_URL=redis://127.0.0.1:PORT/N PYTHONPATH=bench \\
        PEERS/bin/python -m harness.peer_driver SYSTEM --runs R --jobs J --clients C \\
        --repeat N --logs DIR --out FILE

Starts the peer's workers (two worker processes), waits until they are ready, takes the
figures of :func:`harness.common.measure_queue`, writes them as JSON to ``FILE`` with the
peer's version, and stops the workers, also on SIGTERM.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import json
import signal
import sys
import time
from pathlib import Path
from types import FrameType

from harness.common import measure_queue
from harness.processes import Started, stop_all, wait_until

SYSTEMS = {"celery": "CelerySystem", "rq": "RqSystem", "huey": "HueySystem"}


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> None:
    """Run one peer's measurements."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("system", choices=sorted(SYSTEMS))
    parser.add_argument("--runs", type=int, required=True)
    parser.add_argument("--jobs", type=int, required=True)
    parser.add_argument("--clients", type=int, required=True)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--logs", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    module = importlib.import_module(f"harness.peer_{args.system}")
    factory = getattr(module, SYSTEMS[args.system])
    bench_dir = str(Path(__file__).resolve().parent.parent)
    workers = [Started(f"{args.system} worker {i}", argv_, args.logs / f"{args.system}-{i}.log")
               for i, argv_ in enumerate(module.worker_commands(bench_dir), 1)]
    try:
        system = factory()
        wait_until(lambda: module.ready(system), timeout=120,
                   what=f"{args.system}'s workers")
        time.sleep(0.5)
        figures = measure_queue(system, factory, runs=args.runs, jobs=args.jobs,
                                clients=args.clients, repeat=args.repeat)
    except BaseException:
        for worker in workers:
            print(f"--- {worker.name} ({worker.log}):\n{worker.log_tail()}", file=sys.stderr)
        raise
    finally:
        stop_all(workers)
    package = {"celery": "celery", "rq": "rq", "huey": "huey"}[args.system]
    args.out.write_text(json.dumps({"version": importlib.metadata.version(package),
                                    "figures": figures}))


if __name__ == "__main__":
    main()
